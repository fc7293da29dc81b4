"""From an LF file and unlabelled texts to training labels: apply LFs, fit the label model, report.

The output is a ``text,label`` table (rows no LF voted on are left out: nothing is known about them)
with the label model's confidence, plus the LF statistics that say how far to trust it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from agents.weak.label_model import ABSTAIN, LabelModel, majority_vote
from agents.weak.lfs import LFSet, apply_lfs
from agents.weak.stats import lf_summary, matrix_summary
from shadowline.errors import ConfigError

__all__ = ["WeakLabels", "read_texts", "weak_label"]


@dataclass(frozen=True)
class WeakLabels:
    texts: tuple[str, ...]
    L: np.ndarray  # label matrix (rows x LFs), ABSTAIN = -1
    labels: tuple[str, ...]  # class names, index order
    pred: np.ndarray  # class index per row, ABSTAIN where no LF voted (or a tie, with tie_break=abstain)
    confidence: np.ndarray  # label model posterior of pred (0 where ABSTAIN)
    majority: np.ndarray  # majority-vote baseline, same conventions
    lf_stats: list[dict[str, Any]]
    summary: dict[str, Any]

    def labelled(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(texts, label names) of the rows that got a label: the weakly supervised training set."""
        keep = np.flatnonzero(self.pred != ABSTAIN)
        return tuple(self.texts[i] for i in keep), tuple(self.labels[self.pred[i]] for i in keep)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["text", "label", "confidence"])
        for i in np.flatnonzero(self.pred != ABSTAIN):
            w.writerow([self.texts[i], self.labels[self.pred[i]], f"{self.confidence[i]:.4f}"])
        return buf.getvalue()


def read_texts(path: str | Path, column: str = "text") -> tuple[str, ...]:
    """Unlabelled texts: the ``text`` column of a CSV (other columns, e.g. a gold label, are ignored)."""
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read data: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if column not in (reader.fieldnames or []):
        raise ConfigError(f"{path}:1: header must have a {column!r} column, got {reader.fieldnames}")
    texts = tuple(t for t in ((row.get(column) or "").strip() for row in reader) if t)
    if not texts:
        raise ConfigError(f"{path}: no texts")
    return texts


def weak_label(lfset: LFSet, texts: Sequence[str], *, gold: Sequence[str] | None = None,
               cache_dir: str | Path | None = None, seed: int = 0, **label_model: Any) -> WeakLabels:
    """Apply the LFs, fit the label model on the votes, predict. ``gold`` (optional) only feeds the stats."""
    resolved: dict[str, Any] = {}
    L = apply_lfs(lfset, texts, cache_dir=cache_dir, report=resolved)
    k = len(lfset.labels)
    with threadpool_limits(limits=1):  # small products; BLAS threads only contend
        lm = LabelModel(k, **label_model).fit(L)
        proba = lm.predict_proba(L)
    pred = lm.predict(L, tie_break="random", seed=seed)
    conf = np.where(pred != ABSTAIN, proba[np.arange(len(pred)), np.maximum(pred, 0)], 0.0)
    gold_idx = None
    if gold is not None:
        index = {label: i for i, label in enumerate(lfset.labels)}
        gold_idx = np.asarray([index.get(g, ABSTAIN) for g in gold])
    stats = lf_summary(L, lfset.names, lfset.labels, gold=gold_idx, estimated_accuracy=lm.lf_accuracies())
    mv = majority_vote(L, k, tie_break="random", seed=seed)
    summary: dict[str, Any] = dict(matrix_summary(L), labelled=int((pred != ABSTAIN).sum()), **resolved)
    assert lm.report is not None
    summary["label_model"] = {"iterations": lm.report.iterations, "converged": lm.report.converged}
    if gold_idx is not None:
        for name, p in (("label_model", pred), ("majority_vote", mv)):
            known = (p != ABSTAIN) & (gold_idx != ABSTAIN)
            summary[f"{name}_accuracy"] = round(float((p[known] == gold_idx[known]).mean()), 4) if known.any() else None
    return WeakLabels(tuple(texts), L, lfset.labels, pred, conf, mv, stats, summary)
