"""Candidate runner: a shadow version of one stage, on the mirror, in its own process and group.

It reuses the production StageProcessor (same decode, same timing, same error capture) with two
differences: it reads ``shadow.<stage>.in`` and writes every result (ok, rejected, error) to
``shadow.<stage>.out``, and each event has a time limit, so a hanging candidate records a timeout
and moves on instead of stalling.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from agents.base import ComponentSpec, Resources, build
from agents.records import Outcome, Turn
from schemas.codec import Codec
from schemas.topics import Topics
from shadowline.errors import ComponentError
from streams.history import RedisStore
from streams.messages import Outbound
from streams.processor import Limits, StageProcessor

REPLICA_SUFFIX = "+replica"


class TimeLimited:
    """Runs a component's ``process`` with a per-event time limit.

    A thread cannot be killed, so a timed-out call is abandoned: its worker thread is a daemon (it can
    never keep the process from exiting, unlike concurrent.futures' pool threads, which are joined at
    exit) and a fresh worker serves the next event.
    """

    def __init__(self, component: Any, timeout_s: float, version: str | None = None) -> None:
        self.inner = component
        self.stage = component.stage
        self.name = component.name
        self.version = version or component.version
        self.timeout_s = timeout_s
        self._jobs: queue.SimpleQueue | None = None
        self.abandoned = 0
        # The component's own time, measured in the worker thread. Production calls its component inline,
        # so timing the thread hand-offs too (two wake-ups, each up to a scheduler slice on a busy host)
        # would make every candidate look slower than it is and bias the latency gate.
        self.last_latency_s: float | None = None

    def _worker(self, jobs: queue.SimpleQueue) -> None:
        while True:
            args, done = jobs.get()
            t0 = time.perf_counter()
            try:
                done.put((True, self.inner.process(*args), time.perf_counter() - t0))
            except BaseException as exc:  # handed to the caller, which records it
                done.put((False, exc, time.perf_counter() - t0))

    def process(self, *args: Any) -> Outcome[Any]:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=self._worker, args=(self._jobs,), daemon=True, name="candidate").start()
        done: queue.SimpleQueue = queue.SimpleQueue()
        self.last_latency_s = None
        self._jobs.put((args, done))
        try:
            ok, value, self.last_latency_s = done.get(timeout=self.timeout_s)
        except queue.Empty:
            self._jobs = None  # abandon the stuck worker; the next event starts a new one
            self.abandoned += 1
            raise ComponentError(f"timeout: no result within {self.timeout_s:.1f}s") from None
        if ok:
            return value
        raise value


def shadow_router(proc: StageProcessor, turn: Turn, outcome: Outcome[Any]) -> list[Outbound]:
    event = turn.event
    if proc.stage == "context" and event.role != "customer" and not outcome.rejected:
        return []  # history only, exactly as in production
    out = proc.topics.shadow_out(proc.stage)
    return [Outbound(out, event.conversation_id.encode(), proc.codec.encode("TurnState", turn.to_record(), out))]


def candidate_processor(
    spec: ComponentSpec,
    settings: Any,
    codec: Codec,
    resources: Resources,
    *,
    timeout_s: float = 5.0,
    replica: bool = False,
) -> StageProcessor:
    """``replica``: production's own version run again on the mirror, labelled ``<version>+replica``,
    whose disagreement with production is the stage's noise floor."""
    component = TimeLimited(build(spec, resources), timeout_s, spec.version + REPLICA_SUFFIX if replica else None)
    store = None
    if spec.stage == "context":
        # The candidate keeps its own conversation history: it must never write production's.
        store = RedisStore(settings.redis_url, settings.history_turns, settings.history_ttl_s, namespace=f"sl-shadow:{spec.ref}")
    topics = Topics(settings.topic_prefix)
    return StageProcessor(
        spec.stage, component, codec, topics, store=store, limits=Limits(settings.max_text_bytes),
        router=shadow_router, input_topic=topics.shadow_in(spec.stage),
    )
