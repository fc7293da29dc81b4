"""Small text classifiers shared by the validate and classify stages.

Both stages need the same thing: a label for a short customer message, with a probability that means
what it says (a gate compares it to a threshold). A TF-IDF + logistic regression model trains on a few
hundred demo rows in well under a second, runs in about a millisecond, and needs no network, so it is
the offline default the LLM variants are shadow-tested against.

Three kinds (``model=``): ``tfidf`` (word + character n-grams), ``embed`` (MiniLM sentence
embeddings, :mod:`agents.embedmodels`), each with a logistic regression, and ``hybrid``: both
regressions, their logits summed with a weight learned on out-of-fold predictions. Calibration,
metrics, artifacts and thresholds are shared.

Calibration is temperature scaling fitted on out-of-fold decision scores (what
``CalibratedClassifierCV(method="temperature", ensemble=False)`` does); the same out-of-fold
predictions give the cross-validated metrics stored with the artifact, so they cost nothing extra.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from scipy.optimize import minimize_scalar
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from threadpoolctl import threadpool_limits

from agents.embedmodels import EmbeddingFeatures, LogitBlend, blend_weight, check_embedder, embedder_config, prime
from shadowline.errors import ComponentError, ConfigError

__all__ = [
    "ARTIFACT_FORMAT",
    "COMPONENT_NAMES",
    "MODEL_KINDS",
    "Dataset",
    "Prediction",
    "TextModel",
    "clear_cache",
    "load_dataset",
    "obtain",
    "train_cached",
]

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.joblib"
META_FILE = "meta.json"
DEFAULT_PARAMS: dict[str, Any] = {"model": "tfidf", "C": None, "folds": 5, "seed": 0}
MODEL_KINDS = ("tfidf", "embed", "hybrid")
COMPONENT_NAMES = {kind: f"{kind}-logreg" for kind in MODEL_KINDS}  # the classify/validate component per kind
# embed: chosen on an inner 80/20 split of BANKING77's training part (1, 10, 30, 100 -> 88.8, 91.1, 91.6,
# 91.2%); held-out rows never took part. A hybrid's parts use their own kinds' values.
DEFAULT_C = {"tfidf": 10.0, "embed": 30.0}


@dataclass(frozen=True, slots=True)
class Dataset:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    source: str
    sha256: str

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    confidence: float
    scores: Mapping[str, float]


def load_dataset(path: str | Path, label_column: str | None = None) -> Dataset:
    """Read a ``text,<label>`` CSV. Errors name the file and line, since people edit these by hand.

    ``label_column`` defaults to the one column besides ``text`` (``label`` or ``topic``).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ComponentError(f"{path}: cannot read training data: {exc.strerror or exc}") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(content, newline=""))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "text" not in fields:
        raise ComponentError(f"{path}:1: header must have a 'text' column, got {fields}")
    if label_column is None:
        others = [f for f in fields if f != "text"]
        if len(others) != 1:
            raise ComponentError(f"{path}:1: expected text plus one label column, got {fields}")
        label_column = others[0]
    elif label_column not in fields:
        raise ComponentError(f"{path}:1: no {label_column!r} column in {fields}")
    reader.fieldnames = fields
    texts: list[str] = []
    labels: list[str] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ComponentError(f"{path}:{line}: too many fields (quote texts that contain commas)")
        text, label = (row.get("text") or "").strip(), (row.get(label_column) or "").strip()
        if not text and not label:
            continue  # blank line
        if not text:
            raise ComponentError(f"{path}:{line}: empty text")
        if not label:
            raise ComponentError(f"{path}:{line}: empty {label_column}")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ComponentError(f"{path}: no training rows")
    if len(set(labels)) < 2:
        raise ComponentError(f"{path}: need at least two labels, got {sorted(set(labels))}")
    return Dataset(tuple(texts), tuple(labels), str(path), hashlib.sha256(raw).hexdigest())


