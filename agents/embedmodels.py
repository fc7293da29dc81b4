"""Sentence-embedding features for the trained text models (``model="embed"`` and ``"hybrid"``).

TF-IDF only knows the words a training row used; a sentence encoder maps "my card hasn't come yet"
and "still waiting on the card" close together, which is what fine-grained intents and
out-of-scope distance need. :class:`EmbeddingFeatures` is a scikit-learn transformer, so the
logistic regression, temperature scaling, cross-validation and artifact code in
:mod:`agents.textmodels` stay the same for every kind of model.

Embedding is the slow part (MiniLM on two cores: ~20 ms a text in batches, ~25 ms for one text
alone, measured on BANKING77) and it has no fitted state, so
a text's vector is the same in every fold of a cross-validation. Two caches exploit that:

* an in-process memo, filled by :func:`prime` for the texts about to be fitted or scored many times
  (5-fold CV would otherwise embed each training text five times); bounded, and ``forget``-able;
* an optional on-disk ``.npy`` cache keyed by a hash of the texts and the embedder config, so
  benchmark reruns skip the minutes of embedding a whole data set.

The hybrid model is :class:`LogitBlend`: the tfidf and embed regressions side by side.

The transformer pickles as its embedder *name and options* only; the 90 MB of MiniLM weights come
from the installed package at load time, and :func:`check_embedder` refuses an artifact whose
embedder config differs from the one this process builds (other vectors, meaningless weights).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from kb_index.embedder import Embedder, get_embedder
from shadowline.errors import ComponentError, ConfigError

__all__ = ["EmbeddingFeatures", "LogitBlend", "blend_weight", "check_embedder", "embedder_config", "forget", "prime", "shared_embedder"]

MEMO_LIMIT = 200_000  # texts; ~300 MB of float32 MiniLM vectors at most
_EMBEDDERS: dict[str, Embedder] = {}
_MEMO: dict[tuple[str, str], np.ndarray] = {}
_LOCK = threading.Lock()


def _options_key(name: str, options: Mapping[str, Any]) -> str:
    return json.dumps({"name": name, **dict(options)}, sort_keys=True)


def shared_embedder(name: str, options: Mapping[str, Any]) -> Embedder:
    """One instance per (name, options) per process: MiniLM's weights load once, not per component."""
    key = _options_key(name, options)
    with _LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            emb = _EMBEDDERS[key] = get_embedder(name, **dict(options))
        return emb


