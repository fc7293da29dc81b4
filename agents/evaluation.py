"""Held-out evaluation of a TextModel artifact, including out-of-scope (OOS) detection.

Two input formats:

* CSV ``text,<label>`` (the label column is the one that is not ``text``: ``category``, ``label``,
  ``topic``...), read with :func:`agents.textmodels.load_dataset`.
* The CLINC150 JSON (``data_full*.json``): the in-scope items of one split (``train``, ``val``, ``test``)
  plus, when present, the ``oos_<split>`` items labelled :data:`OOS`.

A prediction counts as out-of-scope when the model predicts ``oos`` (the validate stage's
``out_of_scope`` counts the same) *or* its calibrated confidence is below a threshold. The threshold is chosen on the *training* data from the out-of-fold probabilities
``TextModel.fit`` computes anyway (:func:`choose_oos_threshold`), never on the evaluation data, and is
stored in the artifact's ``meta.json`` as ``oos_threshold``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from agents.textmodels import Dataset, Prediction, TextModel, load_dataset
from shadowline.errors import ComponentError, ConfigError

__all__ = [
    "FORMATS",
    "OOS",
    "OOS_LABELS",
    "choose_oos_threshold",
    "detect_format",
    "evaluate",
    "expected_calibration_error",
    "load_clinc",
    "load_eval_data",
    "stratified_split",
]

OOS = "oos"
OOS_LABELS = (OOS, "out_of_scope")  # CLINC150's name, and the validate stage's
FORMATS = ("csv", "clinc")


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    return "clinc" if Path(path).suffix.lower() == ".json" else "csv"


def load_clinc(path: str | Path, split: str = "val", *, include_oos: bool = True) -> Dataset:
    """The ``split`` items of a CLINC150 JSON, plus ``oos_<split>`` labelled ``oos`` if ``include_oos``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read data: {exc.strerror or exc}") from exc
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a CLINC150 JSON file: {exc}") from exc
    if not isinstance(obj, dict) or split not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ConfigError(f"{path}: no split {split!r} in this CLINC150 file (has {keys})")
    items = list(obj[split])
    if include_oos:
        items += [[pair[0], OOS] for pair in obj.get(f"oos_{split}", []) if isinstance(pair, list) and pair]
    texts: list[str] = []
    labels: list[str] = []
    for i, pair in enumerate(items):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
            raise ConfigError(f"{path}: {split}[{i}] is not a [text, intent] pair: {pair!r:.80}")
        if pair[0].strip():
            texts.append(pair[0].strip())
            labels.append(pair[1].strip())
    if len(set(labels)) < 2:
        raise ConfigError(f"{path}: split {split!r} needs at least two labels, got {sorted(set(labels))}")
    digest = hashlib.sha256(raw + f":{split}:{include_oos}".encode()).hexdigest()
    return Dataset(tuple(texts), tuple(labels), f"{path}#{split}", digest)


def load_eval_data(path: str | Path, fmt: str | None = None, split: str = "val") -> Dataset:
    """Either format; every problem is one ``ConfigError`` line naming the file."""
    fmt = detect_format(path, fmt)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    if fmt == "clinc":
        return load_clinc(path, split)
    try:
        return load_dataset(path)
    except ComponentError as exc:
        raise ConfigError(str(exc)) from exc


def stratified_split(data: Dataset, holdout: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A fixed-seed stratified train/held-out split; each part keeps the parent's sha256 plus a suffix."""
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"--holdout {holdout}: must be between 0 and 1")
    idx = np.arange(len(data.texts))
    try:
        tr, te = train_test_split(idx, test_size=holdout, random_state=seed, stratify=np.asarray(data.labels))
    except ValueError as exc:
        raise ConfigError(f"{data.source}: cannot split {holdout:.0%} stratified: {exc}") from exc

    def part(rows: np.ndarray, name: str) -> Dataset:
        rows = np.sort(rows)
        tag = hashlib.sha256(f"{data.sha256}:{name}:{holdout}:{seed}".encode()).hexdigest()
        return Dataset(tuple(data.texts[i] for i in rows), tuple(data.labels[i] for i in rows),
                       f"{data.source}[{name} {1 - holdout if name == 'train' else holdout:.0%} seed={seed}]", tag)

    return part(tr, "train"), part(te, "heldout")


def _oos_label(labels: Sequence[str]) -> str | None:
    return next((name for name in OOS_LABELS if name in labels), None)


def _oos_counts(gold: Sequence[str], flagged: np.ndarray, pred: Sequence[str], oos: str = OOS) -> dict[str, float]:
    gold_oos = np.asarray([g == oos for g in gold])
    correct_in = np.asarray([(not f) and p == g for g, f, p in zip(gold, flagged, pred)])
    n_in, n_oos, n_flag = int((~gold_oos).sum()), int(gold_oos.sum()), int(flagged.sum())
    tp = int((flagged & gold_oos).sum())
    return {
        "in_scope_accuracy": float(correct_in[~gold_oos].mean()) if n_in else float("nan"),
        "oos_recall": tp / n_oos if n_oos else float("nan"),
        "oos_precision": tp / n_flag if n_flag else 0.0,
    }