def _features() -> FeatureUnion:
    # Words catch intent phrases ("cancel subscription"); char n-grams survive typos and inflections.
    common = {"sublinear_tf": True, "lowercase": True, "strip_accents": "unicode"}
    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", **common)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=1, **common)),
    ])


def _pipeline(kind: str, C: float, seed: int, embedder: Mapping[str, Any] | None = None) -> Pipeline:
    """One regression over one kind of features (``tfidf`` or ``embed``)."""
    # newton-cg converges in a few steps on these small sparse problems; lbfgs takes 5-20x longer.
    clf = LogisticRegression(C=C, class_weight="balanced", solver="newton-cg", max_iter=500, random_state=seed)
    if kind == "tfidf":
        return Pipeline([("features", _features()), ("clf", clf)])
    emb = dict(embedder or {})
    return Pipeline([("features", EmbeddingFeatures(emb.get("name", "minilm"), emb.get("options") or None)),
                     ("clf", clf)])


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")


def _logits(decision: np.ndarray) -> np.ndarray:
    # Binary models give one column: the logit of the second class against the first.
    return np.column_stack([np.zeros_like(decision), decision]) if decision.ndim == 1 else decision


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the log loss of softmax(logits / T): rescales confidence, keeps the argmax."""
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        p = _softmax(logits / np.exp(log_t))
        return float(-np.log(np.clip(p[rows, y], 1e-12, None)).mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))


class TextModel:
    """A fitted pipeline plus its temperature and provenance. Build with ``fit`` or ``load``."""

    def __init__(self, pipeline: Pipeline, temperature: float, meta: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.temperature = temperature
        self.meta = meta
        self.labels: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        # Out-of-fold logits and calibrated probabilities (rows: training texts, columns: labels) from
        # ``fit``; not saved. Let callers tune thresholds (and blend models) on training data without a
        # second cross-validation.
        self.oof_logits: np.ndarray | None = None
        self.oof_proba: np.ndarray | None = None

    @property
    def version(self) -> str:
        """Short content id: same data and parameters, same id."""
        return str(self.meta["model_id"])

    @classmethod
    def fit(cls, data: Dataset, *, model: str = "tfidf", C: float | None = None,
            folds: int = DEFAULT_PARAMS["folds"], seed: int = DEFAULT_PARAMS["seed"],
            embedder: str = "minilm", embed_options: Mapping[str, Any] | None = None) -> TextModel:
        """``C=None`` takes each part's default (:data:`DEFAULT_C`); embedder settings matter for embed/hybrid."""
        _check_kind(model)
        emb = None
        if model != "tfidf":
            options = dict(embed_options or {})
            emb = {"name": embedder, "options": options, "config": embedder_config(embedder, options)}
            # The embedding of a text is the same in every fold: embed the training texts once, here,
            # with BLAS free to use both cores, instead of once per fold.
            prime(data.texts, embedder, options)
        # BLAS threads only add contention on matrices this small (measured: 8x slower on 2 busy cores).
        with threadpool_limits(limits=1):
            if model != "hybrid":
                return cls._fit(data, kind=model, C=DEFAULT_C[model] if C is None else float(C), folds=folds,
                                seed=seed, embedder=emb)
            parts = [cls._fit(data, kind=p, C=DEFAULT_C[p] if C is None else float(C), folds=folds, seed=seed,
                              embedder=emb) for p in ("tfidf", "embed")]
            return cls.blend(data, *parts)

    @classmethod
    def blend(cls, data: Dataset, tfidf: TextModel, embed: TextModel) -> TextModel:
        """The hybrid of a tfidf and an embed model both fitted on ``data``: what ``fit(model="hybrid")``
        returns, exposed so a benchmark that fits both anyway need not fit them twice.

        The embedding expert's weight is learned on the two models' out-of-fold logits, then one
        temperature is fitted on the blended logits.
        """
        if (tfidf.meta.get("model_kind"), embed.meta.get("model_kind")) != ("tfidf", "embed"):
            raise ConfigError("blend needs a tfidf model and an embed model, in that order")
        if {tfidf.meta["data_sha256"], embed.meta["data_sha256"]} != {data.sha256} or tfidf.labels != embed.labels:
            raise ConfigError("blend needs two models fitted on the same data")
        started = time.perf_counter()
        _, y = np.unique(np.asarray(data.labels), return_inverse=True)
        weights = [1.0, 1.0]
        oof = None
        if tfidf.oof_logits is not None and embed.oof_logits is not None:
            weights[1] = blend_weight(tfidf.oof_logits, embed.oof_logits, y, _fit_temperature)
            oof = tfidf.oof_logits + weights[1] * embed.oof_logits
        pipeline = LogitBlend([("tfidf", tfidf.pipeline), ("embed", embed.pipeline)], weights)
        tp, ep = tfidf.meta["params"], embed.meta["params"]
        params = {"C": {"tfidf": tp["C"], "embed": ep["C"]}, "folds": tp["folds"], "seed": tp["seed"],
                  "model": "hybrid", "embedder": ep["embedder"], "weights": {"tfidf": 1.0, "embed": weights[1]}}
        seconds = tfidf.meta["train_seconds"] + embed.meta["train_seconds"] + time.perf_counter() - started
        return cls._finish(data, "hybrid", pipeline, oof, params, seconds)

    @classmethod
    def _fit(cls, data: Dataset, *, kind: str, C: float, folds: int, seed: int,
             embedder: dict[str, Any] | None) -> TextModel:
        started = time.perf_counter()
        X = list(data.texts)
        classes, y = np.unique(np.asarray(data.labels), return_inverse=True)
        k = min(folds, int(np.bincount(y).min()))
        oof = None
        if k >= 2:
            cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            oof = _logits(cross_val_predict(_pipeline(kind, C, seed, embedder), X, y, cv=cv, method="decision_function"))
        pipeline = _pipeline(kind, C, seed, embedder).fit(X, classes[y])
        params: dict[str, Any] = {"C": C, "folds": folds, "seed": seed}
        if kind != "tfidf":  # tfidf artifacts keep the ids they had before other kinds existed
            params.update(model=kind, embedder=embedder)
        return cls._finish(data, kind, pipeline, oof, params, time.perf_counter() - started)

    @classmethod
    def _finish(cls, data: Dataset, kind: str, pipeline: Any, oof: np.ndarray | None, params: dict[str, Any],
                seconds: float) -> TextModel:
        """Temperature and cross-validated metrics from the out-of-fold logits (when any), and the meta."""
        classes, y = np.unique(np.asarray(data.labels), return_inverse=True)
        temperature = 1.0
        proba = None
        if oof is not None:
            pred = oof.argmax(axis=1)
            temperature = _fit_temperature(oof, y)
            proba = _softmax(oof / temperature)
            metrics: dict[str, Any] = {
                "cv_folds": min(params["folds"], int(np.bincount(y).min())),
                "cv_accuracy": round(float(accuracy_score(y, pred)), 4),
                "cv_macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
                "cv_log_loss": round(float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean()), 4),
            }
        else:
            metrics = {"cv_folds": 0, "note": "a label has fewer than 2 rows: no cross-validation, no calibration"}
        meta = {
            "format": ARTIFACT_FORMAT,
            "model_id": hashlib.sha256(f"{data.sha256}:{sorted(params.items())}".encode()).hexdigest()[:12],
            "labels": [str(c) for c in classes],
            "label_counts": data.counts(),
            "rows": len(data.texts),
            "source": data.source,
            "data_sha256": data.sha256,
            "sklearn_version": sklearn.__version__,
            "params": params,
            "model_kind": kind,
            "temperature": round(temperature, 6),
            "metrics": metrics,
            "train_seconds": round(seconds, 4),
            "created_ms": int(time.time() * 1000),
        }
        if params.get("embedder"):
            meta["embedder"] = {k: params["embedder"][k] for k in ("name", "options", "config")}
        model = cls(pipeline, temperature, meta)
        model.oof_logits, model.oof_proba = oof, proba
        return model

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        proba = _softmax(_logits(self.pipeline.decision_function(list(texts))) / self.temperature)
        out = []
        for row in proba:
            best = int(row.argmax())
            scores = {label: round(float(p), 4) for label, p in zip(self.labels, row)}
            out.append(Prediction(self.labels[best], round(float(row[best]), 4), scores))
        return out

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def save(self, directory: str | Path) -> Path:
        """Write ``model.joblib`` and ``meta.json`` (with the model file's sha256) into ``directory``."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            joblib.dump({"pipeline": self.pipeline, "temperature": self.temperature}, directory / MODEL_FILE)
            meta = dict(self.meta, model_sha256=hashlib.sha256((directory / MODEL_FILE).read_bytes()).hexdigest())
            (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise ComponentError(f"{directory}: cannot save model: {exc}") from exc
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, allow_sklearn_mismatch: bool = False) -> TextModel:
        """Read an artifact written by ``save``; refuse a corrupt one or one pickled by another sklearn."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            blob = (directory / MODEL_FILE).read_bytes()
        except (OSError, ValueError) as exc:
            raise ComponentError(f"{directory}: not a model artifact: {exc}") from exc
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ComponentError(f"{directory}: artifact format {meta.get('format')!r}, expected {ARTIFACT_FORMAT}")
        if meta.get("model_sha256") != hashlib.sha256(blob).hexdigest():
            raise ComponentError(f"{directory}: {MODEL_FILE} does not match the sha256 in {META_FILE}")
        if meta.get("sklearn_version") != sklearn.__version__ and not allow_sklearn_mismatch:
            raise ComponentError(
                f"{directory}: saved with scikit-learn {meta.get('sklearn_version')}, running "
                f"{sklearn.__version__}; retrain it (pickles are not portable across versions)"
            )
        try:
            obj = joblib.load(directory / MODEL_FILE)
            model = cls(obj["pipeline"], float(obj["temperature"]), meta)
        except Exception as exc:  # unpickling can fail in many ways; all mean "unusable artifact"
            raise ComponentError(f"{directory}: cannot load {MODEL_FILE}: {exc}") from exc
        if meta.get("embedder"):
            check_embedder(meta["embedder"], str(directory))
        if list(model.labels) != list(meta.get("labels", [])):
            raise ComponentError(f"{directory}: model labels {model.labels} differ from meta {meta.get('labels')}")
        return model