def embedder_config(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The embedder's own description (name, dim, model...): what an artifact records and checks."""
    return dict(getattr(shared_embedder(name, options or {}), "config", {"name": name}))


def _memo_key(name: str, options: Mapping[str, Any]) -> str:
    return json.dumps(embedder_config(name, options), sort_keys=True)


def _texts_digest(config_key: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(config_key.encode())
    for t in texts:
        h.update(b"\x00" + t.encode("utf-8"))
    return h.hexdigest()[:20]


def prime(texts: Iterable[str], name: str = "minilm", options: Mapping[str, Any] | None = None, *,
          cache_dir: str | Path | None = None) -> np.ndarray:
    """Embed ``texts`` into the memo (from ``cache_dir`` when present there) and return their vectors.

    The on-disk file holds exactly these texts in this order, so a changed data set or embedder gets
    a new file instead of stale vectors.
    """
    texts = list(texts)
    options = dict(options or {})
    key = _memo_key(name, options)
    path = Path(cache_dir) / f"emb-{_texts_digest(key, texts)}.npy" if cache_dir else None
    vectors: np.ndarray | None = None
    if path is not None and path.is_file():
        try:
            loaded = np.load(path)
            if loaded.shape[0] == len(texts):
                vectors = loaded
        except (OSError, ValueError):
            vectors = None  # damaged cache file: recompute and overwrite it
    if vectors is None:
        vectors = _embed(texts, name, options, key)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, vectors)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot write embedding cache: {exc}") from exc
    with _LOCK:
        if len(_MEMO) + len(texts) > MEMO_LIMIT:
            _MEMO.clear()
        for t, v in zip(texts, vectors):
            _MEMO[(key, t)] = v
    return vectors


def forget(texts: Iterable[str] | None = None) -> None:
    """Drop ``texts`` (every embedder) from the memo, or everything when ``texts`` is None."""
    with _LOCK:
        if texts is None:
            _MEMO.clear()
            return
        drop = set(texts)
        for k in [k for k in _MEMO if k[1] in drop]:
            del _MEMO[k]


def _embed(texts: Sequence[str], name: str, options: Mapping[str, Any], key: str) -> np.ndarray:
    """Memo hits copied, misses embedded in one batch (the embedder sorts by length and batches)."""
    emb = shared_embedder(name, options)
    out = np.zeros((len(texts), emb.dim), dtype=np.float32)
    missing: list[int] = []
    with _LOCK:
        for i, t in enumerate(texts):
            v = _MEMO.get((key, t))
            if v is None:
                missing.append(i)
            else:
                out[i] = v
    if missing:
        out[missing] = emb.embed([texts[i] for i in missing])
    return out


class EmbeddingFeatures(BaseEstimator, TransformerMixin):
    """Texts -> L2-normalised sentence embeddings. Stateless: ``fit`` learns nothing."""

    def __init__(self, embedder: str = "minilm", options: Mapping[str, Any] | None = None) -> None:
        self.embedder = embedder
        self.options = options

    def fit(self, X: Sequence[str], y: Any = None) -> EmbeddingFeatures:
        return self

    def transform(self, X: Sequence[str]) -> np.ndarray:
        options = dict(self.options or {})
        return _embed(list(X), self.embedder, options, _memo_key(self.embedder, options))


def check_embedder(saved: Mapping[str, Any], where: str) -> None:
    """Refuse an artifact trained on vectors this process would not produce (other model or dims).

    ``saved`` is the artifact's ``meta["embedder"]``: ``{"name", "options", "config"}``.
    """
    name, options = str(saved.get("name", "")), dict(saved.get("options") or {})
    try:
        current = embedder_config(name, options)
    except ConfigError as exc:
        raise ComponentError(f"{where}: embedder {name!r} unavailable: {exc}") from exc
    if dict(saved.get("config") or {}) != current:
        raise ComponentError(f"{where}: trained with embedder {saved.get('config')}, this process builds {current}; retrain")


def _as_logits(decision: np.ndarray) -> np.ndarray:
    return np.column_stack([np.zeros_like(decision), decision]) if decision.ndim == 1 else decision


class LogitBlend(BaseEstimator, ClassifierMixin):
    """The hybrid model: a weighted sum of the logits of fitted classifiers (a product of experts).

    Measured on BANKING77 (inner split of the training part): stacking the TF-IDF and embedding
    features in one regression scored within noise of this (91.8% vs 91.5%) but trained 5-6x slower,
    since the dense 384-d block triples the non-zeros the sparse solver iterates over. Late fusion
    trains the two experts at their own cost and learns one number, the embedding expert's weight,
    on out-of-fold logits (:func:`blend_weight`).
    """

    def __init__(self, parts: Sequence[tuple[str, Any]], weights: Sequence[float]) -> None:
        self.parts = parts
        self.weights = weights

    def fit(self, X: Sequence[str], y: Any) -> LogitBlend:
        for _, est in self.parts:
            est.fit(X, y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        first = self.parts[0][1].classes_
        for name, est in self.parts[1:]:
            if list(est.classes_) != list(first):
                raise ComponentError(f"hybrid part {name!r} has other classes than {self.parts[0][0]!r}")
        return first

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        texts = list(X)
        return sum(w * _as_logits(est.decision_function(texts)) for (_, est), w in zip(self.parts, self.weights))


def blend_weight(base: np.ndarray, other: np.ndarray, y: np.ndarray, fit_temperature: Any,
                 grid: Sequence[float] = tuple(np.round(np.arange(0.0, 4.01, 0.25), 2))) -> float:
    """The weight w of ``other`` minimising the log loss of softmax((base + w * other) / T), T refitted per w.

    ``base`` and ``other`` are out-of-fold logits, so the weight is chosen on training folds only.
    """
    rows = np.arange(len(y))
    best_w, best_loss = 1.0, np.inf
    for w in grid:
        z = base + w * other
        z = z / fit_temperature(z, y)
        z = z - z.max(axis=1, keepdims=True)
        loss = float(-(z[rows, y] - np.log(np.exp(z).sum(axis=1))).mean())
        if loss < best_loss - 1e-9:
            best_w, best_loss = float(w), loss
    return best_w
