"""DSTC11 Track 5 benchmark: knowledge-seeking turn detection, knowledge selection, guardrail calibration.

    .venv/bin/python -m bench.dstc11 [--embedder hashing|minilm|both] [--limit N] [--quick] [--out FILE]

On the validation half kept in /work/shared/data/dstc11-track5 (the train split is not available):

* detection: is the last user turn knowledge-seeking? 5-fold cross-validation grouped BY DIALOGUE
  (every instance is predicted by a model that saw no turn of its conversation), with the TF-IDF +
  logistic regression TextModel and with embeddings + logistic regression; pooled P/R/F1;
* selection: recall@1/@5 of the gold snippets over a KbIndex built from load_knowledge, per query
  variant (bench/dstc11_selection.py), per embedder;
* guardrail: catch rate vs false escalations of SlidingWindowGuardrail tier 1 on reference responses
  with their own vs another entity's knowledge, and the threshold sweep (bench/dstc11_guardrail.py).

MiniLM vectors are cached in .shadowline/bench/ (bench/disk_embeddings.py): the first run embeds
~17k texts (the KB, queries, guardrail sentences), later runs only look them up. ``--quick`` is a
smoke test (hashing, 240 instances, 3 folds) that writes nothing unless ``--out`` is given. Exits 0
with a message when the data is absent. Results and method: docs/dstc11.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("SHADOWLINE_DATA", "/work/shared/data")) / "dstc11-track5"
CACHE = ROOT / ".shadowline" / "bench"
EMBEDDERS = ("hashing", "minilm")


def _prf(gold: Sequence[bool], pred: Sequence[bool]) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(gold, pred, average="binary", pos_label=True, zero_division=0)
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4)}


def detection(dialogues: Sequence[Any], embedders: dict[str, Any], folds: int, seed: int,
              calibrate: bool = True) -> dict[str, Any]:
    """Out-of-fold P/R/F1 of "knowledge-seeking" from the last user turn, folds grouped by dialogue."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    from agents.textmodels import Dataset, TextModel

    texts = [d.last_user for d in dialogues]
    gold = np.asarray([d.target for d in dialogues])
    groups = np.asarray([d.dialogue_id for d in dialogues])
    splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, gold, groups))
    for train, test in splits:  # the point of grouping: no conversation on both sides
        assert not set(groups[train]) & set(groups[test])
    labels = np.where(gold, "seeking", "other")
    models: dict[str, Any] = {"tfidf-logreg": None}
    vectors = {}
    for name, emb in embedders.items():
        vectors[name] = emb.embed(texts)
        models[f"{name}-embeddings+logreg"] = name
    out: dict[str, Any] = {
        "instances": len(texts), "seeking": int(gold.sum()), "dialogues": len(set(groups)), "folds": folds,
        "split": "StratifiedGroupKFold by dialogue (instances sharing the first user turn)",
        "input": "last user turn only",
        "baseline_always_seeking": _prf(gold, np.ones_like(gold)),
        "models": {},
    }
    for model, emb_name in models.items():
        pred = np.zeros_like(gold)
        per_fold = []
        started = time.perf_counter()
        for train, test in splits:
            if emb_name is None:
                rows = tuple(texts[i] for i in train)
                sha = hashlib.sha256("\x00".join(rows).encode()).hexdigest()
                data = Dataset(rows, tuple(labels[train]), "dstc11-val-folds", sha)
                fitted = TextModel.fit(data, seed=seed, folds=5 if calibrate else 0)
                fold_pred = np.asarray([p.label == "seeking" for p in fitted.predict_many([texts[i] for i in test])])
            else:
                X = vectors[emb_name]
                clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed)
                fold_pred = clf.fit(X[train], gold[train]).predict(X[test]).astype(bool)
            pred[test] = fold_pred
            per_fold.append(_prf(gold[test], fold_pred)["f1"])
        out["models"][model] = {**_prf(gold, pred), "f1_per_fold": per_fold,
                                "f1_fold_std": round(float(np.std(per_fold)), 4),
                                "seconds": round(time.perf_counter() - started, 2)}
        print(f"  detection {model}: F1 {out['models'][model]['f1']:.4f}", flush=True)
    return out