_CACHE: dict[tuple[str, str, str], TextModel] = {}
_LOCK = threading.Lock()


def train_cached(path: str | Path, label_column: str | None = None, **params: Any) -> TextModel:
    """Fit once per (file, content, parameters) in this process: two components share one model."""
    data = load_dataset(path, label_column)
    merged = dict(DEFAULT_PARAMS, **params)
    key = (str(Path(path).resolve()), data.sha256, json.dumps(merged, sort_keys=True))
    with _LOCK:  # held while fitting so concurrent builders wait instead of fitting twice
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = TextModel.fit(data, **merged)
        return model


def obtain(config: Mapping[str, Any], default_csv: Path, label_column: str | None = None, *,
           kind: str = "tfidf") -> TextModel:
    """What a component's factory calls: ``model_dir`` if configured, else ``train_csv`` or the default.

    ``kind`` is the component's (``embed-logreg`` -> ``embed``): an artifact of another kind is refused,
    so the name in the registry always says what runs.
    """
    if config.get("model_dir"):
        model = TextModel.load(config["model_dir"])
        found = model.meta.get("model_kind", "tfidf")
        if found != kind:
            raise ComponentError(f"{config['model_dir']}: a {found} model; register it as {COMPONENT_NAMES[found]}, "
                                 f"not {COMPONENT_NAMES[kind]}")
        return model
    params = {k: config[k] for k in ("C", "folds", "seed", "embedder") if k in config}
    return train_cached(config.get("train_csv") or default_csv, label_column, model=kind, **params)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
