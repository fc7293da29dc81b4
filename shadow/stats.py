"""The numbers behind ``shadowline shadow status`` and the promotion gates.

Counts are folded from ``compare.<stage>`` records elsewhere; this module only holds them and derives
rates, confidence intervals and latency percentiles, so the gates and the CLI read the same numbers
and both are testable without a broker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

__all__ = [
    "GRID_KEYS", "LATENCY_WINDOW", "MATCH_THRESHOLD", "ShadowStats", "empty", "merged", "outcome_match",
    "percentile", "wilson_interval",
]

MATCH_THRESHOLD = 0.6
"""Similarity above which a suggestion counts as "similar enough to what the agent sent".

Stripe's match-rate heuristic: a suggestion is useful when the reply the agent actually sent is
close to it, whether or not they clicked "accept". 0.6 on the comparator's embedding similarity
accepts paraphrases and light edits but not a reply that answers something else.
"""

LATENCY_WINDOW = 5000
"""How many recent latency samples a ShadowStats keeps per side: enough for a stable p95."""

GRID_KEYS = ("agree_match", "agree_miss", "diverge_match", "diverge_miss")


def outcome_match(similarity: float, threshold: float = MATCH_THRESHOLD) -> bool:
    """Whether an output matched the human outcome (the agent's sent reply)."""
    return similarity >= threshold


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate.

    Chosen over the normal approximation because gates look at rates near 1.0 with a few hundred
    samples, where the normal interval collapses to zero width or exceeds 1.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, center - margin), min(1.0, center + margin))


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks, as numpy's default."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    xs = sorted(values)
    if not xs:
        return None
    rank = (len(xs) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


_COUNTS = (
    "samples", "agree", "missing_candidate", "missing_production", "candidate_errors",
    "noise_samples", "noise_agree", "prod_match", "prod_total", "cand_match", "cand_total",
)


@dataclass(frozen=True)
class ShadowStats:
    """Running comparison counts for one stage's production/candidate pair.

    ``samples`` are matched comparisons (both outputs present, candidate did not fail); candidate
    errors and the two kinds of missing are counted beside them, not inside. Rates whose
    denominator is still zero are ``None`` ("not measured"), except error and missing rates, which
    read 0.0 so a fresh pair shows a clean slate rather than a gap.
    """

    stage: str
    production: str  # "name@version"
    candidate: str
    samples: int = 0
    agree: int = 0
    missing_candidate: int = 0
    missing_production: int = 0
    candidate_errors: int = 0
    production_latency_ms: tuple[float, ...] = ()
    candidate_latency_ms: tuple[float, ...] = ()
    noise_samples: int = 0
    noise_agree: int = 0
    prod_match: int = 0
    prod_total: int = 0
    cand_match: int = 0
    cand_total: int = 0
    grid: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _COUNTS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for part, whole in (("agree", "samples"), ("noise_agree", "noise_samples"),
                            ("prod_match", "prod_total"), ("cand_match", "cand_total")):
            if getattr(self, part) > getattr(self, whole):
                raise ValueError(f"{part} ({getattr(self, part)}) exceeds {whole} ({getattr(self, whole)})")
        unknown = set(self.grid) - set(GRID_KEYS)
        if unknown:
            raise ValueError(f"unknown grid keys: {sorted(unknown)}")
        # Always all four cells, and read-only so the frozen dataclass really is frozen.
        object.__setattr__(self, "grid", MappingProxyType({k: int(self.grid.get(k, 0)) for k in GRID_KEYS}))
        object.__setattr__(self, "production_latency_ms", tuple(self.production_latency_ms)[-LATENCY_WINDOW:])
        object.__setattr__(self, "candidate_latency_ms", tuple(self.candidate_latency_ms)[-LATENCY_WINDOW:])

    # agreement with production
    @property
    def agreement(self) -> float | None:
        return _rate(self.agree, self.samples)

    @property
    def agreement_interval(self) -> tuple[float, float]:
        return wilson_interval(self.agree, self.samples)

    @property
    def disagreement(self) -> float | None:
        return None if self.agreement is None else 1.0 - self.agreement

    @property
    def noise_disagreement(self) -> float | None:
        """How often production disagrees with a replica of itself: the floor no candidate can beat."""
        return None if not self.noise_samples else 1.0 - self.noise_agree / self.noise_samples

    @property
    def noise_disagreement_interval(self) -> tuple[float, float]:
        return wilson_interval(self.noise_samples - self.noise_agree, self.noise_samples)

    @property
    def net_disagreement(self) -> float | None:
        """Disagreement the candidate is responsible for: raw disagreement less the noise floor."""
        if self.disagreement is None:
            return None
        return max(0.0, self.disagreement - (self.noise_disagreement or 0.0))

    # health
    @property
    def error_rate(self) -> float:
        attempts = self.samples + self.candidate_errors
        return self.candidate_errors / attempts if attempts else 0.0

    @property
    def missing_rate(self) -> float:
        """Share of mirrored inputs the candidate never answered in time.

        Missing production outputs are the comparator's or production's affair, so they are shown
        (``missing_production``) but not held against the candidate.
        """
        expected = self.samples + self.candidate_errors + self.missing_candidate
        return self.missing_candidate / expected if expected else 0.0

    # outcome against the human
    @property
    def prod_match_rate(self) -> float | None:
        return _rate(self.prod_match, self.prod_total)

    @property
    def cand_match_rate(self) -> float | None:
        return _rate(self.cand_match, self.cand_total)

    @property
    def cand_match_interval(self) -> tuple[float, float]:
        return wilson_interval(self.cand_match, self.cand_total)

    # latency
    @property
    def production_p50_ms(self) -> float | None:
        return percentile(self.production_latency_ms, 50)

    @property
    def production_p95_ms(self) -> float | None:
        return percentile(self.production_latency_ms, 95)

    @property
    def candidate_p50_ms(self) -> float | None:
        return percentile(self.candidate_latency_ms, 50)

    @property
    def candidate_p95_ms(self) -> float | None:
        return percentile(self.candidate_latency_ms, 95)

    def to_dict(self) -> dict[str, Any]:
        """Counts and derived numbers as plain JSON-able values, for ``shadow status --json``."""
        low, high = self.agreement_interval
        out: dict[str, Any] = {"stage": self.stage, "production": self.production, "candidate": self.candidate}
        out.update({name: getattr(self, name) for name in _COUNTS})
        out["grid"] = dict(self.grid)
        out.update({
            "agreement": self.agreement, "agreement_low": low, "agreement_high": high,
            "noise_disagreement": self.noise_disagreement, "net_disagreement": self.net_disagreement,
            "error_rate": self.error_rate, "missing_rate": self.missing_rate,
            "prod_match_rate": self.prod_match_rate, "cand_match_rate": self.cand_match_rate,
            "production_p50_ms": self.production_p50_ms, "production_p95_ms": self.production_p95_ms,
            "candidate_p50_ms": self.candidate_p50_ms, "candidate_p95_ms": self.candidate_p95_ms,
        })
        return out


def empty(stage: str, production: str, candidate: str) -> ShadowStats:
    """Stats for a pair that has not been compared yet."""
    return ShadowStats(stage, production, candidate)


def merged(a: ShadowStats, b: ShadowStats) -> ShadowStats:
    """``a`` and ``b`` summed, e.g. two partitions' or two windows' counts; ``b`` is the more recent.

    Latency keeps the last ``LATENCY_WINDOW`` samples of ``a`` followed by ``b``.
    """
    if (a.stage, a.production, a.candidate) != (b.stage, b.production, b.candidate):
        raise ValueError(
            f"cannot merge stats of different pairs: {a.stage} {a.production} vs {a.candidate} "
            f"and {b.stage} {b.production} vs {b.candidate}"
        )
    counts = {name: getattr(a, name) + getattr(b, name) for name in _COUNTS}
    return ShadowStats(
        a.stage, a.production, a.candidate,
        production_latency_ms=(a.production_latency_ms + b.production_latency_ms)[-LATENCY_WINDOW:],
        candidate_latency_ms=(a.candidate_latency_ms + b.candidate_latency_ms)[-LATENCY_WINDOW:],
        grid={k: a.grid[k] + b.grid[k] for k in GRID_KEYS},
        **counts,
    )