def run_embedder(emb: Any, dialogues: Sequence[Any], knowledge: Path, seed: int) -> dict[str, Any]:
    """Selection and guardrail calibration with one (cached) embedder."""
    from bench.dstc11_guardrail import guardrail_calibration
    from bench.dstc11_selection import selection
    from kb_index.dstc11 import EntityMatcher, load_entities, load_knowledge
    from kb_index.index import KbIndex

    name = emb.inner.name
    try:
        started, before = time.perf_counter(), emb.computed
        articles = load_knowledge(knowledge)
        index = KbIndex.build(articles, emb)
        build = {"articles": len(articles), "chunks": len(index.chunks),
                 "seconds": round(time.perf_counter() - started, 2), "texts_embedded_not_cached": emb.computed - before}
        emb.save()
        print(f"[{name}] index: {build}", flush=True)
        seeking = [d for d in dialogues if d.target]
        sel = selection(seeking, index, EntityMatcher(load_entities(knowledge)))
        print(f"[{name}] selection: " + ", ".join(f"{v} r@1 {s['recall@1']:.3f} r@5 {s['recall@5']:.3f}"
                                                  for v, s in sel["variants"].items()), flush=True)
        emb.save()
        guard = guardrail_calibration(seeking, {c.article_id: c for c in index.chunks}, emb, seed)
        for variant, g in guard["variants"].items():
            d, ten = g["at_default_threshold"], g["sweep"]["budgets"]["fpr<=0.10"]
            print(f"[{name}] guardrail {variant}: at {d['threshold']} catch {d['catch_rate']:.3f} false escalations "
                  f"{d['false_escalation_rate']:.3f}; AUC {g['sweep']['auc']:.3f}; "
                  f"FPR<=10% at t={ten['threshold_all']:.3f}: catch {ten['catch_rate']:.3f}", flush=True)
    finally:
        emb.save()
    return {"embedder": emb.config, "index": build, "selection": sel, "guardrail": guard,
            "texts_embedded_not_cached": emb.computed - before}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the dstc11-track5 folder")
    ap.add_argument("--embedder", choices=(*EMBEDDERS, "both"), default="both")
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation instances")
    ap.add_argument("--quick", action="store_true", help="smoke test: hashing, 240 instances, 3 folds, no file")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (1: best on a busy 2-core box)")
    ap.add_argument("--out", type=Path, default=None, help="default docs/bench/dstc11.json (none with --quick)")
    args = ap.parse_args(argv)
    if not (args.data / "knowledge.json").is_file() or not (args.data / "val" / "labels.json").is_file():
        print(f"skipped: no DSTC11 Track 5 data under {args.data}")
        return 0
    if args.quick:
        args.embedder, args.limit, args.folds = "hashing", args.limit or 240, 3
    out = args.out or (None if args.quick else ROOT / "docs" / "bench" / "dstc11.json")
    names = EMBEDDERS if args.embedder == "both" else (args.embedder,)

    from threadpoolctl import threadpool_limits

    from bench.disk_embeddings import DiskCachedEmbedder
    from kb_index.dstc11 import load_dialogues
    from kb_index.embedder import get_embedder

    started = time.perf_counter()
    dialogues = load_dialogues(args.data / "val")[: args.limit]
    print(f"DSTC11 val: {len(dialogues)} instances, {sum(d.target for d in dialogues)} knowledge-seeking", flush=True)
    result: dict[str, Any] = {
        "data": "DSTC11 Track 5 val (development half), knowledge.json",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "blas_threads": args.threads},
        "args": {"limit": args.limit, "folds": args.folds, "seed": args.seed, "quick": args.quick},
    }
    with threadpool_limits(limits=args.threads):
        embedders = {n: DiskCachedEmbedder(get_embedder(n), CACHE if n != "hashing" else None, "dstc11") for n in names}
        result["detection"] = detection(dialogues, embedders, args.folds, args.seed, calibrate=not args.quick)
        for emb in embedders.values():
            emb.save()
        result["embedders"] = {n: run_embedder(emb, dialogues, args.data, args.seed) for n, emb in embedders.items()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"done in {result['seconds']} s", flush=True)
    if out is not None:
        previous = json.loads(out.read_text()) if args.embedder != "both" and out.is_file() else {}
        if previous.get("args") == result["args"]:  # one embedder re-run of the same setup: keep the other's parts
            result["embedders"] = {**{k: v for k, v in previous["embedders"].items() if k not in names},
                                   **result["embedders"]}
            result["detection"]["models"] = {**previous["detection"]["models"], **result["detection"]["models"]}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
