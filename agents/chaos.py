"""Chaos: wrap any component and inject disagreement, errors, slowness, hangs or a crash.

For proving the shadow path itself: a candidate that disagrees on a known 20% of events must be
measured at 20%; one that is 10x slower or crashes must leave production untouched. Selection is a
hash of the event id, so the same events are affected in every run and in every process.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from typing import Any

from agents.base import ComponentSpec, Resources, build, register
from agents.records import Outcome, Turn
from schemas.topics import STAGES
from shadowline.errors import ComponentError, ConfigError

ALTERNATE_TEXT = "I could not find anything about this; a colleague will follow up with you shortly."


def chosen(event_id: str, rate: float, salt: str) -> bool:
    digest = hashlib.blake2b(f"{salt}:{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def _alter(stage: str, output: Any) -> Any:
    """A plausible but different output for the stage."""
    if output is None:
        return None
    if stage == "context":
        return replace(output, summary=ALTERNATE_TEXT)
    if stage == "validate":
        flipped = "chitchat" if output.answerable else "answerable"
        return replace(output, label=flipped, answerable=not output.answerable)
    if stage == "classify":
        others = sorted((t for t in output.scores if t != output.topic), key=lambda t: -output.scores[t])
        return replace(output, topic=others[0] if others else f"not-{output.topic}")
    if stage == "retrieve":
        return replace(output, hits=tuple(reversed(output.hits)) if len(output.hits) > 1 else ())
    if stage in ("generate", "tone"):
        return replace(output, text=ALTERNATE_TEXT)
    if stage == "guardrail":
        return replace(output, verdict="fail" if output.verdict == "pass" else "pass")
    raise ConfigError(f"chaos: no alteration for stage {stage}")


class Chaos:
    def __init__(self, inner: Any, spec: ComponentSpec, cfg: dict[str, Any]) -> None:
        self.inner = inner
        self.stage = spec.stage
        self.name = spec.name
        self.version = spec.version
        self.disagree_rate = float(cfg.get("disagree_rate", 0.0))
        # Exact rate: every n-th call. Hash selection (disagree_rate) is reproducible across processes,
        # but over a few hundred events it realizes the rate only within sampling error.
        self.disagree_every = int(cfg.get("disagree_every", 0))
        self.error_rate = float(cfg.get("error_rate", 0.0))
        self.hang_rate = float(cfg.get("hang_rate", 0.0))
        self.slow_factor = float(cfg.get("slow_factor", 1.0))
        self.slow_ms = float(cfg.get("slow_ms", 0.0))
        self.crash_after = int(cfg.get("crash_after", 0))
        self.salt = str(cfg.get("seed", "chaos"))
        self.calls = 0

    def process(self, turn: Turn, *rest: Any) -> Outcome[Any]:
        self.calls += 1
        if self.crash_after and self.calls >= self.crash_after:
            os._exit(70)  # a hard crash: no cleanup, like a segfault in a native library
        eid = turn.event.event_id
        if chosen(eid, self.hang_rate, self.salt + ":hang"):
            time.sleep(3600)
        if chosen(eid, self.error_rate, self.salt + ":error"):
            raise ComponentError("chaos: injected failure")
        t0 = time.perf_counter()
        outcome = self.inner.process(turn, *rest)
        spent = time.perf_counter() - t0
        time.sleep(spent * (self.slow_factor - 1.0) + self.slow_ms / 1000)
        if chosen(eid, self.disagree_rate, self.salt) or (self.disagree_every and self.calls % self.disagree_every == 0):
            return Outcome(_alter(self.stage, outcome.output), outcome.rejected, outcome.reason)
        return outcome


def _factory(spec: ComponentSpec, resources: Resources) -> Chaos:
    cfg = dict(spec.config)
    wraps = cfg.get("wraps")
    if not isinstance(wraps, dict) or "name" not in wraps:
        raise ConfigError(f"{spec.ref}: chaos needs config.wraps = {{name, version, config}}")
    inner = build(ComponentSpec(spec.stage, wraps["name"], str(wraps.get("version", "1")), wraps.get("config") or {}), resources)
    return Chaos(inner, spec, cfg)


for _stage in STAGES:
    register(_stage, "chaos")(_factory)
