"""The KB vector index: build, versioned save/load with an atomic CURRENT switch, and search.

Exact search (``IndexFlatIP`` over L2-normalised rows, so scores are cosines) for a support KB of
thousands of chunks: exact results keep retrieval reproducible across builds, which shadow
comparisons rely on. Above ``IndexSpec.threshold`` chunks (20k by default) the build switches to an
approximate HNSW index (kb_index/ann.py says why HNSW) and records its measured recall@10 against
exact search in meta.json; loading restores the kind and its query parameters.

Each save is a new immutable ``root/<version>/`` directory and ``root/CURRENT`` is switched with
``os.replace``, so a worker loading mid-build sees the old index or the new one, never half of one.
faiss and file-system errors become ``ComponentError`` here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from agents.records import Hit
from kb_index.ann import IndexSpec, build_faiss, configure, kind_of, measure_recall
from kb_index.articles import Article, articles_digest, load_articles
from kb_index.chunker import Chunk, chunk_articles
from kb_index.embedder import Embedder, get_embedder
from shadowline.errors import ComponentError, ConfigError

__all__ = ["IndexSpec", "KbIndex", "compatible", "current_version", "load_or_build"]

FORMAT = 1


class KbIndex:
    """Chunks plus their vectors in a faiss index; ``version`` names what a Retrieval was served from."""

    def __init__(self, chunks: Sequence[Chunk], index: Any, embedder: Embedder, meta: dict[str, Any],
                 version: str | None = None) -> None:
        if index.ntotal != len(chunks):
            raise ComponentError(f"index holds {index.ntotal} vectors for {len(chunks)} chunks")
        if index.d != embedder.dim:
            raise ComponentError(f"index dim {index.d} != embedder {embedder.name} dim {embedder.dim}")
        self.chunks = tuple(chunks)
        self.embedder = embedder
        self.meta = meta
        self._index = index
        self._version = version

    @property
    def version(self) -> str:
        """The saved version, or ``mem-<digest>`` for an index that only lives in memory."""
        return self._version or f"mem-{self.meta['digest'][:8]}"

    # -- build -------------------------------------------------------------------------------
    @classmethod
    def build(cls, articles: Sequence[Article], embedder: Embedder, *, max_words: int = 120,
              overlap_words: int = 30, spec: IndexSpec | None = None) -> KbIndex:
        """Chunk, embed and index ``articles``; ``spec`` picks exact or approximate (default: by size)."""
        started = time.perf_counter()
        spec = spec or IndexSpec()
        if not articles:
            raise ComponentError("cannot build a KB index from zero articles")
        chunks = chunk_articles(articles, max_words, overlap_words)
        if not chunks:
            raise ComponentError("the KB articles have no text to index")
        texts = [c.text for c in chunks]
        vectors = _as_rows(embedder.embed(texts), embedder.dim)
        kind, params = spec.resolve(len(chunks))
        index = build_faiss(vectors, kind, params)
        described: dict[str, Any] = {"kind": kind, "params": params}
        if kind != "flat":
            described.update(measure_recall(index, vectors, texts, embedder.embed, spec.recall_queries, spec.seed))
        meta = {
            "format": FORMAT,
            "embedder": _embedder_config(embedder),
            "dim": embedder.dim,
            "articles": len(articles),
            "chunks": len(chunks),
            "chunking": {"max_words": max_words, "overlap_words": overlap_words},
            "index": described,
            "digest": articles_digest(articles),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_s": round(time.perf_counter() - started, 4),
        }
        return cls(chunks, index, embedder, meta)

    # -- persistence -------------------------------------------------------------------------
    def save(self, root: Path) -> str:
        """Write ``root/<version>/`` (index.faiss, chunks.jsonl, meta.json), then switch CURRENT."""
        root = Path(root)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        described = _described(self.meta)  # approximate builds hash their kind too; exact ones as before
        kind = "" if described["kind"] == "flat" else json.dumps(described, sort_keys=True)
        content = hashlib.sha256(f"{self.meta['digest']}{json.dumps(self.meta['embedder'], sort_keys=True)}"
                                 f"{json.dumps(self.meta['chunking'], sort_keys=True)}{kind}".encode()).hexdigest()
        version = f"{stamp}-{content[:8]}"
        final = root / version
        tmp = root / f".tmp-{version}-{os.getpid()}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not final.exists():  # same second, same content: already there, just point at it
                tmp.mkdir()
                faiss.write_index(self._index, str(tmp / "index.faiss"))
                with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                    for c in self.chunks:
                        f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
                meta = dict(self.meta, version=version)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not final.exists():
                        raise  # else another process saved the same content first: use theirs
            _write_atomic(root / "CURRENT", version + "\n")
        except (OSError, RuntimeError) as exc:
            raise ComponentError(f"cannot save KB index to {root}: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._version = version
        self.meta = dict(self.meta, version=version)
        return version

    @classmethod
    def load(cls, root: Path, version: str | None = None, embedder: Embedder | None = None) -> KbIndex:
        """Load ``version`` (default: CURRENT). Without an embedder, rebuild the one meta.json names."""
        root = Path(root)
        version = version or current_version(root)
        if version is None:
            raise ComponentError(f"no KB index under {root} (CURRENT missing)")
        d = root / version
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            with open(d / "chunks.jsonl", encoding="utf-8") as f:
                chunks = [Chunk.from_dict(json.loads(line)) for line in f if line.strip()]
            index = faiss.read_index(str(d / "index.faiss"))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise ComponentError(f"cannot load KB index {d}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ComponentError(f"{d}: index format {meta.get('format')!r}, this code reads {FORMAT}")
        described = _described(meta)
        if kind_of(index) != described["kind"]:
            raise ComponentError(f"{d}: meta.json says a {described['kind']} index, index.faiss holds {kind_of(index)}")
        configure(index, described["kind"], described["params"])
        if embedder is None:
            try:
                embedder = get_embedder(**meta["embedder"])
            except ConfigError as exc:
                raise ComponentError(f"{d}: {exc}") from exc
        elif not compatible(meta, embedder):
            raise ComponentError(f"{d}: built with {meta['embedder']}, not with {_embedder_config(embedder)}")
        return cls(chunks, index, embedder, meta, version)

    # -- queries -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 4) -> list[Hit]:
        """Top-k chunks by cosine similarity, best first."""
        if k < 1 or not query.strip():
            return []
        return self.search_vectors(self.embedder.embed([query]), k)[0]

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        rows = _as_rows(vectors, self.embedder.dim)
        try:
            scores, ids = self._index.search(rows, min(k, len(self.chunks)))
        except RuntimeError as exc:
            raise ComponentError(f"faiss search failed: {exc}") from exc
        out = []
        for row_scores, row_ids in zip(scores, ids):
            hits = []
            for score, i in zip(row_scores, row_ids):
                if i < 0:
                    continue
                c = self.chunks[i]
                hits.append(Hit(c.chunk_id, c.article_id, c.title, c.text, round(float(score), 6)))
            out.append(hits)
        return out

    @property
    def kind(self) -> str:
        """flat (exact), hnsw or ivf."""
        return _described(self.meta)["kind"]

    def stats(self) -> dict[str, Any]:
        topics: dict[str, int] = {}
        for _, topic in {(c.article_id, c.topic) for c in self.chunks}:
            topics[topic] = topics.get(topic, 0) + 1
        described = _described(self.meta)
        return {
            "version": self.version, "articles": self.meta["articles"], "chunks": len(self.chunks),
            "embedder": self.meta["embedder"]["name"], "dim": self.embedder.dim,
            "built_at": self.meta["built_at"], "build_s": self.meta["build_s"],
            "index": described["kind"], "index_params": described["params"],
            # exact search is its own reference: recall 1.0 by construction, not measured
            "recall_at_10": described.get("recall_at_10", 1.0 if described["kind"] == "flat" else None),
            "topics": dict(sorted(topics.items())),
        }


def current_version(root: Path) -> str | None:
    """The version CURRENT points at, or None when nothing was ever saved under ``root``."""
    try:
        text = (Path(root) / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ComponentError(f"cannot read {Path(root) / 'CURRENT'}: {exc}") from exc
    return text or None


def compatible(meta: dict[str, Any], embedder: Embedder) -> bool:
    return meta.get("embedder") == _embedder_config(embedder)


def load_or_build(settings: Any, embedder: Embedder | None = None, spec: IndexSpec | None = None) -> KbIndex:
    """The index under ``settings.home/'kb'`` if it matches the KB on disk, else a fresh build, saved.

    Rebuilds when the articles in ``settings.kb_dir`` changed, the embedder differs or ``spec`` asks
    for another index kind, so an edited demo KB never serves a stale index.
    """
    embedder = embedder or get_embedder("hashing")
    root = Path(settings.home) / "kb"
    if not Path(settings.kb_dir).exists() and current_version(root):
        return KbIndex.load(root, embedder=embedder)  # deployed without sources: serve what was saved
    articles = load_articles(settings.kb_dir)
    if current_version(root):
        try:
            index = KbIndex.load(root, embedder=embedder)
        except ComponentError:
            index = None  # incompatible or damaged: rebuild below
        if index is not None and index.meta.get("digest") == articles_digest(articles) and _as_wanted(index, spec):
            return index
    index = KbIndex.build(articles, embedder, spec=spec)
    index.save(root)
    return index


def _as_wanted(index: KbIndex, spec: IndexSpec | None) -> bool:
    """Whether the saved index is the kind (and parameters) ``spec`` asks for at its size."""
    described = _described(index.meta)
    return (spec or IndexSpec()).resolve(len(index.chunks)) == (described["kind"], described["params"])


def _described(meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json's index kind and parameters; indexes saved before there was a choice are exact."""
    return meta.get("index") or {"kind": "flat", "params": {}}


def _embedder_config(embedder: Embedder) -> dict[str, Any]:
    return dict(getattr(embedder, "config", None) or {"name": embedder.name, "dim": embedder.dim})


def _as_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ComponentError(f"expected vectors of shape (n, {dim}), got {rows.shape}")
    return rows


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
