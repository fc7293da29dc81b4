"""Retrieval benchmark: exact faiss vs HNSW vs IVF on real sentence embeddings, and embedder throughput.

    .venv/bin/python bench/retrieval.py [--data /work/shared/data] [--out docs/bench/retrieval.json]
    .venv/bin/python bench/retrieval.py --quick --out /tmp/retrieval.json   # smoke test, seconds

* Corpus: real texts from /work/shared/data: DSTC11 Track 5 knowledge (FAQ question + answer, review
  sentences), ABCD guideline texts and kb.json flows, BANKING77 training queries, embedded with MiniLM
  (``--embedder``) and cached as .npy under ``--cache-dir`` so re-runs skip the embedding.
* Sizes: the first size is real vectors only; larger sizes add gaussian perturbations of real vectors,
  re-normalised, with the noise scaled so a copy is as far from its source as a real text is from its
  nearest real neighbour (median), since embedding 100k texts on 2 cores takes too long.
* Queries: held-out real texts (DSTC11 validation user turns, CLINC150 validation queries), embedded
  the same way; ground truth is exact ``IndexFlatIP`` search.
* Per index: build time, index bytes (serialised size, which is what faiss holds in memory for these
  kinds), single-query p50/p99 latency, batch throughput (all queries in one call) and recall@10.
* Embedders: texts/s one text per call and batched, for hashing and MiniLM, without and with the Redis
  cache (cold = every text a miss and stored; warm = every text a hit). Redis: ``--redis-url`` or a
  redis-server started on a free port for the run; skipped with a note when neither is available.

Exits 0 with a message when the data directory is absent.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from kb_index.ann import IndexSpec, build_faiss, configure, exact_top_k, recall_at_k  # noqa: E402
from kb_index.embedder import Embedder, get_embedder  # noqa: E402
from kb_index.embedding_cache import CachedEmbedder, fingerprint  # noqa: E402

K = 10
FULL = {"corpus": 12_000, "queries": 1_000, "sizes": [10_000, 100_000], "ef_search": [16, 64, 128, 256],
        "nprobe": [8, 32, 128], "throughput_texts": 100, "embedders": ["hashing", "minilm"],
        "min_s": 0.5}
QUICK = {"corpus": 400, "queries": 40, "sizes": [300, 1_200], "ef_search": [16, 64], "nprobe": [1, 4],
         "throughput_texts": 20, "embedders": ["hashing"], "min_s": 0.1}
HNSW_BUILD = {"m": IndexSpec.hnsw_m, "ef_construction": IndexSpec.ef_construction}  # what KbIndex builds


# -- data ---------------------------------------------------------------------------------------

def real_texts(data: Path) -> tuple[list[str], list[str], list[str], dict[str, int]]:
    """(KB texts, filler texts, held-out query texts, count per source), deduplicated, in file order.

    The KB texts (DSTC11 knowledge, ABCD) come first; BANKING77 queries fill the corpus up to its size.
    """
    know = json.loads((data / "dstc11-track5" / "knowledge.json").read_text(encoding="utf-8"))
    faqs, reviews = [], []
    for entities in know.values():
        for entity in entities.values():
            faqs += [f"{f['question']} {f['answer']}" for f in entity.get("faqs", {}).values()]
            for review in entity.get("reviews", {}).values():
                reviews += list(review.get("sentences", {}).values())
    abcd = [f"{flow.replace('_', ' ')}: {', '.join(a.replace('-', ' ') for a in actions)}"
            for flow, actions in json.loads((data / "abcd" / "kb.json").read_text(encoding="utf-8")).items()]
    abcd += list(_guideline_texts(json.loads((data / "abcd" / "guidelines.json").read_text(encoding="utf-8"))))
    with open(data / "banking77" / "train.csv", encoding="utf-8", newline="") as f:
        banking = [row["text"] for row in csv.DictReader(f)]
    logs = json.loads((data / "dstc11-track5" / "val" / "logs.json").read_text(encoding="utf-8"))
    turns = [log[-1]["text"] for log in logs if log and log[-1]["speaker"] == "U"]
    clinc = [t for t, _ in json.loads((data / "clinc150" / "data_full_train_val.json").read_text(encoding="utf-8"))["val"]]
    sources = {"dstc11_faq": faqs, "dstc11_review_sentences": reviews, "abcd": abcd, "banking77_train": banking,
               "dstc11_val_user_turns": turns, "clinc150_val": clinc}
    kb = _unique(faqs + reviews + abcd)
    in_kb = set(kb)
    filler = [t for t in _unique(banking) if t not in in_kb]
    seen = in_kb | set(filler)
    queries = [t for t in _unique(turns + clinc) if t not in seen]
    return kb, filler, queries, {name: len(texts) for name, texts in sources.items()}


def _guideline_texts(node: Any) -> Iterator[str]:
    """Every free-text string in ABCD's guidelines (action texts, subtexts, instructions)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _guideline_texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _guideline_texts(value)
    elif isinstance(node, str) and len(node.split()) >= 4:
        yield " ".join(node.split())


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return rng.sample(texts, min(n, len(texts)))