def choose_oos_threshold(model: TextModel, train: Dataset, rule: str = "balanced",
                         target_recall: float = 0.9) -> dict[str, Any]:
    """Pick the confidence threshold below which a prediction counts as out-of-scope.

    Uses ``model.oof_proba`` (out-of-fold, calibrated, from ``TextModel.fit`` on ``train``), so the
    choice never sees evaluation data. With an out-of-scope class in training (``oos`` or
    ``out_of_scope``), the threshold (0.00-0.99, step 0.01) maximises on those out-of-fold
    predictions:

    * ``balanced`` (default): in-scope accuracy + OOS recall (the two numbers the CLINC150 paper reports);
    * ``f1``: the F1 of OOS detection (fewer false alarms, lower recall);
    * ``recall``: in-scope accuracy, among thresholds reaching ``target_recall`` OOS recall (an
      operating point fixed in advance, as a product owner would state it).

    Without an out-of-scope class, it rejects the least confident 5% of correct out-of-fold predictions.
    """
    if rule not in ("balanced", "f1", "recall"):
        raise ConfigError(f"OOS threshold rule {rule!r}: expected balanced, f1 or recall")
    proba = model.oof_proba
    if proba is None or len(proba) != len(train.texts):
        return {"threshold": 0.0, "rule": "none: no out-of-fold predictions (too few rows per label)"}
    labels = np.asarray(model.labels)
    pred = labels[proba.argmax(axis=1)]
    conf = proba.max(axis=1)
    gold = list(train.labels)
    oos = _oos_label(model.labels)
    if oos is not None:
        best: tuple[float, float, dict[str, float]] | None = None
        for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
            flagged = (pred == oos) | (conf < t)
            c = _oos_counts(gold, flagged, list(pred), oos)
            if rule == "f1":
                pr, rc = c["oos_precision"], c["oos_recall"]
                score = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
            elif rule == "recall":
                # Below the target recall a threshold only counts by how close it gets.
                score = c["in_scope_accuracy"] if c["oos_recall"] >= target_recall else c["oos_recall"] - 1.0
            else:
                score = c["in_scope_accuracy"] + c["oos_recall"]
            if best is None or score > best[0] + 1e-12:
                best = (score, float(t), c)
        assert best is not None
        _, t, c = best
        what = {"balanced": "in-scope accuracy + OOS recall", "f1": "F1 of OOS detection",
                "recall": f"in-scope accuracy at OOS recall >= {target_recall:.0%}"}[rule]
        return {"threshold": t, "rule": f"max({what}) on out-of-fold training predictions",
                "train_oof": {k: round(v, 4) for k, v in c.items()}}
    correct = conf[pred == np.asarray(gold)]
    t = float(np.quantile(correct, 0.05)) if len(correct) else 0.0
    return {"threshold": round(t, 4), "rule": "5th percentile of confidence of correct out-of-fold predictions"}


def evaluate(model: TextModel, data: Dataset, threshold: float | None = None, *,
             predictions: Sequence[Prediction] | None = None) -> dict[str, Any]:
    """Accuracy and macro-F1; with ``oos`` in ``data``, also in-scope accuracy and OOS recall/precision.

    ``threshold`` defaults to the artifact's ``meta["oos_threshold"]`` (0 if it has none). It only
    changes the numbers when the data has ``oos`` items. ``predictions``: the model's predictions for
    ``data`` if already made (a threshold sweep scores one set of predictions many times).
    """
    if threshold is None:
        threshold = float(model.meta.get("oos_threshold", 0.0) or 0.0)
    preds = model.predict_many(data.texts) if predictions is None else list(predictions)
    if len(preds) != len(data.texts):
        raise ConfigError(f"{len(preds)} predictions for {len(data.texts)} rows of {data.source}")
    raw = [p.label for p in preds]
    conf = np.asarray([p.confidence for p in preds])
    gold = list(data.labels)
    oos = _oos_label(gold)
    has_oos = oos is not None
    out: dict[str, Any] = {"rows": len(gold), "labels": len(set(gold))}
    if oos is not None:
        flagged = np.asarray([r == oos for r in raw]) | (conf < threshold)
        final = [oos if f else r for f, r in zip(flagged, raw)]
        out.update({"oos_threshold": threshold, "in_scope_rows": sum(g != oos for g in gold),
                    "oos_rows": sum(g == oos for g in gold)})
    else:
        final = raw
    unknown = sorted(set(gold) - set(model.labels) - {oos or OOS})
    out["accuracy"] = round(float(accuracy_score(gold, final)), 4)
    out["macro_f1"] = round(float(f1_score(gold, final, average="macro", zero_division=0)), 4)
    in_scope = np.asarray([g != oos for g in gold]) if oos is not None else np.ones(len(gold), dtype=bool)
    if in_scope.any():
        right = np.asarray([r == g for r, g in zip(raw, gold)])
        out["ece"] = round(expected_calibration_error(conf[in_scope], right[in_scope]), 4)
    if has_oos:
        out.update({k: round(v, 4) for k, v in _oos_counts(gold, flagged, raw, oos or OOS).items()})
    if unknown:
        out["labels_unknown_to_model"] = unknown
    return out


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Reliability in one number: the mean |confidence - accuracy| over equal-width confidence bins,
    weighted by how many predictions fall in each (0 = confidences mean what they say)."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in np.unique(which):
        rows = which == b
        total += rows.mean() * abs(confidence[rows].mean() - correct[rows].mean())
    return float(total)


def summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value) pairs in a stable order, for tables."""
    order = ["rows", "labels", "accuracy", "macro_f1", "ece", "in_scope_rows", "oos_rows", "in_scope_accuracy",
             "oos_recall", "oos_precision", "oos_threshold"]
    out = []
    for key in order:
        if key in metrics:
            v = metrics[key]
            out.append((key, f"{v:.4f}" if isinstance(v, float) else str(v)))
    return out
