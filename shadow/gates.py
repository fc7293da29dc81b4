"""Promotion gates: whether a shadow candidate has earned the right to serve.

Each gate answers one question with the number it looked at, the threshold it used and a sentence
an ML engineer can paste into a promotion review. Gates read only ``ShadowStats`` (plus an optional
regression-suite result computed elsewhere), so a verdict can be replayed from recorded counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from shadow.stats import ShadowStats, wilson_interval
from shadowline.errors import ConfigError

__all__ = ["GATE_NAMES", "Gate", "GatePolicy", "evaluate", "verdict"]

GATE_NAMES = ("min_samples", "agreement", "latency", "error_rate", "missing", "regression")


@dataclass(frozen=True)
class Gate:
    """One gate's verdict; mirrors ``GateResult.avsc`` field for field."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str = ""

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Gate:
        return cls(r["name"], r["passed"], r.get("value"), r.get("threshold"), r.get("detail", ""))

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name, "passed": self.passed,
            "value": None if self.value is None else float(self.value),
            "threshold": None if self.threshold is None else float(self.threshold),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds for one stage's promotion; defaults suit a classifier-sized stage.

    ``max_latency_ratio`` and ``max_latency_p95_ms`` both apply when set: set the ratio to ``None``
    to judge an intentionally slower candidate (an LLM replacing a model) on an absolute budget only.
    """

    min_samples: int = 200
    min_agreement_lower: float = 0.90
    outcome_margin: float = 0.02
    min_outcome_samples: int = 50
    max_latency_p95_ms: float | None = None
    max_latency_ratio: float | None = 1.5
    latency_floor_ms: float = 5.0
    max_error_rate: float = 0.01
    max_missing_rate: float = 0.05

    def __post_init__(self) -> None:
        for name in ("min_agreement_lower", "outcome_margin", "max_error_rate", "max_missing_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"gate policy: {name} must be within 0..1, got {getattr(self, name)}")
        for name in ("min_samples", "min_outcome_samples", "latency_floor_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"gate policy: {name} must not be negative, got {getattr(self, name)}")
        for name in ("max_latency_p95_ms", "max_latency_ratio"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"gate policy: {name} must be positive or null, got {value}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> GatePolicy:
        """A policy from a config mapping (pipeline.yaml ``gates:``); unset keys keep their defaults."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ConfigError(f"gate policy must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"gate policy: unknown keys {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in d.items():
            values[key] = _coerce(key, value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_INTS = {"min_samples", "min_outcome_samples"}
_OPTIONAL = {"max_latency_p95_ms", "max_latency_ratio"}


def _coerce(key: str, value: Any) -> Any:
    if value is None and key in _OPTIONAL:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"gate policy: {key} must be a number, got {value!r}")
    if key in _INTS:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"gate policy: {key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _min_samples(s: ShadowStats, p: GatePolicy) -> Gate:
    ok = s.samples >= p.min_samples
    return Gate("min_samples", ok, float(s.samples), float(p.min_samples),
                f"{s.samples} matched comparisons {'>=' if ok else '<'} {p.min_samples} required")


def _agreement(s: ShadowStats, p: GatePolicy) -> Gate:
    """Agree with production, or else be provably no worse at matching what the agents sent.

    The agreement threshold is lowered by the noise floor (production against its own replica),
    taken at its Wilson lower bound so a handful of noisy replica samples cannot buy much slack.
    """
    low, high = s.agreement_interval
    threshold = p.min_agreement_lower
    noise_note = ""
    if s.noise_samples:
        allowance = s.noise_disagreement_interval[0]
        threshold = max(0.0, threshold - allowance)
        noise_note = f" (required {p.min_agreement_lower:.2f} less noise floor {allowance:.3f})"
    shown = f"agreement {_f(s.agreement)} [{low:.2f}, {high:.2f}]"
    if s.samples and low >= threshold:
        return Gate("agreement", True, low, threshold, f"{shown} >= {threshold:.2f}{noise_note}")
    disagreeing = f"{shown} < {threshold:.2f}{noise_note}"

    if s.cand_total < p.min_outcome_samples or not s.prod_total:
        return Gate("agreement", False, low, threshold,
                    f"{disagreeing}; outcome non-inferiority not checked: {s.cand_total} candidate "
                    f"and {s.prod_total} production outcomes (need {p.min_outcome_samples} candidate)")
    cand_low = wilson_interval(s.cand_match, s.cand_total)[0]
    prod_rate = s.prod_match / s.prod_total
    bar = prod_rate - p.outcome_margin
    outcomes = (f"candidate match rate {s.cand_match / s.cand_total:.2f} (lower bound {cand_low:.2f}, "
                f"n={s.cand_total}) vs production {prod_rate:.2f} (n={s.prod_total}) - margin "
                f"{p.outcome_margin:.2f} = {bar:.2f}")
    if cand_low >= bar:
        return Gate("agreement", True, cand_low, bar,
                    f"{disagreeing}, but passes on outcomes: {outcomes}, non-inferior")
    return Gate("agreement", False, cand_low, bar, f"{disagreeing}; and on outcomes: {outcomes}, inferior")


