"""Gated, sequential promotion and rollback, each recorded on ``ops.promotions`` with its evidence.

Sequential means two things: one promotion at a time (a Redis lock), and in pipeline order (no stage
is promoted while a stage upstream of it still has a candidate in shadow, because that candidate
would change this stage's inputs and void its evidence).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from agents.base import ComponentSpec
from schemas.topics import STAGES
from shadow.gates import Gate, GatePolicy, evaluate, verdict
from shadow.registry import Registry
from shadow.stats import ShadowStats
from shadowline.errors import ConfigError, ShadowlineError


class PromotionRefused(ShadowlineError):
    """The gates (or the sequential rule) do not allow this promotion."""

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


@dataclass(frozen=True)
class Decision:
    stage: str
    candidate: ComponentSpec
    stats: ShadowStats
    gates: list[Gate]
    passed: bool
    failing: list[str]

    def explain(self) -> str:
        bad = [g for g in self.gates if not g.passed]
        return " | ".join(f"{g.name}: {g.detail}" for g in bad) or "all gates pass"


def _ref(spec: ComponentSpec) -> dict[str, str]:
    return {"name": spec.name, "version": spec.version}


class Promoter:
    def __init__(
        self,
        registry: Registry,
        stats: Any,  # MemoryStats or RedisStats: .load(stage, candidate_ref)
        publish: Callable[[dict[str, Any]], None],
        policies: dict[str, dict[str, Any]] | None = None,
        regression: Callable[[ComponentSpec], Gate | None] = lambda spec: None,
        actor: str = "cli",
    ) -> None:
        self.registry, self.stats, self.publish = registry, stats, publish
        self.policies = policies or {}
        self.regression = regression
        self.actor = actor

    def candidate(self, stage: str, ref: str | None = None) -> ComponentSpec:
        candidates = self.registry.candidates(stage)
        if ref is not None:
            ref = ref if ":" in ref else f"{stage}:{ref}"
            for spec in candidates:
                if spec.ref == ref:
                    return spec
            raise ConfigError(f"{ref} is not a registered candidate of {stage}")
        if len(candidates) != 1:
            names = ", ".join(c.ref for c in candidates) or "none"
            raise ConfigError(f"stage {stage} has {len(candidates)} candidates ({names}); name one with --candidate")
        return candidates[0]

    def evaluate(self, stage: str, ref: str | None = None) -> Decision:
        spec = self.candidate(stage, ref)
        stats = self.stats.load(stage, f"{spec.name}@{spec.version}")
        gates = evaluate(stats, GatePolicy.from_dict(self.policies.get(stage)), self.regression(spec))
        passed, failing = verdict(gates)
        return Decision(stage, spec, stats, gates, passed, failing)

    def upstream_in_shadow(self, stage: str) -> list[str]:
        return [f"{s} ({', '.join(c.ref for c in self.registry.candidates(s))})"
                for s in STAGES[: STAGES.index(stage)] if self.registry.candidates(s)]

    def promote(self, stage: str, ref: str | None = None, *, force: bool = False, reason: str | None = None) -> Decision:
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage}")
        if force and not reason:
            raise ConfigError("--force needs --reason: forced promotions are audited")
        upstream = self.upstream_in_shadow(stage)
        if upstream and not force:
            raise PromotionRefused(f"{stage} cannot be promoted while upstream stages have candidates in shadow: {'; '.join(upstream)}")
        with self.registry.lock(stage, self.actor):
            decision = self.evaluate(stage, ref)
            if not decision.passed and not force:
                raise PromotionRefused(
                    f"promotion of {decision.candidate.ref} refused; failing gates: {decision.explain()}", decision
                )
            previous = self.registry.activate(decision.candidate)
            self.publish(self._record(stage, "promote", previous, decision.candidate, decision.gates, force, reason))
        return decision

    def rollback(self, stage: str, reason: str | None = None) -> tuple[ComponentSpec, ComponentSpec]:
        with self.registry.lock(stage, self.actor):
            replaced, restored = self.registry.rollback(stage)
            self.publish(self._record(stage, "rollback", replaced, restored, [], False, reason))
        return replaced, restored

    def _record(self, stage: str, action: str, old: ComponentSpec | None, new: ComponentSpec,
                gates: list[Gate], forced: bool, reason: str | None) -> dict[str, Any]:
        return {
            "promotion_id": uuid.uuid4().hex, "stage": stage, "action": action,
            "from_component": _ref(old) if old else None, "to_component": _ref(new),
            "forced": forced, "reason": reason, "actor": self.actor,
            "gates": [g.to_record() for g in gates], "created_ms": int(time.time() * 1000),
        }
