"""Labeling functions (LFs): cheap, noisy rules that vote a label for a text or abstain.

Three kinds, as a support team would write them:

* ``keywords``: any of these words or phrases (whole words, case-insensitive) -> label;
* ``regex``: the pattern matches -> label;
* ``seeds`` (similarity): the text's sentence embedding scores at least ``threshold`` against a
  few labelled seed examples -> label. The score is the cosine to the seeds' centroid (``match:
  centroid``, the default: a prototype, steadier than any one seed) or to the nearest seed
  (``match: nearest``). With ``exclusive`` (the default) an LF votes only when its label scores
  best among all similarity LFs, and by at least ``margin`` over the runner-up, so neighbouring
  intents (``card_arrival`` / ``card_delivery_estimate``) do not both fire on a text that sits
  between them. ``margin: auto`` picks the smallest margin whose leave-one-out precision on the
  seeds themselves reaches ``target_precision``: a choice made from labelled seeds only.

An LF file (YAML) lists them; similarity LFs can be declared one by one with inline seeds, or all at
once from a ``text,label`` seeds CSV (one LF per label in it), so seed texts taken from a data set
need not be copied into the LF file. :func:`apply_lfs` builds the label matrix the label model reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.embedmodels import prime
from agents.textmodels import load_dataset
from agents.weak.label_model import ABSTAIN
from shadowline.errors import ComponentError, ConfigError

__all__ = ["LabelingFunction", "LFSet", "apply_lfs", "auto_margin", "load_lfs"]

KINDS = ("keywords", "regex", "seeds")


@dataclass(frozen=True)
class LabelingFunction:
    name: str
    label: str
    kind: str  # one of KINDS
    keywords: tuple[str, ...] = ()
    pattern: str = ""
    seeds: tuple[str, ...] = ()
    threshold: float = 0.0
    exclusive: bool = True
    match: str = "centroid"  # or "nearest"
    margin: float | None = 0.0  # None: "auto", resolved from the seeds by apply_lfs

    def matcher(self) -> re.Pattern[str]:
        """Keywords become one alternation with word boundaries; a regex is used as written."""
        if self.kind == "keywords":
            return re.compile(r"\b(?:" + "|".join(re.escape(k) for k in self.keywords) + r")\b", re.IGNORECASE)
        return re.compile(self.pattern, re.IGNORECASE)


@dataclass(frozen=True)
class LFSet:
    lfs: tuple[LabelingFunction, ...]
    labels: tuple[str, ...]  # class index order of the label matrix
    embedder: str = "minilm"
    embed_options: Mapping[str, Any] = field(default_factory=dict)
    target_precision: float = 0.9  # for margin: auto

    @property
    def names(self) -> list[str]:
        return [lf.name for lf in self.lfs]


def _margin(value: Any, where: str) -> float | None:
    """``auto`` (None: resolved from the seeds) or a cosine difference in 0..2."""
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 2.0:
        raise ConfigError(f"{where}: margin {value!r}: 'auto' or a number in 0..2")
    return float(value)


def _lf(entry: Any, where: str, default_threshold: float, exclusive: bool,
        defaults: Mapping[str, Any] | None = None) -> LabelingFunction:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: an LF must be a mapping with name, label and one of {', '.join(KINDS)}")
    name, label = str(entry.get("name") or "").strip(), str(entry.get("label") or "").strip()
    if not name or not label:
        raise ConfigError(f"{where}: every LF needs a name and a label")
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: LF {name!r} needs exactly one of {', '.join(KINDS)}, got {kinds or 'none'}")
    kind = kinds[0]
    value = entry[kind]
    if kind == "regex":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise ConfigError(f"{where}: LF {name!r}: bad regex {value!r}: {exc}") from exc
        return LabelingFunction(name, label, kind, pattern=str(value))
    items = (value,) if isinstance(value, str) else tuple(value or ())
    items = tuple(str(v).strip() for v in items if str(v).strip())
    if not items:
        raise ConfigError(f"{where}: LF {name!r}: empty {kind}")
    if kind == "keywords":
        return LabelingFunction(name, label, kind, keywords=items)
    threshold = float(entry.get("threshold", default_threshold))
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"{where}: LF {name!r}: threshold {threshold} is not a cosine similarity")
    d = dict(defaults or {})
    match = str(entry.get("match", d.get("match", "centroid")))
    if match not in ("centroid", "nearest"):
        raise ConfigError(f"{where}: LF {name!r}: match {match!r}: expected centroid or nearest")
    return LabelingFunction(name, label, kind, seeds=items, threshold=threshold,
                            exclusive=bool(entry.get("exclusive", exclusive)), match=match,
                            margin=_margin(entry.get("margin", d.get("margin", 0.0)), f"{where}: LF {name!r}"))


def load_lfs(path: str | Path, *, seeds_csv: str | Path | None = None) -> LFSet:
    """Read an LF file. ``seeds_csv`` overrides the file's ``similarity.seeds`` (relative to the file).

    Format::

        embedder: minilm                # for similarity LFs
        labels: [a, b, c]               # optional: class order; default sorted labels of the LFs
        similarity:                     # optional: one seeds LF per label of a text,label CSV
          seeds: seeds.csv
          threshold: 0.5                # default for every similarity LF
          thresholds: {a: 0.8}          # per-label overrides
          match: centroid               # or nearest
          margin: auto                  # or a number; auto: from leave-one-out on the seeds
          target_precision: 0.9
          exclusive: true
        lfs:
          - {name: kw_refund, label: refund, keywords: [refund, money back]}
          - {name: re_pin, label: pin, regex: "\\bpin\\b.*(block|lock)"}
          - {name: sim_a, label: a, seeds: ["...", "..."], threshold: 0.75}
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read LF file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: an LF file is a mapping with an 'lfs' list")
    sim = doc.get("similarity") or {}
    if not isinstance(sim, Mapping):
        raise ConfigError(f"{path}: 'similarity' must be a mapping (seeds, threshold, thresholds)")
    threshold = float(sim.get("threshold", 0.5))
    exclusive = bool(sim.get("exclusive", True))
    defaults = {k: sim[k] for k in ("match", "margin") if k in sim}
    lfs = [_lf(e, f"{path}: lfs[{i}]", threshold, exclusive, defaults) for i, e in enumerate(doc.get("lfs") or [])]
    seeds_file = seeds_csv or sim.get("seeds")
    if seeds_file:
        seeds_path = Path(seeds_file) if seeds_csv or Path(seeds_file).is_absolute() else path.parent / seeds_file
        try:
            seeds = load_dataset(seeds_path)
        except ComponentError as exc:
            raise ConfigError(str(exc)) from exc
        by_label: dict[str, list[str]] = {}
        for text, label in zip(seeds.texts, seeds.labels):
            by_label.setdefault(label, []).append(text)
        overrides = dict(sim.get("thresholds") or {})
        for label, texts in sorted(by_label.items()):
            entry = {"name": f"sim_{label}", "label": label, "seeds": texts,
                     "threshold": overrides.get(label, threshold)}
            lfs.append(_lf(entry, f"{seeds_path}", threshold, exclusive, defaults))
    if not lfs:
        raise ConfigError(f"{path}: no labeling functions (an 'lfs' list and/or similarity seeds)")
    names = [lf.name for lf in lfs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: duplicate LF names: {', '.join(dup)}")
    labels = tuple(str(x) for x in doc.get("labels") or sorted({lf.label for lf in lfs}))
    unknown = sorted({lf.label for lf in lfs} - set(labels))
    if unknown:
        raise ConfigError(f"{path}: LFs vote labels missing from 'labels': {', '.join(unknown)}")
    target = float(sim.get("target_precision", 0.9))
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"{path}: similarity.target_precision {target} outside (0, 1]")
    return LFSet(tuple(lfs), labels, str(doc.get("embedder", "minilm")), dict(doc.get("embed_options") or {}), target)


