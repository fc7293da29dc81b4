"""The embedding cache on a real Redis: hits, misses, TTL, equality with the uncached embedder, speed-up,
and embedding that goes on (counted, logged once) while Redis is down and picks the cache up again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import redis

from kb_index.articles import load_articles
from kb_index.embedder import Embedder, HashingEmbedder, get_embedder
from kb_index.embedding_cache import DEFAULT_TTL_S, CachedEmbedder, cached
from kb_index.index import KbIndex
from shadowline.config import REPO_ROOT
from shadowline.errors import ConfigError
from shadowline.localinfra import RedisNode, free_port

pytestmark = pytest.mark.integration

TEXTS = ["How long does a refund take?", "my card was declined", "Is there free wifi at the hotel?",
         "How long does a refund take?", "reset my password"]


class Recording:
    """A real embedder that records what it was asked to embed (the cache must ask only for misses)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.config = inner.config
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


@pytest.fixture
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    redis_client.flushdb()
    return redis_client


def test_misses_are_embedded_once_stored_with_ttl_then_hit(redis_url: str, clean_redis: redis.Redis) -> None:
    plain = HashingEmbedder()
    inner = Recording(HashingEmbedder())
    cache = CachedEmbedder(inner, redis_url)
    first = cache.embed(TEXTS)
    assert first.tobytes() == plain.embed(TEXTS).tobytes()  # the wrapped embedder's exact rows
    assert inner.calls == [list(dict.fromkeys(TEXTS))]  # the repeated text embedded once
    assert cache.stats() == {"hits": 0, "misses": 4, "errors": 0, "bypassed": 0}
    keys = clean_redis.keys(cache.prefix + "*")
    assert len(keys) == 4 and all(0 < clean_redis.ttl(k) <= DEFAULT_TTL_S for k in keys)
    assert clean_redis.get(cache.key(TEXTS[0])) == plain.embed([TEXTS[0]]).astype("<f4").tobytes()

    again = cache.embed(TEXTS + ["a new question"])
    assert again[:5].tobytes() == first.tobytes()
    assert inner.calls[-1] == ["a new question"]  # only the miss went to the model
    assert cache.stats() == {"hits": 4, "misses": 5, "errors": 0, "bypassed": 0}  # per distinct text
    assert cache.embed([]).shape == (0, 1024)


def test_same_identity_as_the_wrapped_embedder_and_an_equal_index(redis_url: str, clean_redis: redis.Redis,
                                                                  tmp_path: Path) -> None:
    articles = load_articles(REPO_ROOT / "samples" / "kb")
    plain = KbIndex.build(articles, HashingEmbedder())
    cache = cached(HashingEmbedder(), redis_url)
    assert isinstance(cache, CachedEmbedder) and cached(cache, redis_url) is cache
    assert (cache.name, cache.dim, cache.config) == ("hashing-v1", 1024, HashingEmbedder().config)
    cold = KbIndex.build(articles, cache)
    warm = KbIndex.build(articles, cache)  # every chunk now a hit
    assert cache.stats()["hits"] == cache.stats()["misses"] == len(plain.chunks)
    for built in (cold, warm):
        assert built.meta["embedder"] == plain.meta["embedder"] and built.chunks == plain.chunks
        assert built._index.reconstruct_n(0, len(built.chunks)).tobytes() == \
            plain._index.reconstruct_n(0, len(plain.chunks)).tobytes()
    warm.save(tmp_path)
    loaded = KbIndex.load(tmp_path, embedder=HashingEmbedder())  # built through the cache, served without
    assert loaded.search("how long does a refund take", 4) == plain.search("how long does a refund take", 4)
    assert get_embedder("hashing", cache_url=redis_url).config == plain.embedder.config


def test_other_embedder_configs_never_share_entries(redis_url: str, clean_redis: redis.Redis) -> None:
    small = CachedEmbedder(HashingEmbedder(dim=256), redis_url)
    large = CachedEmbedder(HashingEmbedder(dim=1024), redis_url)
    assert small.prefix != large.prefix
    small.embed(TEXTS)
    assert large.embed(TEXTS).shape == (5, 1024) and large.stats()["hits"] == 0


def test_a_damaged_value_is_a_miss_and_is_replaced(redis_url: str, clean_redis: redis.Redis) -> None:
    cache = CachedEmbedder(HashingEmbedder(), redis_url)
    clean_redis.set(cache.key(TEXTS[1]), b"\x00\x01truncated")
    row = cache.embed([TEXTS[1]])
    assert row.tobytes() == HashingEmbedder().embed([TEXTS[1]]).tobytes() and cache.stats()["misses"] == 1
    assert len(clean_redis.get(cache.key(TEXTS[1]))) == 4 * 1024


def test_redis_down_means_no_cache_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real redis-server, stopped and started again under the cache."""
    node = RedisNode(tmp_path, free_port(), tmp_path / "data")
    node.start()
    try:
        cache = CachedEmbedder(HashingEmbedder(), node.url, retry_after_s=2.0)
        cache.embed(TEXTS[:2])
        node.stop()
        caplog.set_level(logging.WARNING, logger="kb_index.embedding_cache")
        expected = HashingEmbedder().embed(TEXTS)
        assert cache.embed(TEXTS).tobytes() == expected.tobytes()  # served, uncached
        assert cache.embed(TEXTS).tobytes() == expected.tobytes()  # within retry_after_s: Redis not even tried
        counts = cache.stats()
        assert counts["errors"] == 1 and counts["bypassed"] == 8 and counts["hits"] == 0
        assert len([r for r in caplog.records if "Redis read failed" in r.message]) == 1
        node.start()
        time.sleep(2.1)
        cache.embed(TEXTS)  # Redis tried again: it answers, misses stored (the restarted server is empty)
        assert cache.embed(TEXTS[:1]).shape == (1, 1024) and cache.stats()["hits"] >= 1
        assert any("answers again" in r.message for r in caplog.records)
    finally:
        node.stop()
    with pytest.raises(ConfigError, match="bad Redis URL"):
        CachedEmbedder(HashingEmbedder(), "http://not-redis")


def test_cache_hits_are_much_faster_than_minilm(redis_url: str, clean_redis: redis.Redis) -> None:
    try:
        minilm = get_embedder("minilm")
    except ConfigError as exc:
        pytest.skip(f"MiniLM weights not installed: {exc}")
    texts = [f"question {i}: how long does a refund to my card take when the order was cancelled?" for i in range(32)]
    cache = CachedEmbedder(minilm, redis_url)
    t0 = time.perf_counter()
    cold = cache.embed(texts)
    t1 = time.perf_counter()
    warm = cache.embed(texts)
    t2 = time.perf_counter()
    assert warm.tobytes() == cold.tobytes()
    np.testing.assert_allclose(cold, minilm.embed(texts), atol=1e-5)
    speedup = (t1 - t0) / (t2 - t1)
    print(f"minilm 32 texts: cold {1e3 * (t1 - t0):.1f} ms, warm {1e3 * (t2 - t1):.2f} ms, {speedup:.0f}x")
    assert speedup > 10
