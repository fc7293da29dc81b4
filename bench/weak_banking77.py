"""Weak supervision on BANKING77: how far do 5 labelled examples per intent + labeling functions go?

    .venv/bin/python bench/weak_banking77.py [--data /work/shared/data] [--out FILE.json]
    (also run by bench/realdata.py as its ``weak_supervision`` part)

Same stratified 80/20 split of ``train.csv`` (seed 0) as the other BANKING77 numbers. From the 80%
part, 5 rows per intent are the *seeds* (385 labelled rows); the remaining 7,617 rows are treated as
unlabelled (their gold labels are used only to score). LFs: one similarity LF per intent built from
its seeds, plus the hand-written keyword/regex LFs in ``bench/banking77_lfs.yaml``. The label model
turns the votes into training labels; an embed model trained on seeds + weak labels is compared on
the 20% held-out rows with the same model trained on (a) the seeds alone, (b) gold labels for exactly
the rows the weak labels cover, and (c) all gold labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LF_FILE = ROOT / "bench" / "banking77_lfs.yaml"
SEEDS_PER_CLASS = 5


def _accuracy(model, data) -> dict:
    from agents.evaluation import evaluate

    s = evaluate(model, data)
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}


def run(train_csv: Path, seed: int, cache: Path) -> dict:
    from agents.embedmodels import prime
    from agents.evaluation import load_eval_data, stratified_split
    from agents.textmodels import Dataset, TextModel
    from agents.weak.labels import weak_label
    from agents.weak.lfs import load_lfs
    from bench.realdata import per_class_subset

    full = load_eval_data(train_csv, "csv")
    prime(full.texts, cache_dir=cache)
    train, held = stratified_split(full, 0.2, seed)
    seeds = per_class_subset(train, SEEDS_PER_CLASS, seed)
    seed_set = set(zip(seeds.texts, seeds.labels))
    rest = [(t, g) for t, g in zip(train.texts, train.labels) if (t, g) not in seed_set]
    texts, gold = tuple(t for t, _ in rest), tuple(g for _, g in rest)
    cache.mkdir(parents=True, exist_ok=True)
    seeds_csv = cache / f"banking77_seeds_{SEEDS_PER_CLASS}_seed{seed}.csv"
    with seeds_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(seeds.texts, seeds.labels))
    print(f"weak supervision: {len(seeds.texts)} seeds, {len(texts)} unlabelled rows, {len(held.texts)} held-out", flush=True)

    lfset = load_lfs(LF_FILE, seeds_csv=seeds_csv)
    t0 = time.perf_counter()
    weak = weak_label(lfset, texts, gold=gold, seed=seed)
    label_seconds = time.perf_counter() - t0
    w_texts, w_labels = weak.labelled()
    print(f"  LFs: {weak.summary}", flush=True)

    def fit(name: str, ts, ls) -> dict:
        data = Dataset(tuple(ts), tuple(ls), f"banking77[{name}]", f"{train.sha256}:{name}:{seed}")
        model = TextModel.fit(data, model="embed", folds=0, seed=seed)
        out = {"rows": len(ts), **_accuracy(model, held)}
        print(f"  embed model on {name} ({len(ts)} rows): held-out accuracy {out['accuracy']:.4f}", flush=True)
        return out

    covered = {t for t in w_texts}
    gold_same_rows = [(t, g) for t, g in rest if t in covered]
    results = {
        "seeds_only_gold": fit("seeds", seeds.texts, seeds.labels),
        "seeds_plus_weak_labels": fit("seeds+weak", seeds.texts + w_texts, seeds.labels + w_labels),
        "seeds_plus_gold_same_rows": fit("seeds+gold-same-rows", seeds.texts + tuple(t for t, _ in gold_same_rows),
                                         seeds.labels + tuple(g for _, g in gold_same_rows)),
        "all_gold": fit("all-gold", train.texts, train.labels),
    }
    hand = [r for r in weak.lf_stats if not r["lf"].startswith("sim_")]
    sim = [r for r in weak.lf_stats if r["lf"].startswith("sim_")]
    mean = lambda rows, key: round(sum(r[key] for r in rows if r[key] is not None) / max(1, sum(r[key] is not None for r in rows)), 4)  # noqa: E731
    return {
        "setup": f"{SEEDS_PER_CLASS} seeds/intent from the 80% part; rest of it unlabelled; scored on the 20% held-out",
        "lf_file": str(LF_FILE.relative_to(ROOT)),
        "similarity_threshold": next(lf.threshold for lf in lfset.lfs if lf.kind == "seeds"),
        "similarity_margin": weak.summary.get("similarity_margin"),
        "label_seconds": round(label_seconds, 2),
        "matrix": weak.summary,
        "similarity_lfs": {"count": len(sim), "mean_coverage": mean(sim, "coverage"), "mean_accuracy": mean(sim, "accuracy"),
                           "mean_estimated_accuracy": mean(sim, "estimated_accuracy")},
        "hand_written_lfs": hand,
        "classifier": results,
    }


def main() -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SHADOWLINE_DATA", "/work/shared/data")))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = args.data / "banking77" / "train.csv"
    if not path.is_file():
        print(f"skipped: no {path}")
        return 0
    result = run(path, args.seed, ROOT / ".shadowline" / "bench")
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