def _scores(X: np.ndarray, S: np.ndarray, owner: np.ndarray, lfs: Sequence[LabelingFunction]) -> np.ndarray:
    """(texts, similarity LFs): cosine to each LF's seed centroid, or to its nearest seed."""
    out = np.empty((X.shape[0], len(lfs)), dtype=np.float32)
    for col, lf in enumerate(lfs):
        own = S[owner == col]
        if lf.match == "centroid":
            c = own.mean(axis=0)
            out[:, col] = X @ (c / max(float(np.linalg.norm(c)), 1e-12))
        else:
            out[:, col] = (X @ own.T).max(axis=1)
    return out


def _lead(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best column per row and its lead over the runner-up (inf with a single column)."""
    best = scores.argmax(axis=1)
    if scores.shape[1] < 2:
        return best, np.full(len(best), np.inf)
    top2 = np.sort(scores, axis=1)[:, -2:]
    return best, top2[:, 1] - top2[:, 0]


def auto_margin(S: np.ndarray, owner: np.ndarray, lfs: Sequence[LabelingFunction], target: float) -> float:
    """Smallest margin (0.00-0.30) at which each seed, scored leave-one-out, gets its own label at
    ``target`` precision: how sure the similarity LFs must be, judged on labelled seeds only."""
    best_col = np.empty(len(S), dtype=np.int64)
    lead = np.empty(len(S))
    for i in range(len(S)):
        keep = np.arange(len(S)) != i
        if (owner[keep] == owner[i]).sum() == 0:
            best_col[i], lead[i] = -1, -np.inf  # a single seed cannot be scored without itself
            continue
        b, m = _lead(_scores(S[i : i + 1], S[keep], owner[keep], lfs))
        best_col[i], lead[i] = b[0], m[0]
    right = best_col == owner
    for margin in np.round(np.arange(0.0, 0.301, 0.01), 2):
        voted = lead >= margin
        if voted.any() and right[voted].mean() >= target:
            return float(margin)
    return 0.3


def apply_lfs(lfset: LFSet, texts: Sequence[str], *, cache_dir: str | Path | None = None,
              report: dict[str, Any] | None = None) -> np.ndarray:
    """The label matrix: rows = texts, columns = LFs, values = class index or ABSTAIN (-1).

    ``report``, if given, receives ``similarity_margin``: the margin ``auto`` resolved to.
    """
    index = {label: i for i, label in enumerate(lfset.labels)}
    L = np.full((len(texts), len(lfset.lfs)), ABSTAIN, dtype=np.int64)
    similarity = [j for j, lf in enumerate(lfset.lfs) if lf.kind == "seeds"]
    for j, lf in enumerate(lfset.lfs):
        if lf.kind != "seeds":
            rx = lf.matcher()
            L[[i for i, t in enumerate(texts) if rx.search(t)], j] = index[lf.label]
    if similarity and len(texts):
        sim_lfs = [lfset.lfs[j] for j in similarity]
        X = prime(texts, lfset.embedder, lfset.embed_options, cache_dir=cache_dir)
        S = prime([s for lf in sim_lfs for s in lf.seeds], lfset.embedder, lfset.embed_options)
        owner = np.repeat(np.arange(len(sim_lfs)), [len(lf.seeds) for lf in sim_lfs])
        scores = _scores(X, S, owner, sim_lfs)
        nearest, lead = _lead(scores)
        auto = auto_margin(S, owner, sim_lfs, lfset.target_precision) if any(lf.margin is None for lf in sim_lfs) else 0.0
        if report is not None and any(lf.margin is None for lf in sim_lfs):
            report["similarity_margin"] = auto
        for col, (j, lf) in enumerate(zip(similarity, sim_lfs)):
            fire = scores[:, col] >= lf.threshold
            if lf.exclusive:
                fire &= (nearest == col) & (lead >= (auto if lf.margin is None else lf.margin))
            L[fire, j] = index[lf.label]
    return L
