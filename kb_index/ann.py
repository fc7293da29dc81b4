"""Which faiss index a KB gets, how it is built, and how close an approximate one comes to exact.

Exact ``IndexFlatIP`` below ``threshold`` chunks: it is reproducible across builds (shadow comparisons
rely on that) and costs ~0.1 ms per 1k 384-d vectors per query on one core, ~2 ms at 20k, small next
to the 5+ ms of embedding the query. Above it, HNSW (``IndexHNSWFlat``, inner product), chosen by
bench/retrieval.py (docs/retrieval.md): at 100k vectors it reached recall@10 0.988 at 0.74 ms p50
(ef_search 256) where IVF needed nprobe 128 for 0.980 at 0.92 ms; its recall is tuned at query time
without a rebuild, and it needs no k-means training that a growing KB would have to redo. IVF
builds ~4.6x faster and is ~13% smaller, and stays selectable for build-time- or memory-bound cases.
HNSW builds on several threads, so two builds of the same KB may differ slightly: workers share the
saved version, never rebuild their own.

Every approximate build is checked against exact search on the same vectors: recall@10 on held-in
queries (short, word-dropped windows of the chunks' own texts) goes into meta.json, so an index that
lost quality is visible in ``stats()`` rather than in bad answers.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from shadowline.errors import ComponentError, ConfigError

__all__ = ["IndexSpec", "build_faiss", "configure", "exact_top_k", "kind_of", "measure_recall", "perturbed_queries",
           "recall_at_k"]

KINDS = ("auto", "flat", "hnsw", "ivf")
RECALL_K = 10


@dataclass(frozen=True)
class IndexSpec:
    """``kind``: auto (flat below ``threshold`` chunks, else ``approx``), flat, hnsw or ivf.

    HNSW: ``hnsw_m`` links per node, ``ef_construction`` (build effort), ``ef_search`` (query effort).
    IVF: ``nlist`` lists (default ~4 sqrt(n), at most n/39 so every centroid trains on enough points)
    and ``nprobe`` lists scanned per query (at most nlist).
    """

    kind: str = "auto"
    threshold: int = 20_000
    approx: str = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    nlist: int | None = None
    nprobe: int = 128  # recall@10 0.98 at 100k / nlist 1264 in the benchmark; 32 gave 0.92
    recall_queries: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.approx not in ("hnsw", "ivf"):
            raise ConfigError(f"approximate index kind must be hnsw or ivf, got {self.approx!r}")
        for name in ("threshold", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index {name} must be >= 1, got {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"index nlist must be >= 1, got {self.nlist}")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> IndexSpec:
        try:
            return cls(**options)
        except TypeError as exc:
            raise ConfigError(f"bad index options: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolve(self, n: int) -> tuple[str, dict[str, int]]:
        """The kind and parameters for ``n`` vectors."""
        kind = self.kind if self.kind != "auto" else ("flat" if n < self.threshold else self.approx)
        if kind == "hnsw":
            return kind, {"m": self.hnsw_m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}
        if kind == "ivf":
            nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if nlist > n:
                raise ConfigError(f"IVF nlist {nlist} exceeds the {n} vectors to index")
            return kind, {"nlist": nlist, "nprobe": min(self.nprobe, nlist)}
        return "flat", {}


def build_faiss(vectors: np.ndarray, kind: str, params: dict[str, int]) -> Any:
    """A filled faiss index over L2-normalised float32 rows; scores are inner products (cosines)."""
    n, dim = vectors.shape
    try:
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, int(params["m"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params["ef_construction"])
        elif kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, int(params["nlist"]), faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 1234  # k-means seeded: the same vectors give the same lists
            index.train(vectors)
        else:
            raise ConfigError(f"unknown index kind {kind!r}")
        index.add(vectors)
    except RuntimeError as exc:
        raise ComponentError(f"faiss could not build the {kind} index over {n} vectors: {exc}") from exc
    configure(index, kind, params)
    return index


def configure(index: Any, kind: str, params: dict[str, int]) -> None:
    """Apply the query-time parameters (also after a load, whatever the file carried)."""
    if kind == "hnsw":
        hnsw = getattr(index, "hnsw", None) or faiss.downcast_index(index).hnsw
        hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])


def kind_of(index: Any) -> str:
    """What a loaded faiss index is, to check it against meta.json."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat" if isinstance(index, faiss.IndexFlat) else type(index).__name__


def exact_top_k(queries: np.ndarray, base: np.ndarray, k: int, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the exact top-k by inner product, best first; blocks bound memory to block x n."""
    k = min(k, len(base))
    scores_out = np.empty((len(queries), k), dtype=np.float32)
    ids_out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ base.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids_out[start : start + block] = np.take_along_axis(top, order, axis=1)
        scores_out[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
    return scores_out, ids_out


def recall_at_k(found: np.ndarray, queries: np.ndarray, base: np.ndarray, kth: np.ndarray,
                eps: float = 1e-5) -> float:
    """Mean share of the top-k slots holding a true top-k vector, ties included.

    A returned id counts when its exact score reaches the k-th best exact score (``kth``, per query):
    comparing id sets instead would charge an exact index for breaking a tie another way, or for a
    last-bit difference between faiss's and numpy's sums.
    """
    k = found.shape[1]
    if not len(found) or k < 1:
        return 1.0
    valid = found >= 0
    rows = base[np.where(valid, found, 0)]  # (nq, k, dim)
    scores = np.einsum("qkd,qd->qk", rows, queries)
    hits = valid & (scores >= kth[:, None] - eps)
    return float(hits.sum() / (len(found) * k))


def perturbed_queries(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """Query-like texts from the chunks themselves: a window of 6-14 words, a fifth of them dropped.

    Shorter and noisier than the chunk, like a customer's question about it, so the query vector is
    near its chunk without being a copy of it (a copy would make every index look perfect).
    """
    rng = random.Random(seed)
    picks = rng.sample(range(len(texts)), min(n, len(texts)))
    out = []
    for i in picks:
        words = texts[i].split()
        if words and words[0] == "#":  # the chunk's "# Title - heading" line: keep the body
            body = texts[i].split("\n\n", 1)
            words = (body[1] if len(body) > 1 else body[0]).split()
        width = rng.randint(6, 14)
        start = rng.randrange(max(1, len(words) - width + 1))
        window = words[start : start + width]
        kept = [w for w in window if rng.random() >= 0.2] or window
        out.append(" ".join(kept))
    return out


def measure_recall(index: Any, base: np.ndarray, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                   n: int, seed: int = 0) -> dict[str, Any]:
    """recall@10 of ``index`` against exact search over ``base`` for ``n`` perturbed chunk texts."""
    queries = perturbed_queries(texts, n, seed)
    if not queries:
        return {"recall_at_10": 1.0, "recall_queries": 0}
    vectors = np.ascontiguousarray(embed(queries), dtype=np.float32)
    scores, _ = exact_top_k(vectors, base, RECALL_K)
    try:
        _, found = index.search(vectors, scores.shape[1])
    except RuntimeError as exc:
        raise ComponentError(f"faiss search failed while measuring recall: {exc}") from exc
    return {"recall_at_10": round(recall_at_k(found, vectors, base, scores[:, -1]), 4), "recall_queries": len(queries)}
