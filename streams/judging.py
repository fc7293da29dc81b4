"""The judge worker: a sample of ``support.suggestions`` -> Judgment records on ``quality.judgments``.

``JudgeHandler`` is I/O-free like a stage processor (decode, sample, call the judge, encode), so the
in-memory harness and the unit tests drive it without a broker; ``judge_app`` wires it into a Faust
app of its own (own consumer group: a slow LLM judge delays no suggestion). A sample of the judged
turns also goes to the human review queue, the only I/O, through the injected queue.

A suggestion carries the whole TurnState after the guardrail, so the judge sees exactly what the
pipeline saw. A judge failure (LLM down, malformed reply) dead-letters the suggestion with reason
``judge_error``: it can be replayed once the judge is back, and it never stops the stream.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Protocol

from agents.base import ComponentSpec, Resources, build
from agents.judge import Judgment, sampled  # importing agents.judge registers the judge components
from agents.records import Turn
from schemas.codec import Codec, make_codec
from schemas.topics import Topics
from shadow.review import ReviewItem, ReviewQueue, item_from
from shadowline.config import Settings
from shadowline.errors import ConfigError, DecodeError, ShadowlineError
from streams.messages import Inbound, Outbound, now_ms
from streams.metrics import Metrics
from streams.worker import Route, make_app, worker_metrics

__all__ = ["JudgeHandler", "check_sampling", "judge_app"]

SAMPLE_BY = ("event", "conversation")


class Queue(Protocol):
    def enqueue(self, item: ReviewItem) -> bool: ...


def check_sampling(rate: float, sample_by: str, review_rate: float) -> None:
    if not 0.0 <= rate <= 1.0 or not 0.0 <= review_rate <= 1.0:
        raise ConfigError(f"judge rate and review rate must be within [0, 1], got {rate} and {review_rate}")
    if sample_by not in SAMPLE_BY:
        raise ConfigError(f"judge sample_by must be one of {', '.join(SAMPLE_BY)}, got {sample_by!r}")


class JudgeHandler:
    """``handle(Inbound) -> list[Outbound]`` over suggestion messages."""

    def __init__(self, judge: Any, codec: Codec, topics: Topics, *, rate: float = 0.2, sample_by: str = "event",
                 review: Queue | None = None, review_rate: float = 0.0, metrics: Metrics | None = None) -> None:
        check_sampling(rate, sample_by, review_rate)
        self.judge, self.codec, self.topics = judge, codec, topics
        self.rate, self.sample_by = rate, sample_by
        self.review, self.review_rate = review, review_rate
        self.metrics = metrics or Metrics()
        self.input_topic = topics.suggestions
        self.judged = self.skipped = self.queued = 0

    @property
    def judge_ref(self) -> str:
        return f"{self.judge.name}@{self.judge.version}"

    def handle(self, msg: Inbound) -> list[Outbound]:
        try:
            if msg.value is None:
                raise DecodeError("empty", "message has no value (tombstone)")
            record = self.codec.decode(msg.value, "Suggestion", msg.topic)
        except DecodeError as exc:
            return [self._deadletter(msg, exc.reason, exc.detail)]
        key = record["event_id"] if self.sample_by == "event" else record["conversation_id"]
        if not sampled(key, self.rate):
            self.skipped += 1
            return []
        turn = Turn.from_record(record["turn"])
        t0 = time.perf_counter()
        try:
            outcome = self.judge.process(turn)
        except ShadowlineError as exc:
            return [self._failed(msg, f"{type(exc).__name__}: {exc}", t0)]
        except Exception as exc:  # a buggy judge must not stop the stream
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return [self._failed(msg, f"{type(exc).__name__}: {exc} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})", t0)]
        latency_s = time.perf_counter() - t0
        self.metrics.observed("judge", self.judge.name, self.judge.version, "rejected" if outcome.rejected else "ok", latency_s)
        if outcome.rejected:
            self.skipped += 1  # nothing to judge (an empty draft)
            return []
        judgment = Judgment(f"jdg-{record['event_id']}-{self.judge.name}-{self.judge.version}", record["event_id"],
                            record["suggestion_id"], self.judge_ref, dict(outcome.output.values),
                            outcome.output.rationale, now_ms())
        self.judged += 1
        if self.review is not None and sampled(key, self.review_rate, salt="review"):
            self.queued += int(self.review.enqueue(item_from(turn, judgment, record["conversation_id"])))
        value = self.codec.encode("Judgment", judgment.to_record(), self.topics.judgments)
        return [Outbound(self.topics.judgments, msg.key, value)]

    def _failed(self, msg: Inbound, detail: str, t0: float) -> Outbound:
        self.metrics.observed("judge", self.judge.name, self.judge.version, "error", time.perf_counter() - t0)
        return self._deadletter(msg, "judge_error", detail)

    def _deadletter(self, msg: Inbound, reason: str, detail: str) -> Outbound:
        self.metrics.deadlettered("judge", reason)
        record = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "key": msg.key,
                  "payload": msg.value or b"", "reason": reason, "detail": detail[:2000], "stage": "judge",
                  "created_ms": now_ms()}
        return Outbound(self.topics.deadletter, msg.key, self.codec.encode("DeadLetter", record, self.topics.deadletter))


def judge_app(spec: ComponentSpec, settings: Settings, *, rate: float, sample_by: str = "event",
              review_rate: float = 0.0, metrics_port: int | None = None) -> Any:
    """A Faust app with one agent: the judge on support.suggestions, its own consumer group per judge."""
    check_sampling(rate, sample_by, review_rate)  # before the judge loads its KB index
    metrics = worker_metrics(metrics_port)
    judge = build(spec, Resources(settings))
    review = ReviewQueue(settings.redis_url) if review_rate > 0 else None
    handler = JudgeHandler(judge, make_codec(settings.schema_registry_url), Topics(settings.topic_prefix), rate=rate,
                           sample_by=sample_by, review=review, review_rate=review_rate, metrics=metrics)
    route = Route(f"judge-{spec.name}", (handler.input_topic,), handler)
    return make_app(f"shadowline-judge-{spec.name}-{spec.version}", settings, [route], metrics=metrics)
