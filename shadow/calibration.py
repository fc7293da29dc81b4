"""How far to trust the judge: agreement between its scores and human labels, per aspect.

Humans label each aspect good (1) or bad (0); the judge's 0..1 score is binarised at
``JUDGE_POSITIVE``. Raw agreement alone flatters a judge when almost every answer is good (saying
"good" always agrees 95% of the time), so Cohen's kappa reports agreement beyond what the two label
distributions give by chance: 1 is perfect, 0 is chance level, below 0 worse than chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["JUDGE_POSITIVE", "AspectAgreement", "agreement_table", "cohen_kappa"]

JUDGE_POSITIVE = 0.5
"""A judge score at or above this counts as "good". 0.5 is the midpoint of every aspect's scale: the
rule judge maps "clearly related" to 1 and "unrelated" to 0 (agents/judge.py), and LLM judges are asked
for 0..1 scores without further instruction, so the midpoint is the only threshold both share."""


def cohen_kappa(a: Sequence[object], b: Sequence[object]) -> float:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e).

    p_o is the observed agreement, p_e the agreement expected from each rater's label frequencies.
    When both raters use one and the same label throughout, p_e = 1 and kappa is undefined: NaN, as
    scikit-learn returns.
    """
    if len(a) != len(b):
        raise ValueError(f"raters labelled different numbers of items: {len(a)} vs {len(b)}")
    if not a:
        return math.nan
    labels = sorted(set(a) | set(b), key=repr)
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)))
    np.add.at(confusion, ([index[x] for x in a], [index[y] for y in b]), 1)
    n = confusion.sum()
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / (n * n)
    if expected == 1.0:
        return math.nan
    return float((observed - expected) / (1.0 - expected))


@dataclass(frozen=True)
class AspectAgreement:
    judge: str
    aspect: str
    n: int
    agreement: float | None  # share of items where the binarised judge score equals the human label
    kappa: float | None  # None: no items, or kappa undefined (one label throughout)
    human_positive: float | None  # share labelled good by humans, to read kappa against


def agreement_table(pairs: Iterable[tuple[str, str, int, float]], threshold: float = JUDGE_POSITIVE) -> list[AspectAgreement]:
    """(judge, aspect, human label 0/1, judge score) pairs -> one row per judge and aspect, sorted."""
    grouped: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for judge, aspect, human, score in pairs:
        h, j = grouped.setdefault((judge, aspect), ([], []))
        h.append(int(human))
        j.append(int(score >= threshold))
    rows = []
    for (judge, aspect), (h, j) in sorted(grouped.items()):
        kappa = cohen_kappa(h, j)
        rows.append(AspectAgreement(judge, aspect, len(h), float(np.mean(np.equal(h, j))),
                                    None if math.isnan(kappa) else kappa, float(np.mean(h))))
    return rows
