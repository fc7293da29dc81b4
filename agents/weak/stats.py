"""Per-LF statistics of a label matrix: what Snorkel's ``LFAnalysis`` reports, and the label model's view.

Coverage says how much an LF contributes; overlaps and conflicts say how much the label model has to
reconcile. With gold labels for some rows (a small dev sample), the empirical accuracy of each LF
checks the label model's unsupervised estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.weak.label_model import ABSTAIN

__all__ = ["lf_summary", "matrix_summary"]


def _others_voted(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: did another LF vote on this row; did another LF vote a different label on it."""
    voted = L != ABSTAIN
    n_votes = voted.sum(axis=1, keepdims=True)
    overlap = voted & (n_votes > 1)
    # A row has a conflict for LF j when some other LF voted a label other than L[i, j]: count votes per
    # label on the row and compare with the votes for LF j's own label.
    conflict = np.zeros_like(voted)
    for j in range(L.shape[1]):
        same = (L == L[:, [j]]) & voted
        conflict[:, j] = voted[:, j] & (n_votes[:, 0] > same.sum(axis=1))
    return overlap, conflict


def lf_summary(L: np.ndarray, names: Sequence[str], labels: Sequence[str], *,
               gold: Sequence[int] | np.ndarray | None = None,
               estimated_accuracy: Sequence[float] | np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per LF: polarity (labels it voted), coverage, overlaps, conflicts, and accuracies.

    ``gold``: class index per row, ABSTAIN (-1) where unknown; accuracy is over the LF's votes on rows
    with gold. ``estimated_accuracy``: the label model's estimate, reported next to it.
    """
    L = np.asarray(L)
    n = max(L.shape[0], 1)
    voted = L != ABSTAIN
    overlap, conflict = _others_voted(L)
    g = None if gold is None else np.asarray(gold)
    rows = []
    for j, name in enumerate(names):
        votes = L[voted[:, j], j]
        row: dict[str, Any] = {
            "lf": name,
            "polarity": sorted({labels[v] for v in np.unique(votes)}),
            "votes": int(voted[:, j].sum()),
            "coverage": round(float(voted[:, j].sum()) / n, 4),
            "overlaps": round(float(overlap[:, j].sum()) / n, 4),
            "conflicts": round(float(conflict[:, j].sum()) / n, 4),
        }
        if g is not None:
            known = voted[:, j] & (g != ABSTAIN)
            row["gold_votes"] = int(known.sum())
            row["accuracy"] = round(float((L[known, j] == g[known]).mean()), 4) if known.any() else None
        if estimated_accuracy is not None:
            est = float(estimated_accuracy[j])
            row["estimated_accuracy"] = None if np.isnan(est) else round(est, 4)
        rows.append(row)
    return rows


def matrix_summary(L: np.ndarray) -> dict[str, Any]:
    """Whole-matrix numbers: rows with at least one vote, with two or more, with disagreeing votes."""
    L = np.asarray(L)
    n = L.shape[0]
    voted = L != ABSTAIN
    n_votes = voted.sum(axis=1)
    disagree = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(n_votes > 1):
        disagree[i] = len(np.unique(L[i, voted[i]])) > 1
    div = max(n, 1)
    return {
        "rows": int(n),
        "lfs": int(L.shape[1]),
        "coverage": round(float((n_votes > 0).sum()) / div, 4),
        "overlap": round(float((n_votes > 1).sum()) / div, 4),
        "conflict": round(float(disagree.sum()) / div, 4),
        "mean_votes_per_row": round(float(n_votes.mean()) if n else 0.0, 3),
    }
