"""Reproducible TF-IDF + logistic regression numbers on BANKING77 and CLINC150.

    .venv/bin/python bench/realdata.py [--data /work/shared/data] [--out docs/bench/realdata.json]

* BANKING77 ``train.csv``: stratified 80/20 split, seed 0; held-out accuracy and macro-F1, training
  time (``TextModel.fit``: 5-fold cross-validation for calibration + the final fit), and inference
  latency per event (median of 1000 single ``predict`` calls on held-out texts).
* BANKING77 learning curve: 10, 50, 100 and all training rows per class, held-out accuracy (these
  fits skip the cross-validation: it changes confidence, not the predicted label).
* CLINC150 ``data_full_train_val.json``: train on ``train`` plus ``oos_train`` as an extra class
  ``oos``; the OOS confidence threshold is chosen on out-of-fold training predictions; report
  in-scope accuracy, OOS recall and precision on ``val`` + ``oos_val``.

Exits 0 with a message when the data directory is absent.
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


def banking(data_dir: Path, seed: int = 0) -> dict:
    import numpy as np

    from agents.evaluation import evaluate, load_eval_data, stratified_split
    from agents.textmodels import Dataset, TextModel

    full = load_eval_data(data_dir / "banking77" / "train.csv", "csv")
    train, held = stratified_split(full, 0.2, seed)
    print(f"BANKING77: {len(train.texts)} train / {len(held.texts)} held-out rows, {len(set(full.labels))} classes", flush=True)
    t0 = time.perf_counter()
    model = TextModel.fit(train, seed=seed)
    train_s = time.perf_counter() - t0
    scores = evaluate(model, held)
    texts = list(held.texts)
    for t in texts[:20]:
        model.predict(t)  # warm-up
    lat = []
    for i in range(1000):
        s = time.perf_counter()
        model.predict(texts[i % len(texts)])
        lat.append(time.perf_counter() - s)
    res = {
        "train_rows": len(train.texts), "heldout_rows": len(held.texts), "classes": len(set(full.labels)),
        "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
        "cv_accuracy": model.meta["metrics"].get("cv_accuracy"),
        "train_seconds": round(train_s, 2),
        "latency_ms_median": round(statistics.median(lat) * 1000, 3),
        "latency_ms_p95": round(float(np.quantile(lat, 0.95)) * 1000, 3),
    }
    print(f"  accuracy {res['accuracy']:.4f} macro-F1 {res['macro_f1']:.4f} train {train_s:.1f} s "
          f"latency {res['latency_ms_median']:.2f} ms", flush=True)

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(train.labels):
        by_label.setdefault(label, []).append(i)
    curve = []
    for n in (10, 50, 100, None):
        if n is None:
            curve.append({"per_class": "all", "rows": len(train.texts), "accuracy": scores["accuracy"],
                          "macro_f1": scores["macro_f1"]})
            continue
        rows = sorted(int(i) for idx in by_label.values()
                      for i in rng.permutation(idx)[: min(n, len(idx))])
        sub = Dataset(tuple(train.texts[i] for i in rows), tuple(train.labels[i] for i in rows),
                      f"{train.source}[{n}/class]", f"{train.sha256}:{n}")
        m = TextModel.fit(sub, folds=0, seed=seed)
        s = evaluate(m, held)
        curve.append({"per_class": n, "rows": len(rows), "accuracy": s["accuracy"], "macro_f1": s["macro_f1"]})
        print(f"  {n}/class ({len(rows)} rows): accuracy {s['accuracy']:.4f}", flush=True)
    res["learning_curve"] = curve
    return res


def clinc(data_dir: Path, seed: int = 0) -> dict:
    from agents.evaluation import choose_oos_threshold, evaluate, load_clinc
    from agents.textmodels import TextModel

    path = data_dir / "clinc150" / "data_full_train_val.json"
    train = load_clinc(path, "train")
    val = load_clinc(path, "val")
    print(f"CLINC150: {len(train.texts)} train rows (incl. oos_train as class 'oos'), {len(val.texts)} val rows", flush=True)
    t0 = time.perf_counter()
    model = TextModel.fit(train, seed=seed)
    train_s = time.perf_counter() - t0
    choice = choose_oos_threshold(model, train)
    with_t = evaluate(model, val, choice["threshold"])
    no_t = evaluate(model, val, 0.0)
    f1_choice = choose_oos_threshold(model, train, rule="f1")
    with_f1 = evaluate(model, val, f1_choice["threshold"])
    keys = ("threshold", "in_scope_accuracy", "oos_recall", "oos_precision")
    # Diagnostic only (nothing is chosen from it): the trade-off the threshold moves along on val.
    curve = []
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        m = evaluate(model, val, t)
        curve.append({"threshold": t, **{k: m[k] for k in keys[1:]}})
    print(f"  threshold {choice['threshold']}: in-scope acc {with_t['in_scope_accuracy']:.4f} "
          f"OOS recall {with_t['oos_recall']:.4f} precision {with_t['oos_precision']:.4f} (train {train_s:.1f} s)", flush=True)
    return {
        "training": "train (15000 rows, 150 intents) + oos_train (100 rows) as class 'oos'",
        "evaluation": "val (3000 in-scope) + oos_val (100 out-of-scope)",
        "train_seconds": round(train_s, 2),
        "threshold": choice,
        "val": with_t,
        "val_oos_class_only": {k: no_t[k] for k in ("accuracy", "in_scope_accuracy", "oos_recall", "oos_precision")},
        "threshold_f1_rule": f1_choice,
        "val_f1_rule": {k: with_f1[k] for k in keys[1:]},
        "val_tradeoff_diagnostic": curve,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SHADOWLINE_DATA", "/work/shared/data")))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "realdata.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("banking77", "clinc150"), help="run one part, keep the other from --out")
    args = ap.parse_args()
    if not (args.data / "banking77" / "train.csv").is_file() and not (args.data / "clinc150").is_dir():
        print(f"skipped: no data sets under {args.data}")
        return 0
    import sklearn

    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sklearn": sklearn.__version__,
                    "platform": platform.platform()},
        "model": "TF-IDF (word 1-2 + char_wb 2-5) + logistic regression (C=10, newton-cg), temperature-scaled",
        "seed": args.seed,
    }
    if args.only and args.out.is_file():
        previous = json.loads(args.out.read_text())
        result.update({k: v for k, v in previous.items() if k in ("banking77", "clinc150") and k != args.only})
    if (args.data / "banking77" / "train.csv").is_file() and args.only in (None, "banking77"):
        result["banking77"] = banking(args.data, args.seed)
    if (args.data / "clinc150" / "data_full_train_val.json").is_file() and args.only in (None, "clinc150"):
        result["clinc150"] = clinc(args.data, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
