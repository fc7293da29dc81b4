"""The human review queue: a sample of judged suggestions waits in Redis for people to label.

A reviewer sees the question, the answer, the KB hits and the judge's scores, and labels each aspect
good (1) or bad (0). The labels calibrate the judge (shadow/calibration.py): per aspect, how often
and how far beyond chance it agrees with people.

Keys (namespace ``sl``): ``review:item:<id>`` the item as JSON; ``review:pending`` a sorted set of
unlabelled ids by enqueue time (oldest first); ``review:labels`` a hash id -> label JSON that also
carries the judge's scores, so calibration reads one key. Enqueueing is idempotent by item id (the
judge worker is at-least-once) and bounded by ``max_pending``, so an absent reviewer cannot grow
Redis without limit.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from agents.judge import ASPECTS, Judgment, answer_text
from agents.records import Turn
from shadow.calibration import AspectAgreement, agreement_table
from shadowline.errors import ConfigError, ShadowlineError, StoreError

__all__ = ["ReviewItem", "ReviewLabel", "ReviewQueue", "UnknownItem", "check_labels", "item_from"]

MAX_PENDING = 10_000
HIT_CHARS = 600  # enough of a KB chunk to judge it; whole chunks would bloat every item


class UnknownItem(ShadowlineError):
    """No review item has this id."""


@dataclass(frozen=True)
class ReviewItem:
    item_id: str
    event_id: str
    conversation_id: str
    judge: str
    question: str
    answer: str
    summary: str
    hits: tuple[Mapping[str, Any], ...]  # article_id, title, score, text (shortened)
    scores: Mapping[str, float]
    rationale: str = ""
    created_ms: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "hits": [dict(h) for h in self.hits], "scores": dict(self.scores)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReviewItem:
        d = json.loads(raw)
        return cls(**{**d, "hits": tuple(d["hits"]), "scores": d["scores"]})


@dataclass(frozen=True)
class ReviewLabel:
    item_id: str
    judge: str
    labels: Mapping[str, int]  # aspect -> 1 good / 0 bad; aspects the reviewer skipped are absent
    scores: Mapping[str, float]  # the judge's, copied from the item
    reviewer: str = ""
    note: str = ""
    labelled_ms: int = 0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "labels": dict(self.labels), "scores": dict(self.scores)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReviewLabel:
        return cls(**json.loads(raw))


def check_labels(labels: Mapping[str, Any]) -> dict[str, int]:
    unknown = sorted(set(labels) - set(ASPECTS))
    if unknown:
        raise ConfigError(f"unknown aspect(s) {', '.join(unknown)}; aspects are {', '.join(ASPECTS)}")
    bad = {a: v for a, v in labels.items() if v not in (0, 1) or isinstance(v, float) and not v.is_integer()}
    if bad:
        raise ConfigError(f"labels must be 0 (bad) or 1 (good), got {bad}")
    if not labels:
        raise ConfigError("label at least one aspect")
    return {a: int(labels[a]) for a in ASPECTS if a in labels}


class ReviewQueue:
    def __init__(self, url: str, namespace: str = "sl", max_pending: int = MAX_PENDING) -> None:
        import redis

        self._err = redis.RedisError
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ns, self.max_pending = namespace, max_pending

    def _k(self, *parts: str) -> str:
        return ":".join((self.ns, "review", *parts))

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except self._err as exc:
            raise StoreError(f"review queue: cannot {what}: {exc}") from exc

    def enqueue(self, item: ReviewItem) -> bool:
        """Queue an item; False if it is already known (queued or labelled) or the queue is full."""
        if self.pending() >= self.max_pending:
            return False
        if self._call("check labels", self.r.hexists, self._k("labels"), item.item_id):
            return False
        if not self._call("store item", self.r.set, self._k("item", item.item_id), item.to_json(), nx=True):
            return False
        self._call("queue item", self.r.zadd, self._k("pending"), {item.item_id: item.created_ms}, nx=True)
        return True

    def pending(self) -> int:
        return int(self._call("count pending", self.r.zcard, self._k("pending")))

    def next(self, n: int = 1) -> list[ReviewItem]:
        """The ``n`` oldest unlabelled items; nothing is removed until it is labelled."""
        ids = self._call("read pending", self.r.zrange, self._k("pending"), 0, max(0, n - 1)) if n > 0 else []
        if not ids:
            return []
        raws = self._call("read items", self.r.mget, [self._k("item", i.decode()) for i in ids])
        return [ReviewItem.from_json(raw) for raw in raws if raw]

    def get(self, item_id: str) -> ReviewItem:
        raw = self._call("read item", self.r.get, self._k("item", item_id))
        if raw is None:
            raise UnknownItem(f"no review item {item_id!r} (`shadowline review next` lists pending ones)")
        return ReviewItem.from_json(raw)

    def label(self, item_id: str, labels: Mapping[str, Any], reviewer: str = "", note: str = "") -> ReviewLabel:
        """Record a reviewer's labels (a second call replaces the first) and take the item off the queue."""
        clean = check_labels(labels)
        item = self.get(item_id)
        record = ReviewLabel(item_id, item.judge, clean, dict(item.scores), reviewer, note, int(time.time() * 1000))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self._k("labels"), item_id, record.to_json()).zrem(self._k("pending"), item_id)
        self._call("store label", pipe.execute)
        return record

    def labels(self) -> list[ReviewLabel]:
        raws = self._call("read labels", self.r.hgetall, self._k("labels"))
        return sorted((ReviewLabel.from_json(v) for v in raws.values()), key=lambda x: (x.labelled_ms, x.item_id))

    def calibration(self) -> list[AspectAgreement]:
        """Per judge and aspect: n, raw agreement and Cohen's kappa of judge vs human labels."""
        return agreement_table((lab.judge, aspect, human, lab.scores[aspect])
                               for lab in self.labels() for aspect, human in lab.labels.items()
                               if aspect in lab.scores)



def item_from(turn: Turn, judgment: Judgment, conversation_id: str) -> ReviewItem:
    """What a reviewer needs to label one judged suggestion."""
    hits = tuple({"article_id": h.article_id, "title": h.title, "score": round(h.score, 4), "text": h.text[:HIT_CHARS]}
                 for h in (turn.retrieve.hits if turn.retrieve else ()))
    summary = turn.context.summary if turn.context else ""
    return ReviewItem(judgment.judgment_id.replace("jdg-", "rev-", 1), judgment.event_id, conversation_id, judgment.judge, turn.event.text,
                      answer_text(turn), summary, hits, dict(judgment.scores), judgment.rationale, judgment.created_ms)