def _latency(s: ShadowStats, p: GatePolicy) -> Gate:
    cand, prod = s.candidate_p95_ms, s.production_p95_ms
    if cand is None:
        return Gate("latency", False, None, None, "no candidate latency samples yet")
    limits: list[tuple[float, str]] = []
    if p.max_latency_ratio is not None:
        if prod is None:
            return Gate("latency", False, cand, None,
                        f"candidate p95 {cand:.1f} ms, but no production latency samples to compare with")
        relative = max(prod * p.max_latency_ratio, prod + p.latency_floor_ms)
        limits.append((relative, f"max({p.max_latency_ratio:g} x production p95 {prod:.1f} ms, "
                                 f"production + {p.latency_floor_ms:g} ms) = {relative:.1f} ms"))
    if p.max_latency_p95_ms is not None:
        limits.append((p.max_latency_p95_ms, f"budget {p.max_latency_p95_ms:.1f} ms"))
    if not limits:
        return Gate("latency", True, cand, None, f"candidate p95 {cand:.1f} ms; no latency limit configured")
    limit, why = min(limits)
    ok = cand <= limit
    return Gate("latency", ok, cand, limit, f"candidate p95 {cand:.1f} ms {'<=' if ok else '>'} {why}")


def _error_rate(s: ShadowStats, p: GatePolicy) -> Gate:
    rate = s.error_rate
    ok = rate <= p.max_error_rate
    return Gate("error_rate", ok, rate, p.max_error_rate,
                f"{s.candidate_errors} candidate errors in {s.samples + s.candidate_errors} inputs: "
                f"{rate:.2%} {'<=' if ok else '>'} {p.max_error_rate:.2%}")


def _missing(s: ShadowStats, p: GatePolicy) -> Gate:
    rate = s.missing_rate
    ok = rate <= p.max_missing_rate
    expected = s.samples + s.candidate_errors + s.missing_candidate
    return Gate("missing", ok, rate, p.max_missing_rate,
                f"{s.missing_candidate} of {expected} inputs without a candidate output in time: "
                f"{rate:.2%} {'<=' if ok else '>'} {p.max_missing_rate:.2%}"
                f" ({s.missing_production} missing production, not counted)")


def evaluate(stats: ShadowStats, policy: GatePolicy | None = None, regression: Gate | None = None) -> list[Gate]:
    """Every gate for ``stats`` in a fixed order; ``regression`` (the stage's suite) is appended if given."""
    policy = policy or GatePolicy()
    gates = [
        _min_samples(stats, policy), _agreement(stats, policy), _latency(stats, policy),
        _error_rate(stats, policy), _missing(stats, policy),
    ]
    if regression is not None:
        if regression.name != "regression":
            raise ValueError(f"the regression gate must be named 'regression', got {regression.name!r}")
        gates.append(regression)
    return gates


def verdict(gates: Sequence[Gate]) -> tuple[bool, list[str]]:
    """(promotable, names of failing gates). No gates means nothing was checked: not promotable."""
    failing = [g.name for g in gates if not g.passed]
    return (bool(gates) and not failing, failing)
