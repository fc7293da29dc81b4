"""The KB as a living index: a saved base version plus an in-memory delta of article changes.

Rebuilding the whole index for every edited article would make a KB fix wait for the next build. Instead
the changes on ``kb.articles`` are applied on top of the base a worker loaded: an upserted article is
chunked and embedded into a small exact delta, and its old chunks in the base (if any) are hidden, as are
a deleted article's. Searches over-fetch from the base by the number of hidden chunks, so hiding never
costs a result, then merge with the delta by score.

A newly saved version (``CURRENT`` switched by ``shadowline kb build``) is swapped in hot. An operator's
build is a decision taken at ``built_at``: changes older than that are taken to be in it (or overruled
by it), newer ones are re-applied on top; an index a worker built of ``kb_dir`` by itself gets every
change on top. Every change seen is kept (the latest per article), so pointing ``CURRENT`` back at an
older version re-applies what that version lacks.

Searches never lock: every state is an immutable snapshot and writers (the follower, the ``CURRENT``
watcher) build a new one under a lock and publish it with one reference assignment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from agents.records import Hit
from kb_index.articles import Article
from kb_index.chunker import Chunk, chunk_article
from kb_index.embedder import Embedder
from kb_index.index import KbIndex, compatible, current_version, load_or_build
from shadowline.errors import ComponentError

__all__ = ["ArticleChange", "LiveKbIndex", "base_index"]

log = logging.getLogger("shadowline.kb.live")

OPS = ("upsert", "delete")
_NO_VECTORS = np.zeros((0, 0), np.float32)


@dataclass(frozen=True, slots=True)
class ArticleChange:
    """One ``KbArticle`` record of ``kb.articles``: an upsert carries the article, a delete only its id."""

    article_id: str
    op: str
    updated_ms: int
    article: Article | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ComponentError(f"article {self.article_id!r}: op must be upsert or delete, got {self.op!r}")
        if self.op == "upsert" and (self.article is None or self.article.article_id != self.article_id):
            raise ComponentError(f"article {self.article_id!r}: an upsert needs the article itself")

    @classmethod
    def upsert(cls, article: Article, updated_ms: int) -> ArticleChange:
        return cls(article.article_id, "upsert", updated_ms, article)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ArticleChange:
        """From a decoded KbArticle; an upsert missing its title or body raises ComponentError."""
        article_id, op, updated_ms = str(r["article_id"]), r["op"], int(r["updated_ms"])
        if op != "upsert":
            return cls(article_id, op, updated_ms)
        where = f"kb.articles record {article_id!r}"
        return cls(article_id, op, updated_ms, Article.from_mapping({**r, "updated": ""}, where))

    def to_record(self) -> dict[str, Any]:
        a = self.article
        return {"article_id": self.article_id, "op": self.op, "updated_ms": self.updated_ms,
                "title": a.title if a else None, "topic": a.topic if a else None, "body": a.body if a else None}


@dataclass(frozen=True)
class _Entry:
    """A change as applied: an upsert's chunks and their vectors, and which embedder made them."""

    change: ArticleChange
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    embedder_key: str


@dataclass(frozen=True)
class _Snapshot:
    base: KbIndex
    base_ms: int
    base_chunks: Mapping[str, int]  # article_id -> chunks in the base
    log: Mapping[str, _Entry]  # latest change per article, also those older than the base
    position: int  # how far the change log was read
    hidden: frozenset[str]  # base articles a live change replaced or deleted
    over_fetch: int  # base chunks of hidden articles
    chunks: tuple[Chunk, ...]  # the delta
    vectors: np.ndarray
    live: int  # changes newer than the base

    @property
    def version(self) -> str:
        return f"{self.base.version}+d{self.position}" if self.live else self.base.version