def embed_cached(embedder: Embedder, texts: list[str], cache_dir: Path, part: int = 1024) -> np.ndarray:
    """Vectors for ``texts``, from ``cache_dir`` when this embedder already embedded exactly these texts.

    Saved in parts as it goes, so an interrupted run resumes where it stopped.
    """
    key = hashlib.sha256((fingerprint(embedder) + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:16]
    final = cache_dir / f"retrieval-{embedder.name}-{key}.npy"
    if final.exists():
        return np.load(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    started = time.perf_counter()
    for i, start in enumerate(range(0, len(texts), part)):
        path = cache_dir / f".retrieval-{embedder.name}-{key}.part{i}.npy"
        if path.exists():
            parts.append(np.load(path))
            continue
        parts.append(np.asarray(embedder.embed(texts[start : start + part]), dtype=np.float32))
        np.save(path, parts[-1])
        done = start + len(parts[-1])
        print(f"  embedded {done}/{len(texts)} with {embedder.name} ({time.perf_counter() - started:.0f} s)", flush=True)
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    np.save(final, vectors)
    for path in cache_dir.glob(f".retrieval-{embedder.name}-{key}.part*.npy"):
        path.unlink()
    return vectors


def grow(real: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """``n`` rows: the real ones, then perturbed copies of random real rows, re-normalised.

    The noise per dimension is sigma = sqrt(1/c^2 - 1) / sqrt(dim), which puts a copy at cosine ~c
    from its source, with c the median cosine of a real vector to its nearest real neighbour: the
    synthetic points are no tighter around the real ones than real texts are around each other.
    """
    rng = np.random.default_rng(seed)
    probe = real[rng.choice(len(real), min(500, len(real)), replace=False)]
    sims = probe @ real.T
    sims[sims > 0.99999] = -1.0  # the probe itself (and exact duplicates)
    c = float(np.median(sims.max(axis=1)))
    sigma = float(np.sqrt(max(1.0 / c**2 - 1.0, 1e-6)) / np.sqrt(real.shape[1]))
    info = {"real_rows": min(n, len(real)), "synthetic_rows": max(0, n - len(real)),
            "median_nn_cosine": round(c, 4), "sigma": round(sigma, 5)}
    if n <= len(real):
        return real[:n].copy(), info
    src = real[rng.integers(0, len(real), n - len(real))]
    noisy = src + rng.normal(0.0, sigma, src.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    out = np.concatenate([real, noisy.astype(np.float32)])
    info["copy_cosine_mean"] = round(float(np.mean(np.sum(src * noisy, axis=1))), 4)
    return out, info


# -- indexes ------------------------------------------------------------------------------------

def latencies(index: Any, queries: np.ndarray) -> tuple[float, float]:
    """p50 and p99 in ms of one-query searches."""
    for q in queries[:20]:
        index.search(q[None, :], K)  # warm caches
    lat = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], K)
        lat.append(time.perf_counter() - t)
    return round(float(np.percentile(lat, 50)) * 1e3, 4), round(float(np.percentile(lat, 99)) * 1e3, 4)


def timed_search(index: Any, queries: np.ndarray, threads: int) -> dict[str, Any]:
    """Single-query latency and batch throughput with one OpenMP thread and with ``threads``.

    One thread is the serving case: a worker searches one query at a time, and faiss's OpenMP
    threads spin-wait for cores on a busy 2-core box (the all-threads columns show what that costs,
    on the first 200 queries). Returns the all-threads batch result ids too.
    """
    out: dict[str, Any] = {}
    faiss.omp_set_num_threads(1)
    out["p50_ms"], out["p99_ms"] = latencies(index, queries)
    t = time.perf_counter()
    index.search(queries, K)
    out["batch_qps_1thread"] = round(len(queries) / (time.perf_counter() - t), 1)
    faiss.omp_set_num_threads(threads)
    out["p50_ms_all_threads"], out["p99_ms_all_threads"] = latencies(index, queries[:200])
    t = time.perf_counter()
    _, out["ids"] = index.search(queries, K)
    out["batch_qps"] = round(len(queries) / (time.perf_counter() - t), 1)
    return out


def bench_size(base: np.ndarray, queries: np.ndarray, plan: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    n = len(base)
    cases: list[tuple[str, dict[str, int], list[dict[str, int]]]] = [
        ("flat", {}, [{}]),
        ("hnsw", dict(HNSW_BUILD, ef_search=plan["ef_search"][0]), [{"ef_search": e} for e in plan["ef_search"]]),
        ("ivf", {"nlist": max(1, min(int(4 * np.sqrt(n)), n // 39)), "nprobe": 1}, [{"nprobe": p} for p in plan["nprobe"]]),
    ]
    kth = exact_top_k(queries, base, K)[0][:, -1]  # numpy's exact answer, independent of faiss
    threads = faiss.omp_get_max_threads()
    for kind, params, settings in cases:
        t = time.perf_counter()
        index = build_faiss(base, kind, params)
        build_s = time.perf_counter() - t
        size = int(faiss.serialize_index(index).nbytes)
        for setting in settings:
            configure(index, kind, dict(params, **setting))
            res = timed_search(index, queries, threads)
            ids = res.pop("ids")
            row = {"n": n, "kind": kind, "params": dict(params, **setting), "build_s": round(build_s, 3),
                   "index_mb": round(size / 2**20, 2), "bytes_per_vector": round(size / n, 1), **res,
                   "recall_at_10": round(recall_at_k(ids, queries, base, kth), 4)}
            rows.append(row)
            print(f"  n={n:>7} {kind:5} {json.dumps(row['params']):45} build {build_s:6.2f} s  {row['index_mb']:7.1f} MB  "
                  f"p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms  {row['batch_qps']:9.0f} q/s  "
                  f"(all threads: p50 {row['p50_ms_all_threads']:7.3f} ms)  "
                  f"recall@10 {row['recall_at_10']:.4f}", flush=True)
    return rows


# -- embedders ----------------------------------------------------------------------------------

def texts_per_s(embedder: Embedder, texts: list[str], batched: bool, min_s: float = 0.5) -> float:
    """Passes over ``texts`` until ``min_s`` has elapsed (``min_s=0``: exactly one, e.g. a cold cache)."""
    t = time.perf_counter()
    done = 0
    while not done or time.perf_counter() - t < min_s:
        if batched:
            embedder.embed(texts)
        else:
            for text in texts:
                embedder.embed([text])
        done += len(texts)
    return round(done / (time.perf_counter() - t), 1)


def bench_embedders(names: list[str], texts: list[str], redis_url: str | None, min_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    client = None
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
    for name in names:
        t = time.perf_counter()
        embedder = get_embedder(name)
        load_s = time.perf_counter() - t
        embedder.embed(texts[:4])  # warm-up (first BLAS calls, tokenizer)
        res: dict[str, Any] = {"load_s": round(load_s, 3), "dim": embedder.dim,
                               "single_texts_per_s": texts_per_s(embedder, texts, False, min_s),
                               "batched_texts_per_s": texts_per_s(embedder, texts, True, min_s)}
        res.update(one_blas_thread(embedder, texts, min_s))
        if client is not None:
            for mode, batched in (("single", False), ("batched", True)):
                client.flushdb()
                cache = CachedEmbedder(embedder, client)
                res[f"cache_cold_{mode}_texts_per_s"] = texts_per_s(cache, texts, batched, min_s=0.0)
                res[f"cache_warm_{mode}_texts_per_s"] = texts_per_s(cache, texts, batched, min_s)
                res[f"cache_{mode}_counts"] = cache.stats()
        out[name] = res
        print(f"  {name}: {json.dumps(res)}", flush=True)
    if client is not None:
        client.flushdb()
    return out


def one_blas_thread(embedder: Embedder, texts: list[str], min_s: float) -> dict[str, float]:
    """The same with BLAS held to one thread: on a busy 2-core box, OpenBLAS's spinning threads can
    cost more than they parallelise (threadpoolctl comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return {}
    with threadpool_limits(limits=1, user_api="blas"):
        return {"blas1_single_texts_per_s": texts_per_s(embedder, texts, False, min_s),
                "blas1_batched_texts_per_s": texts_per_s(embedder, texts, True, min_s)}


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return max((i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"), default=None)


def local_redis() -> tuple[Any, str] | None:
    """A throwaway redis-server on a free port, or None when redis-server is not installed."""
    from shadowline.errors import InfraError
    from shadowline.localinfra import RedisNode, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    node = RedisNode(tmp, free_port(), tmp / "data")
    try:
        node.start()
    except InfraError as exc:
        print(f"  no Redis for the cache measurements: {exc}", flush=True)
        return None
    return node, node.url


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "retrieval.json")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / ".shadowline" / "bench")
    ap.add_argument("--embedder", default=None, help="embedder for the index vectors (minilm; quick: hashing)")
    ap.add_argument("--redis-url", default=None, help="Redis for the cache measurements (default: start one)")
    ap.add_argument("--no-redis", action="store_true", help="skip the cache measurements")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, hashing embedder: a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.data / "dstc11-track5" / "knowledge.json").exists():
        print(f"no data under {args.data}: nothing to benchmark")
        return 0
    plan = dict(QUICK if args.quick else FULL)
    embedder_name = args.embedder or ("hashing" if args.quick else "minilm")
    load_before = os.getloadavg()

    kb, filler, queries, counts = real_texts(args.data)
    corpus = sample(kb + sample(filler, max(0, plan["corpus"] - len(kb)), args.seed), plan["corpus"], args.seed)
    queries = sample(queries, plan["queries"], args.seed + 1)
    embedder = get_embedder(embedder_name)
    print(f"embedding {len(corpus)} corpus and {len(queries)} query texts with {embedder_name}", flush=True)
    t = time.perf_counter()
    real = embed_cached(embedder, corpus, args.cache_dir)
    qvec = embed_cached(embedder, queries, args.cache_dir)
    embed_s = time.perf_counter() - t

    indexes, synth = [], {}
    for n in plan["sizes"]:
        base, info = grow(real, n, args.seed)
        synth[str(n)] = info
        indexes += bench_size(base, qvec, plan)

    node = None
    redis_url = None if args.no_redis else args.redis_url
    if not args.no_redis and not redis_url:
        started = local_redis()
        node, redis_url = started if started else (None, None)
    try:
        print("embedder throughput", flush=True)
        embedders = bench_embedders(plan["embedders"], sample(queries, plan["throughput_texts"], args.seed + 2), redis_url,
                                    plan["min_s"])
    finally:
        if node is not None:
            node.stop()
            shutil.rmtree(node.data_dir.parent, ignore_errors=True)

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "faiss": faiss.__version__,
                    "faiss_omp_threads": faiss.omp_get_max_threads(), "numpy": np.__version__,
                    "blas_threads": _blas_threads(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "quick": args.quick, "embedder": getattr(embedder, "config", {"name": embedder.name}),
        "data": {"source_counts": counts, "corpus_texts": len(corpus), "query_texts": len(queries),
                 "embed_s_this_run": round(embed_s, 2), "growth": synth},
        "k": K, "hnsw_build": HNSW_BUILD, "indexes": indexes, "embedders": embedders,
        "redis": bool(redis_url),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
