"""One pipeline stage as a function of Kafka messages: decode, call the component, route the result.

No I/O happens here except through the injected store (context stage only), so the same processor
runs inside a Faust agent, in the in-memory harness (``streams.testing``) and in benchmarks.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from agents.base import Prior
from agents.records import ConversationEvent, Outcome, StageRun, Turn
from schemas.codec import Codec
from schemas.topics import STAGES, Topics
from shadowline.errors import DecodeError, ShadowlineError
from streams.history import ConversationStore
from streams.messages import Inbound, Outbound, now_ms
from streams.metrics import Metrics
from streams.routing import Router, production_router


@dataclass(frozen=True)
class Limits:
    max_text_bytes: int = 8192


class StageProcessor:
    """Runs one stage's active component over its input topic.

    ``component`` may be swapped between two ``handle`` calls (hot promotion): each event is
    processed entirely by one version, and the swap loses or repeats nothing.
    """

    def __init__(
        self,
        stage: str,
        component: Any,
        codec: Codec,
        topics: Topics,
        *,
        store: ConversationStore | None = None,
        limits: Limits = Limits(),
        metrics: Metrics | None = None,
        router: Router = production_router,
        input_topic: str | None = None,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if stage == "context" and store is None:
            raise ValueError("the context stage needs a conversation store")
        self.stage = stage
        self.component = component
        self.codec = codec
        self.topics = topics
        self.store = store
        self.limits = limits
        self.metrics = metrics or Metrics()
        self.router = router
        self.input_topic = input_topic or topics.stage_in(stage)  # shadow candidates read shadow.<stage>.in

    def swap(self, component: Any) -> Any:
        """Install a new component version; returns the previous one."""
        previous, self.component = self.component, component
        return previous

    def handle(self, msg: Inbound) -> list[Outbound]:
        try:
            turn = self._decode(msg)
        except DecodeError as exc:
            return [self._deadletter(msg, exc.reason, exc.detail)]
        if turn is None:
            return []
        turn, outcome = self.run(turn)
        return self.router(self, turn, outcome)

    def run(self, turn: Turn) -> tuple[Turn, Outcome[Any]]:
        """Call the component, timing it; any failure becomes an ``error`` outcome, never an exception."""
        component = self.component
        started_ms = now_ms()
        t0 = time.perf_counter()
        prior: Prior | None = None
        if self.stage == "context":
            # Outside the component's try: a Redis outage is the infrastructure's fault, so its StoreError
            # reaches the worker, which blocks the partition and retries this event instead of escalating it.
            prior = self.store.load(turn.event.conversation_id, turn.event.event_id)
        try:
            if self.stage == "context":
                outcome = component.process(turn, prior)
            else:
                outcome = component.process(turn)
            status = "rejected" if outcome.rejected else "ok"
        except ShadowlineError as exc:
            outcome, status = Outcome(None, rejected=True, reason=f"error: {exc}"), "error"
        except Exception as exc:  # a buggy component must not stop the stream
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"error: {type(exc).__name__}: {exc} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            outcome, status = Outcome(None, rejected=True, reason=reason), "error"
        latency_s = time.perf_counter() - t0
        # A wrapper that runs the component elsewhere (shadow.candidate.TimeLimited) reports its own time.
        latency_s = getattr(component, "last_latency_s", None) or latency_s
        run = StageRun(self.stage, component.name, component.version, status, outcome.reason, latency_s * 1000, started_ms)
        self.metrics.observed(self.stage, component.name, component.version, status, latency_s)
        if self.stage == "context" and status == "ok":
            self.store.append(turn.event.conversation_id, turn.event.event_id, turn.event.as_message(), outcome.output.summary)
        return turn.with_result(self.stage, outcome.output, run), outcome

    def _decode(self, msg: Inbound) -> Turn | None:
        if msg.value is None:
            raise DecodeError("empty", "message has no value (tombstone)")
        if self.stage != "context":
            return Turn.from_record(self.codec.decode(msg.value, "TurnState", msg.topic))
        event = ConversationEvent.from_record(self.codec.decode(msg.value, "ConversationEvent", msg.topic))
        for name in ("event_id", "conversation_id", "text"):
            if not getattr(event, name).strip():
                raise DecodeError("missing_field", f"ConversationEvent.{name} is empty")
        size = len(event.text.encode())
        if size > self.limits.max_text_bytes:
            raise DecodeError("too_large", f"text is {size} bytes, limit {self.limits.max_text_bytes}")
        return Turn.start(event, received_ms=now_ms())

    def _deadletter(self, msg: Inbound, reason: str, detail: str) -> Outbound:
        self.metrics.deadlettered(self.stage, reason)
        record = {
            "topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "key": msg.key,
            "payload": msg.value or b"", "reason": reason, "detail": detail[:2000], "stage": self.stage,
            "created_ms": now_ms(),
        }
        return Outbound(self.topics.deadletter, msg.key, self.codec.encode("DeadLetter", record, self.topics.deadletter))


Handler = Callable[[Inbound], list[Outbound]]
