"""A Redis cache in front of any embedder: the same texts are embedded once per model, fleet-wide.

A MiniLM or OpenAI embedding costs milliseconds to hundreds of milliseconds; a Redis MGET for a whole
batch costs well under one. Workers, shadow candidates and index rebuilds embed the same KB chunks and
the same recurring questions over and over, so they share one cache.

Keys are ``<ns>:emb:<fingerprint>:<sha256(text)>``: the fingerprint hashes the wrapped embedder's
config and code version, so another model, dimension or stop list never reads these vectors. Values
are the raw little-endian float32 bytes of the row the wrapped embedder produced, stored with a TTL.

The cache is an optimisation and never a dependency: when Redis is down or slow, embedding goes on
without it (one warning per outage, every failure and bypassed text counted), and Redis is not
retried for ``retry_after_s`` so a dead server costs one timeout per outage, not one per request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Sequence

import numpy as np

from kb_index.embedder import Embedder
from shadowline.errors import ConfigError

__all__ = ["CachedEmbedder", "cached", "fingerprint"]

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 30 * 24 * 3600  # a KB chunk is re-embedded at most monthly; frequent texts stay warm


def fingerprint(embedder: Embedder) -> str:
    """16 hex digits naming what the embedder computes: its config and its code version."""
    config = getattr(embedder, "config", None) or {"name": embedder.name, "dim": embedder.dim}
    ident = json.dumps({"config": config, "version": getattr(embedder, "version", None)}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


class CachedEmbedder:
    """Wraps an embedder; same ``name``, ``dim`` and ``config``, so indexes cannot tell them apart.

    ``counts`` holds hits, misses (texts embedded and stored), errors (failed Redis calls) and
    bypassed (texts embedded without the cache because Redis was down); texts are counted once per
    call however often a batch repeats them.
    """

    def __init__(self, inner: Embedder, redis: Any, *, ttl_s: int = DEFAULT_TTL_S, namespace: str = "sl",
                 timeout_s: float = 0.5, retry_after_s: float = 30.0) -> None:
        import redis as redis_lib

        if ttl_s < 1:
            raise ConfigError(f"embedding cache ttl_s must be >= 1, got {ttl_s}")
        if isinstance(redis, str):
            try:
                redis = redis_lib.Redis.from_url(redis, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            except ValueError as exc:
                raise ConfigError(f"embedding cache: bad Redis URL: {exc}") from exc
        self.inner = inner
        self.client = redis
        self.name, self.dim = inner.name, inner.dim
        self.ttl_s, self.retry_after_s = int(ttl_s), float(retry_after_s)
        self.prefix = f"{namespace}:emb:{fingerprint(inner)}:"
        self.counts = {"hits": 0, "misses": 0, "errors": 0, "bypassed": 0}
        self._redis_error = redis_lib.RedisError
        self._lock = threading.Lock()
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, prefix={self.prefix!r})"

    @property
    def config(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "config", None) or {"name": self.name, "dim": self.dim})

    def key(self, text: str) -> str:
        return self.prefix + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))  # a batch may repeat a text: look it up and embed it once
        keys = [self.key(t) for t in unique]
        found = self._read(keys)
        if found is None:
            self._count(bypassed=len(unique))
            return self.inner.embed(texts)
        vectors: dict[str, np.ndarray] = {}
        missing = []
        for text, raw in zip(unique, found):
            row = self._decode(raw)
            if row is None:
                missing.append(text)
            else:
                vectors[text] = row
        if missing:
            fresh = np.asarray(self.inner.embed(missing), dtype=np.float32)
            vectors.update(zip(missing, fresh))
            self._write([(self.key(t), fresh[i]) for i, t in enumerate(missing)])
        self._count(hits=len(unique) - len(missing), misses=len(missing))
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    # -- Redis, failing soft ------------------------------------------------------------------
    def _read(self, keys: list[str]) -> list[bytes | None] | None:
        """The cached values (None per miss), or None for all when Redis is unavailable."""
        if time.monotonic() < self._down_until:
            return None
        try:
            values = self.client.mget(keys)
        except self._redis_error as exc:
            self._failed("read", exc)
            return None
        self._recovered()
        return values

    def _write(self, items: list[tuple[str, np.ndarray]]) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)  # one round trip, no MULTI needed for SETs
            for key, row in items:
                pipe.set(key, row.astype("<f4").tobytes(), ex=self.ttl_s)
            pipe.execute()
        except self._redis_error as exc:
            self._failed("write", exc)

    def _decode(self, raw: bytes | None) -> np.ndarray | None:
        if raw is None or len(raw) != 4 * self.dim:
            return None  # a truncated or foreign value is a miss, and the write below replaces it
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    def _failed(self, op: str, exc: Exception) -> None:
        with self._lock:
            self.counts["errors"] += 1
            first = self._down_until == 0.0
            self._down_until = time.monotonic() + self.retry_after_s
        if first:
            log.warning("embedding cache: Redis %s failed (%s: %s); embedding without the cache, retrying in %.0f s",
                        op, type(exc).__name__, exc, self.retry_after_s)

    def _recovered(self) -> None:
        if self._down_until:
            with self._lock:
                self._down_until = 0.0
            log.warning("embedding cache: Redis answers again; cache back in use")

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, n in deltas.items():
                self.counts[name] += n


def cached(embedder: Embedder, redis_url: str | None, **options: Any) -> Embedder:
    """``embedder`` behind a Redis cache when a URL is given, else ``embedder`` itself.

    The hook for worker wiring: ``cached(get_embedder(...), settings.redis_url if enabled else None)``.
    """
    if not redis_url or isinstance(embedder, CachedEmbedder):
        return embedder
    return CachedEmbedder(embedder, redis_url, **options)
