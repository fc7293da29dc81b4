"""What the promotion dashboard shows, gathered from the registry, the statistics store and the topics.

The server talks only to a ``DashboardData``: ``LiveData`` reads Redis and Kafka, unit tests hand in a
fake, so auth, status codes and JSON are tested without a broker. The views are plain JSON-able dicts
built by the pure functions below (``decision_view``, ``agreement_series``, ``disagreement_rows``), so
a fake can build exactly what the live source builds.

Numbers a gate decides on come from the statistics store through ``Promoter.evaluate`` (exactly what
``shadowline promote`` would check). The over-time series and the disagreement examples come from the
last records of ``compare.<stage>`` instead: the store keeps counters, not history.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from schemas.topics import STAGES, Topics
from shadow.stats import MATCH_THRESHOLD, wilson_interval
from shadowline.errors import ShadowlineError

__all__ = [
    "BUCKET_S", "DashboardData", "EventInfo", "LiveData", "TopicTail", "agreement_series", "decision_view",
    "disagreement_rows", "event_info", "spec_view",
]

BUCKET_S = 60
TAIL_RECORDS = 2000
"""Per topic: how many recent records the series and the examples are drawn from (bounded reads)."""

REPLY_STAGES = frozenset({"generate", "tone"})


class DashboardData(Protocol):
    """Everything the HTTP layer needs; raises ``ShadowlineError`` subclasses, which it maps to statuses."""

    def overview(self) -> dict[str, Any]: ...

    def series(self, stage: str, bucket_s: int = BUCKET_S) -> dict[str, Any]: ...

    def disagreements(self, stage: str, limit: int = 50) -> dict[str, Any]: ...

    def promote(self, stage: str, candidate: str | None, *, force: bool, reason: str | None, actor: str) -> dict[str, Any]: ...

    def rollback(self, stage: str, *, reason: str | None, actor: str) -> dict[str, Any]: ...


# -- views (pure) ------------------------------------------------------------------------------------
def spec_view(spec: Any) -> dict[str, Any]:
    return {"ref": f"{spec.name}@{spec.version}", "name": spec.name, "version": spec.version, "config": dict(spec.config)}


def decision_view(decision: Any) -> dict[str, Any]:
    """A candidate as the page shows it: its statistics, every gate and the verdict."""
    return {
        **spec_view(decision.candidate), "stats": decision.stats.to_dict(),
        "gates": [g.to_record() for g in decision.gates], "passed": decision.passed,
        "failing": list(decision.failing), "explain": decision.explain(),
    }


@dataclass(frozen=True)
class EventInfo:
    """What else is known about an event besides its comparison: the question, production's final
    answer (``suggestion`` None and ``escalated`` True when it escalated) and what the agent sent."""

    question: str | None = None
    suggestion: str | None = None
    escalated: bool = False
    sent: str | None = None
    action: str | None = None

    @property
    def answered(self) -> bool:
        return self.suggestion is not None or self.escalated


def event_info(records: Iterable[tuple[str, dict[str, Any]]], topics: Topics,
               redact: Callable[[str], str] = lambda s: s) -> dict[str, EventInfo]:
    """Join suggestions, escalations and agent feedback by event id. Texts pass through ``redact``:
    unlike ``compare.*``, these topics hold what the customer typed."""
    info: dict[str, dict[str, Any]] = defaultdict(dict)
    for topic, rec in records:
        eid = rec.get("event_id")
        if not eid:
            continue
        if topic == topics.feedback:
            info[eid].update(sent=redact(rec["sent_text"]), action=str(rec["action"]))
        elif topic in (topics.suggestions, topics.escalations):
            text = rec["turn"]["event"]["text"]
            info[eid]["question"] = redact(text) if text else text
            if topic == topics.suggestions:
                info[eid]["suggestion"] = redact(rec["text"])
            else:
                info[eid]["escalated"] = True
    return {eid: EventInfo(**fields) for eid, fields in info.items()}


def _ref(side: dict[str, Any]) -> str:
    return f"{side['name']}@{side['version']}"


def _output(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _draft(raw: str | None) -> str | None:
    out = _output(raw)
    return out.get("text") if isinstance(out, dict) else None


def _outcome(stage: str, c: dict[str, Any], info: EventInfo | None,
             similarity: Callable[[str, str], float]) -> tuple[bool, bool | None] | None:
    """(production matched, candidate matched or None) against what the agent sent, as the comparator
    scores it: reply stages compare both drafts, label stages production's final suggestion.
    None when the agent's reply (or production's answer) is not in the tail read."""
    if info is None or info.sent is None:
        return None
    hit = lambda text: text is not None and similarity(text, info.sent) >= MATCH_THRESHOLD  # noqa: E731
    if stage in REPLY_STAGES:
        return hit(_draft(c["production_output"])), hit(_draft(c["candidate_output"]))
    if not info.answered:
        return None
    return hit(info.suggestion), None


def agreement_series(stage: str, comparisons: Iterable[dict[str, Any]], info: dict[str, EventInfo],
                     similarity: Callable[[str, str], float], bucket_s: int = BUCKET_S) -> list[dict[str, Any]]:
    """Per candidate, per ``bucket_s`` of comparator time: comparisons, agreement share with its Wilson
    95% band, and outcome match rates. Only matched comparisons with a verdict count, as in the gates."""
    cells: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for c in comparisons:
        if c["status"] != "matched" or c["agree"] is None:
            continue
        cell = cells[_ref(c["candidate"])][c["created_ms"] // 1000 // bucket_s * bucket_s]
        cell["n"] += 1
        cell["agree"] += bool(c["agree"])
        outcome = _outcome(stage, c, info.get(c["event_id"]), similarity)
        if outcome is not None:
            cell["outcomes"] += 1
            cell["prod_match"] += outcome[0]
            if outcome[1] is not None:
                cell["cand_outcomes"] += 1
                cell["cand_match"] += outcome[1]
    out = []
    for ref in sorted(cells):
        points = []
        for t in sorted(cells[ref]):
            b = cells[ref][t]
            low, high = wilson_interval(b["agree"], b["n"])
            points.append({
                "t": t, "n": b["n"], "agree": b["agree"], "share": b["agree"] / b["n"], "low": low, "high": high,
                "outcomes": b["outcomes"],
                "prod_match_rate": b["prod_match"] / b["outcomes"] if b["outcomes"] else None,
                "cand_match_rate": b["cand_match"] / b["cand_outcomes"] if b["cand_outcomes"] else None,
            })
        out.append({"candidate": ref, "replica": ref.endswith("+replica"), "points": points})
    return out


def disagreement_rows(comparisons: Iterable[dict[str, Any]], info: dict[str, EventInfo], limit: int) -> list[dict[str, Any]]:
    """The most recent comparisons where the candidate disagreed, with both outputs and the human side."""
    rows = sorted((c for c in comparisons if c["status"] == "matched" and c["agree"] is False),
                  key=lambda c: c["created_ms"], reverse=True)
    out = []
    for c in rows[:limit]:
        i = info.get(c["event_id"], EventInfo())
        out.append({
            "event_id": c["event_id"], "conversation_id": c["conversation_id"], "created_ms": c["created_ms"],
            "production": _ref(c["production"]), "candidate": _ref(c["candidate"]),
            "kind": c["kind"], "similarity": c["similarity"],
            "production_output": _output(c["production_output"]), "candidate_output": _output(c["candidate_output"]),
            "question": i.question, "agent_sent": i.sent, "agent_action": i.action,
        })
    return out


# -- reading the topics --------------------------------------------------------------------------
class TopicTail:
    """The last ``n`` records of some topics, re-read at most every ``ttl_s``.

    The page polls every few seconds and one Kafka read costs a consumer's start-up, so readers of the
    same topics within ``ttl_s`` share one read. Bounded on purpose: a dashboard never scans a topic.
    """

    def __init__(self, bootstrap: str, codec: Any, record_of: Callable[[str], str], n: int = TAIL_RECORDS,
                 ttl_s: float = 5.0, timeout_s: float = 15.0) -> None:
        self.bootstrap, self.codec, self.record_of = bootstrap, codec, record_of
        self.n, self.ttl_s, self.timeout_s = n, ttl_s, timeout_s
        self._cache: dict[tuple[str, ...], tuple[float, list[tuple[str, dict[str, Any]]]]] = {}
        self._lock = threading.Lock()

    def __call__(self, topics: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
        key = tuple(sorted(topics))
        with self._lock:  # one read at a time; waiting readers then find it cached
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            records = self._read(list(key))
            self._cache[key] = (time.monotonic(), records)
            return records

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def _read(self, topics: list[str]) -> list[tuple[str, dict[str, Any]]]:
        from streams.reader import end_offsets, read

        high = end_offsets(self.bootstrap, topics)
        parts: dict[str, int] = defaultdict(int)
        for topic, _ in high:
            parts[topic] += 1
        start = {tp: max(0, end - math.ceil(self.n / parts[tp[0]])) for tp, end in high.items()}
        expected = sum(high[tp] - start[tp] for tp in high)
        if not expected:
            return []
        out: list[tuple[str, dict[str, Any]]] = []
        seen = [0]

        def done() -> bool:
            return seen[0] >= expected

        # idle_s ends the read early when offsets were taken by transaction markers or retention.
        for topic, rec in read(self.bootstrap, start, self.codec, self.record_of, stop=done,
                               timeout_s=self.timeout_s, idle_s=2.0):
            seen[0] += 1
            if not topic.startswith("!"):  # undecodable: production dead-letters those; nothing to show
                out.append((topic, rec))
        return out


# -- the live source -------------------------------------------------------------------------------
class LiveData:
    """Reads Redis (registry, statistics) and Kafka (the compare, answer and feedback topics).

    ``promoter_for(actor)`` builds the same Promoter the CLI uses. Reads evaluate gates with the
    regression suite cached per candidate (a suite takes seconds and the page polls); a promotion
    builds a fresh Promoter, so it runs the suite again, exactly as ``shadowline promote`` does.
    """

    def __init__(self, promoter_for: Callable[[str], Any], tail: Callable[[Iterable[str]], list[tuple[str, dict[str, Any]]]],
                 topics: Topics, similarity: Callable[[str, str], float], redact: Callable[[str], str] = lambda s: s,
                 regression_ttl_s: float = 600.0) -> None:
        self.promoter_for, self.tail, self.topics = promoter_for, tail, topics
        self.similarity, self.redact = similarity, redact
        self._reader = promoter_for("dashboard")
        self._regression = self._reader.regression
        self._reader.regression = self._cached_regression
        self._regression_ttl_s = regression_ttl_s
        self._suites: dict[str, tuple[float, Any]] = {}
        self._suite_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any = None, tail_records: int = TAIL_RECORDS) -> LiveData:
        from kb_index.embedder import get_embedder
        from schemas.codec import make_codec
        from shadow.agreement import TextSimilarity
        from shadow.redact import redact_text
        from shadowline.cli.shadow_cmd import promoter
        from shadowline.config import get_settings

        s = settings or get_settings()
        topics = Topics(s.topic_prefix)
        tail = TopicTail(s.kafka_bootstrap, make_codec(s.schema_registry_url), topics.record_of, n=tail_records)
        return cls(promoter, tail, topics, TextSimilarity(get_embedder("hashing")), redact_text)

    def _cached_regression(self, spec: Any) -> Any:
        key = json.dumps([spec.stage, spec.name, spec.version, spec.config], sort_keys=True, default=str)
        with self._suite_lock:
            hit = self._suites.get(key)
            if hit is None or time.monotonic() - hit[0] > self._regression_ttl_s:
                hit = self._suites[key] = (time.monotonic(), self._regression(spec))
            return hit[1]

    def overview(self) -> dict[str, Any]:
        p = self._reader
        registry = p.registry
        actives = registry.actives()
        stages = []
        for stage in STAGES:
            candidates = []
            for spec in registry.candidates(stage):
                try:
                    candidates.append(decision_view(p.evaluate(stage, spec.ref)))
                except ShadowlineError as exc:  # one broken candidate must not blank the page
                    candidates.append({**spec_view(spec), "error": str(exc)})
            stages.append({
                "stage": stage, "active": spec_view(actives[stage]) if stage in actives else None,
                "history": [spec_view(h) for h in registry.history(stage)],
                "mirror_rate": registry.mirror_rate(stage), "candidates": candidates,
                "blocked_by": p.upstream_in_shadow(stage) if candidates else [],
            })
        return {"epoch": registry.epoch(), "generated_ms": int(time.time() * 1000), "stages": stages}

    def _joined(self, stage: str) -> tuple[list[dict[str, Any]], dict[str, EventInfo]]:
        t = self.topics
        compare_topic = t.compare(stage)
        records = self.tail([compare_topic, t.suggestions, t.escalations, t.feedback])
        comparisons = [rec for topic, rec in records if topic == compare_topic]
        return comparisons, event_info(((tp, r) for tp, r in records if tp != compare_topic), t, self.redact)

    def series(self, stage: str, bucket_s: int = BUCKET_S) -> dict[str, Any]:
        comparisons, info = self._joined(stage)
        return {"stage": stage, "bucket_s": bucket_s, "records": len(comparisons),
                "candidates": agreement_series(stage, comparisons, info, self.similarity, bucket_s)}

    def disagreements(self, stage: str, limit: int = 50) -> dict[str, Any]:
        comparisons, info = self._joined(stage)
        return {"stage": stage, "records": len(comparisons), "rows": disagreement_rows(comparisons, info, limit)}

    def promote(self, stage: str, candidate: str | None, *, force: bool, reason: str | None, actor: str) -> dict[str, Any]:
        d = self.promoter_for(actor).promote(stage, candidate, force=force, reason=reason)
        return {"stage": stage, "promoted": spec_view(d.candidate)["ref"], "passed": d.passed,
                "forced": force and not d.passed, "explain": d.explain(), "gates": [g.to_record() for g in d.gates]}

    def rollback(self, stage: str, *, reason: str | None, actor: str) -> dict[str, Any]:
        replaced, restored = self.promoter_for(actor).rollback(stage, reason)
        return {"stage": stage, "replaced": spec_view(replaced)["ref"], "restored": spec_view(restored)["ref"]}
