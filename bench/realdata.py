"""Reproducible numbers for the trained text models (tfidf, embed, hybrid) on BANKING77 and CLINC150.

    .venv/bin/python bench/realdata.py [--data /work/shared/data] [--out docs/bench/realdata.json]
        [--only banking77|clinc150|weak] [--models tfidf,embed,hybrid]

* BANKING77 ``train.csv``: stratified 80/20 split, seed 0; per model: held-out accuracy and macro-F1,
  training time (``TextModel.fit``: 5-fold cross-validation for calibration + the final fit; the
  hybrid reuses the tfidf and embed fits, as ``fit(model="hybrid")`` does internally), embedding
  time of the training texts, and inference latency per event (median of single ``predict`` calls
  on held-out texts whose embeddings are NOT cached: the embedding is part of the latency).
* Learning curve: 10, 50, 100 and all training rows per class, same held-out rows (these fits skip
  the cross-validation: it changes confidence, not the predicted label; so the hybrid's weight is 1).
* CLINC150 ``data_full_train_val.json``: train on ``train`` plus ``oos_train`` as an extra class
  ``oos``; OOS thresholds chosen on out-of-fold training predictions by three rules (balanced, f1,
  recall >= 90%); in-scope accuracy, OOS recall and precision on ``val`` + ``oos_val``; plus, for
  context only, the val operating point closest to 90% OOS recall (chosen on val: not a result).
* Weak supervision (``bench/weak_banking77.py``): LFs from 5 seeds per class vs gold labels.

Sentence embeddings of each data set are cached in ``.shadowline/bench/emb-*.npy`` (keyed by the
texts and the embedder config): the first run spends ~15 min of CPU embedding 31k texts, reruns
skip it. Exits 0 with a message when the data directory is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".shadowline" / "bench"
KINDS = ("tfidf", "embed", "hybrid")


def fit_all(train, kinds: tuple[str, ...], seed: int, folds: int = 5) -> dict:
    """Each requested kind fitted once; the hybrid is blended from the tfidf and embed fits."""
    from agents.textmodels import TextModel

    models = {}
    for kind in ("tfidf", "embed"):
        if kind in kinds or "hybrid" in kinds:
            models[kind] = TextModel.fit(train, model=kind, seed=seed, folds=folds)
            print(f"  {kind}: fitted in {models[kind].meta['train_seconds']:.1f} s", flush=True)
    if "hybrid" in kinds:
        models["hybrid"] = TextModel.blend(train, models["tfidf"], models["embed"])
    return {k: models[k] for k in kinds}


def embed_seconds_per_text(texts) -> float:
    """Batch embedding throughput of uncached texts (what `fit` pays once for its training texts)."""
    from agents.embedmodels import shared_embedder

    sample = list(texts)[:500]
    emb = shared_embedder("minilm", {})
    t0 = time.perf_counter()
    emb.embed(sample)
    return (time.perf_counter() - t0) / len(sample)


def latency_ms(model, texts, calls: int) -> tuple[float, float]:
    """Median and p95 of single-text predict calls; cached embeddings of these texts are dropped first."""
    import numpy as np

    from agents.embedmodels import forget

    texts = list(texts)[:calls]
    forget(texts)
    model.predict("warm-up call")
    lat = []
    for t in texts:
        s = time.perf_counter()
        model.predict(t)
        lat.append(time.perf_counter() - s)
    return round(statistics.median(lat) * 1000, 3), round(float(np.quantile(lat, 0.95)) * 1000, 3)


def per_class_subset(train, n: int, seed: int):
    import numpy as np

    from agents.textmodels import Dataset

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(train.labels):
        by_label.setdefault(label, []).append(i)
    rows = sorted(int(i) for idx in by_label.values() for i in rng.permutation(idx)[: min(n, len(idx))])
    return Dataset(tuple(train.texts[i] for i in rows), tuple(train.labels[i] for i in rows),
                   f"{train.source}[{n}/class]", f"{train.sha256}:{n}:{seed}")


def banking(data_dir: Path, seed: int, kinds: tuple[str, ...]) -> dict:
    from agents.embedmodels import prime
    from agents.evaluation import evaluate, load_eval_data, stratified_split

    full = load_eval_data(data_dir / "banking77" / "train.csv", "csv")
    if set(kinds) - {"tfidf"}:
        prime(full.texts, cache_dir=CACHE)
    train, held = stratified_split(full, 0.2, seed)
    print(f"BANKING77: {len(train.texts)} train / {len(held.texts)} held-out rows, {len(set(full.labels))} classes", flush=True)
    res: dict = {"train_rows": len(train.texts), "heldout_rows": len(held.texts), "classes": len(set(full.labels)),
                 "models": {}}
    per_text = embed_seconds_per_text(train.texts) if set(kinds) - {"tfidf"} else 0.0
    for kind, model in fit_all(train, kinds, seed).items():
        scores = evaluate(model, held)
        med, p95 = latency_ms(model, held.texts, 1000 if kind == "tfidf" else 200)
        embed_s = per_text * len(train.texts) if kind != "tfidf" else 0.0
        res["models"][kind] = {
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "ece": scores["ece"],
            "cv_accuracy": model.meta["metrics"].get("cv_accuracy"),
            "fit_seconds": round(model.meta["train_seconds"], 2),
            "embed_train_texts_seconds": round(embed_s, 1),
            "latency_ms_median": med, "latency_ms_p95": p95,
        }
        if kind == "hybrid":
            res["models"][kind]["embed_weight"] = model.meta["params"]["weights"]["embed"]
        print(f"  {kind}: accuracy {scores['accuracy']:.4f} macro-F1 {scores['macro_f1']:.4f} "
              f"latency {med:.2f} ms", flush=True)
        if set(kinds) - {"tfidf"}:
            prime(full.texts, cache_dir=CACHE)  # restore what the latency run dropped
    curve: dict[str, list] = {kind: [] for kind in kinds}
    for n in (10, 50, 100):
        sub = per_class_subset(train, n, seed)
        for kind, model in fit_all(sub, kinds, seed, folds=0).items():
            s = evaluate(model, held)
            curve[kind].append({"per_class": n, "rows": len(sub.texts), "accuracy": s["accuracy"], "macro_f1": s["macro_f1"]})
            print(f"  {kind} {n}/class ({len(sub.texts)} rows): accuracy {s['accuracy']:.4f}", flush=True)
    for kind in kinds:
        m = res["models"][kind]
        curve[kind].append({"per_class": "all", "rows": len(train.texts), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
    res["learning_curve"] = curve
    res["embed_ms_per_text_batched"] = round(per_text * 1000, 2)
    return res


def clinc(data_dir: Path, seed: int, kinds: tuple[str, ...]) -> dict:
    from agents.embedmodels import prime
    from agents.evaluation import choose_oos_threshold, evaluate, load_clinc

    path = data_dir / "clinc150" / "data_full_train_val.json"
    train, val = load_clinc(path, "train"), load_clinc(path, "val")
    if set(kinds) - {"tfidf"}:
        prime(train.texts + val.texts, cache_dir=CACHE)
    print(f"CLINC150: {len(train.texts)} train rows (incl. oos_train as class 'oos'), {len(val.texts)} val rows", flush=True)
    keys = ("in_scope_accuracy", "oos_recall", "oos_precision")
    out: dict = {"training": "train (15000 rows, 150 intents) + oos_train (100 rows) as class 'oos'",
                 "evaluation": "val (3000 in-scope) + oos_val (100 out-of-scope)", "models": {}}
    for kind, model in fit_all(train, kinds, seed).items():
        res: dict = {"fit_seconds": round(model.meta["train_seconds"], 2), "cv_accuracy": model.meta["metrics"].get("cv_accuracy")}
        preds = model.predict_many(val.texts)
        no_t = evaluate(model, val, 0.0, predictions=preds)
        res["ece_in_scope"] = no_t["ece"]
        res["oos_class_only"] = {k: no_t[k] for k in keys}
        for rule in ("balanced", "f1", "recall"):
            choice = choose_oos_threshold(model, train, rule, 0.9)
            m = evaluate(model, val, choice["threshold"], predictions=preds)
            res[f"rule_{rule}"] = {"threshold": choice["threshold"], "train_oof": choice.get("train_oof"),
                                   **{k: m[k] for k in keys}}
        sweep = [{"threshold": t / 100, **{k: evaluate(model, val, t / 100, predictions=preds)[k] for k in keys}}
                 for t in range(0, 100, 2)]
        res["val_closest_to_90_recall"] = min(sweep, key=lambda r: (abs(r["oos_recall"] - 0.9), -r["in_scope_accuracy"]))
        res["val_tradeoff_diagnostic"] = sweep[::5]
        out["models"][kind] = res
        b = res["rule_balanced"]
        print(f"  {kind}: in-scope {no_t['in_scope_accuracy']:.4f} (no threshold); balanced t={b['threshold']}: "
              f"in-scope {b['in_scope_accuracy']:.4f} OOS recall {b['oos_recall']:.4f}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SHADOWLINE_DATA", "/work/shared/data")))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "realdata.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("banking77", "clinc150", "weak"), help="run one part, keep the others from --out")
    ap.add_argument("--models", default=",".join(KINDS), help="comma-separated subset of tfidf,embed,hybrid")
    args = ap.parse_args()
    kinds = tuple(k for k in KINDS if k in args.models.split(","))
    if not kinds:
        ap.error(f"--models {args.models!r}: expected some of {', '.join(KINDS)}")
    if not (args.data / "banking77" / "train.csv").is_file() and not (args.data / "clinc150").is_dir():
        print(f"skipped: no data sets under {args.data}")
        return 0
    import sklearn

    from bench.weak_banking77 import run as weak_run

    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sklearn": sklearn.__version__,
                    "platform": platform.platform()},
        "models": {"tfidf": "TF-IDF (word 1-2 + char_wb 2-5) + logistic regression (C=10, newton-cg)",
                   "embed": "all-MiniLM-L6-v2 mean-pooled embeddings (numpy) + logistic regression (C=30)",
                   "hybrid": "sum of the tfidf and embed logits, embed weight learned on out-of-fold logits",
                   "all": "temperature-scaled on out-of-fold logits; BLAS limited to one thread while fitting"},
        "seed": args.seed,
    }
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
        result.update({k: v for k, v in previous.items() if k in ("banking77", "clinc150", "weak_supervision")})
    started = time.perf_counter()
    if (args.data / "banking77" / "train.csv").is_file() and args.only in (None, "banking77"):
        result["banking77"] = banking(args.data, args.seed, kinds)
    if (args.data / "clinc150" / "data_full_train_val.json").is_file() and args.only in (None, "clinc150"):
        result["clinc150"] = clinc(args.data, args.seed, kinds)
    if (args.data / "banking77" / "train.csv").is_file() and args.only in (None, "weak"):
        result["weak_supervision"] = weak_run(args.data / "banking77" / "train.csv", args.seed, CACHE)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