class LiveKbIndex:
    """Serves ``search``/``version`` like a KbIndex; ``apply`` and ``swap_base``/``refresh`` change it.

    ``version`` is the base version, plus ``+d<N>`` while changes from the log (read up to position N)
    are live, so a Retrieval record names exactly what served it.
    """

    def __init__(self, base: KbIndex, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else None  # where CURRENT lives; None: no hot swaps
        self._write = threading.Lock()
        self._failed: set[str] = set()  # versions that would not load: reported once, not every poll
        self._watch_stop: threading.Event | None = None
        self._snap = _derive(base, {}, 0)

    # -- reading (no locks: one snapshot per call) --------------------------------------------
    @property
    def version(self) -> str:
        return self._snap.version

    @property
    def base(self) -> KbIndex:
        return self._snap.base

    @property
    def embedder(self) -> Embedder:
        return self._snap.base.embedder

    @property
    def meta(self) -> dict[str, Any]:
        return self._snap.base.meta

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk a search can return now: the base's not hidden, then the delta's."""
        s = self._snap
        return tuple(c for c in s.base.chunks if c.article_id not in s.hidden) + s.chunks

    def search(self, query: str, k: int = 4) -> list[Hit]:
        """Top-k chunks by cosine similarity over base and delta, best first."""
        if k < 1 or not query.strip():
            return []
        snap = self._snap
        return _search(snap, snap.base.embedder.embed([query]), k)[0]

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        return _search(self._snap, vectors, k)

    def stats(self) -> dict[str, Any]:
        s = self._snap
        out = s.base.stats()
        out.update(version=s.version, base_version=s.base.version, position=s.position, live_changes=s.live,
                   hidden_articles=len(s.hidden), delta_chunks=len(s.chunks),
                   articles=out["articles"] - len(s.hidden) + len({c.article_id for c in s.chunks}),
                   chunks=out["chunks"] - s.over_fetch + len(s.chunks))
        return out

    # -- writing ------------------------------------------------------------------------------
    def apply(self, change: ArticleChange, position: int | None = None) -> bool:
        """Apply one change; ``position`` is how far the log has been read (default: one more record).

        Returns whether the change is live (not older than an operator's build of the base); an older
        one is only kept, in case ``CURRENT`` goes back to a version without it.
        """
        with self._write:
            snap = self._snap
            live = change.updated_ms >= snap.base_ms
            # Not live: kept unembedded (a replay after a rebuild is mostly such); embedded if it ever is.
            entry = _entry(change, snap.base) if live else _Entry(change, (), _NO_VECTORS, "")
            log_ = {**snap.log, change.article_id: entry}
            self._snap = _derive(snap.base, log_, snap.position + 1 if position is None else position, snap.base_chunks)
            return live

    def swap_base(self, base: KbIndex) -> None:
        """Serve ``base`` from now on, with the changes newer than its build applied on top."""
        with self._write:
            snap = self._snap
            self._snap = _derive(base, snap.log, snap.position)
        log.warning("KB index now %s (was %s)", self._snap.version, snap.version)

    def refresh(self) -> bool:
        """Swap to the version ``CURRENT`` names if it changed; a version that fails to load is skipped."""
        if self.root is None:
            return False
        version = current_version(self.root)
        if version is None or version == self._snap.base.version or version in self._failed:
            return False
        try:
            base = _load_like(self.root, version, self._snap.base.embedder)
        except ComponentError as exc:
            self._failed.add(version)
            log.error("KB index %s not loaded, still serving %s: %s", version, self.version, exc)
            return False
        self.swap_base(base)
        return True

    def watch(self, interval_s: float = 2.0) -> None:
        """Check ``CURRENT`` every ``interval_s`` in a daemon thread, until ``close``."""
        if self._watch_stop is not None or self.root is None:
            return
        stop = self._watch_stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # last line of defence: the watcher must outlive any one bad version
                    log.exception("KB index refresh failed; still serving %s", self.version)

        threading.Thread(target=loop, name="kb-current-watch", daemon=True).start()

    def close(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()


def base_index(settings: Any, embedder: Embedder) -> KbIndex:
    """The base a worker serves: a version saved by ``shadowline kb build`` as it is (the operator's build
    wins: its own embedder if it differs from the worker's); otherwise the index kept in step with
    ``settings.kb_dir`` (``load_or_build``)."""
    root = Path(settings.home) / "kb"
    version = current_version(root)
    if version is not None:
        meta = _read_meta(root, version)
        if meta is not None and meta.get("source"):
            return _load_like(root, version, embedder, meta)
    return load_or_build(settings, embedder)


# -- snapshots --------------------------------------------------------------------------------
def _embedder_key(embedder: Embedder) -> str:
    return json.dumps(getattr(embedder, "config", None) or {"name": embedder.name, "dim": embedder.dim}, sort_keys=True)


def _entry(change: ArticleChange, base: KbIndex) -> _Entry:
    """Chunk and embed an upsert the way ``base`` was built (same chunking, same embedder)."""
    embedder, key = base.embedder, _embedder_key(base.embedder)
    if change.article is None:
        return _Entry(change, (), np.zeros((0, embedder.dim), np.float32), key)
    chunking = base.meta.get("chunking") or {}
    chunks = tuple(chunk_article(change.article, int(chunking.get("max_words", 120)),
                                 int(chunking.get("overlap_words", 30))))
    vectors = np.ascontiguousarray(embedder.embed([c.text for c in chunks]), dtype=np.float32)
    return _Entry(change, chunks, vectors.reshape(len(chunks), embedder.dim), key)


def _derive(base: KbIndex, log_: Mapping[str, _Entry], position: int,
            base_chunks: Mapping[str, int] | None = None) -> _Snapshot:
    base_ms = _as_of_ms(base.meta)
    if base_chunks is None:  # once per base, not per change: a big base has millions of chunks
        base_chunks = Counter(c.article_id for c in base.chunks)
    key = _embedder_key(base.embedder)
    live: dict[str, _Entry] = {}
    for article_id, entry in log_.items():
        if entry.change.updated_ms >= base_ms:
            # Embedded for another base's embedder: embed again (the article travels with the change).
            live[article_id] = entry if entry.embedder_key == key else _entry(entry.change, base)
    log_ = {**log_, **live}
    hidden = frozenset(a for a in live if a in base_chunks)
    chunks = tuple(c for e in live.values() for c in e.chunks)
    rows = [e.vectors for e in live.values() if len(e.chunks)]
    vectors = np.vstack(rows) if rows else np.zeros((0, base.embedder.dim), np.float32)
    return _Snapshot(base, base_ms, base_chunks, log_, position, hidden, sum(base_chunks[a] for a in hidden),
                     chunks, vectors, len(live))


def _search(snap: _Snapshot, vectors: np.ndarray, k: int) -> list[list[Hit]]:
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    if k < 1:
        return [[] for _ in range(len(rows))]
    base_rows = snap.base.search_vectors(rows, k + snap.over_fetch)
    delta_scores = rows @ snap.vectors.T if len(snap.chunks) else None
    out = []
    for i, base_hits in enumerate(base_rows):
        hits = [h for h in base_hits if h.article_id not in snap.hidden]
        if delta_scores is not None:
            row = delta_scores[i]
            for j in np.argsort(-row, kind="stable")[:k]:
                c = snap.chunks[j]
                hits.append(Hit(c.chunk_id, c.article_id, c.title, c.text, round(float(row[j]), 6)))
        hits.sort(key=lambda h: -h.score)  # stable: a base hit stays ahead of a delta hit it ties with
        out.append(hits[:k])
    return out


def _as_of_ms(meta: Mapping[str, Any]) -> int:
    """Changes before this time are taken to be in the base: the build time of a version an operator built
    (``kb build`` records its ``source``). An index a worker made of ``kb_dir`` by itself, on an empty or
    stale home, says nothing about kb.articles: 0, so every change applies on top of it."""
    if not meta.get("source"):
        return 0
    try:
        return int(datetime.fromisoformat(str(meta["built_at"])).timestamp() * 1000)
    except (KeyError, ValueError):
        return 0


def _read_meta(root: Path, version: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / version / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # KbIndex.load reports what is wrong with the version


def _load_like(root: Path, version: str, embedder: Embedder, meta: dict[str, Any] | None = None) -> KbIndex:
    """Load ``version`` reusing ``embedder`` when the version was built with it, else the version's own."""
    meta = meta if meta is not None else _read_meta(root, version)
    same = meta is not None and compatible(meta, embedder)
    return KbIndex.load(root, version, embedder=embedder if same else None)
