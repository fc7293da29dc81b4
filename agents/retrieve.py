"""Retrieve stage: find the KB chunks that can answer the turn's question.

The embedder and the index come from ``Resources`` so every component in a worker (retriever,
extractive answer, guardrail) shares one copy. A turn whose best chunk is below ``min_score`` is
rejected rather than passed on with weak hits: an answer built on the wrong article is worse than an
escalation to a human.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from agents.base import ComponentSpec, Resources, register
from agents.records import Hit, Outcome, Retrieval, Turn, ok, reject
from kb_index.chunker import Chunk
from kb_index.embedder import Embedder, get_embedder
from kb_index.live import base_index
from shadowline.errors import ConfigError

__all__ = ["FaissRetriever", "KbSearch", "shared_embedder", "shared_index", "typed_options"]

# Demo KB, 32 real questions: best chunk >= 0.15 for all but one (0.13, no shared vocabulary). Off-topic
# text scores 0.0-0.36 (one shared word suffices), so this is a floor, not an out-of-scope detector:
# that is the validate stage's job.
DEFAULT_MIN_SCORE = 0.15


def shared_embedder(resources: Resources, config: dict[str, Any] | None = None) -> Embedder:
    """The worker's one embedder, from the first component config that asks: ``embedder`` (hashing |
    minilm | openai), ``embedder_dim`` (only when set: each embedder has its own default) and
    ``embedding_cache`` (true: vectors cached in the worker's Redis, worth it for minilm and openai,
    not for hashing, which computes faster than a Redis round trip)."""
    config = config or {}

    def make() -> Embedder:
        kw: dict[str, Any] = {}
        if "embedder_dim" in config:
            kw["dim"] = int(config["embedder_dim"])
        if _bool(config.get("embedding_cache", False)):
            kw["cache_url"] = resources.settings.redis_url
        return get_embedder(str(config.get("embedder", "hashing")), **kw)

    return resources.get("embedder", make)


class KbSearch(Protocol):
    """What a retriever needs of an index: a saved KbIndex, or a LiveKbIndex (one plus live changes)."""

    @property
    def version(self) -> str: ...

    @property
    def chunks(self) -> tuple[Chunk, ...]: ...

    def search(self, query: str, k: int = 4) -> list[Hit]: ...


def shared_index(resources: Resources, embedder: Embedder) -> KbSearch:
    """The worker's one KB index: the saved CURRENT one, or built from ``settings.kb_dir``.

    With ``settings.kb_follow`` (workers on Kafka) it is live: it follows kb.articles and swaps to a new
    CURRENT hot (kb_index/live.py). In-memory pipelines turn that off, so they never need a broker.
    """
    if getattr(resources.settings, "kb_follow", False):
        return resources.get("kb_index", lambda: _follower(resources, embedder).live)
    return resources.get("kb_index", lambda: base_index(resources.settings, embedder))


def _follower(resources: Resources, embedder: Embedder) -> Any:
    from kb_index.follower import start_live_index  # the Kafka adapter, only where live updates are on

    return resources.get("kb_follower", lambda: start_live_index(resources.settings, embedder))


class FaissRetriever:
    """Top-k cosine search over the KB index; rejects when even the best chunk is below ``min_score``.

    ``topic_prefix`` puts the classified topic in front of the query, which helps when the summary
    never names the product area ("it still hasn't arrived").
    """

    stage: ClassVar[str] = "retrieve"

    def __init__(self, index: KbSearch, name: str = "faiss", version: str = "1", *, k: int = 4,
                 min_score: float = DEFAULT_MIN_SCORE, topic_prefix: bool = False) -> None:
        if k < 1:
            raise ConfigError(f"retriever k must be >= 1, got {k}")
        self.index = index
        self.name = name
        self.version = version
        self.k = k
        self.min_score = min_score
        self.topic_prefix = topic_prefix

    def query_for(self, turn: Turn) -> str:
        query = turn.query.strip()
        if self.topic_prefix and turn.classify is not None and turn.classify.topic:
            query = f"{turn.classify.topic}: {query}"
        return query

    def process(self, turn: Turn) -> Outcome[Retrieval]:
        query = self.query_for(turn)
        if not query:
            return reject("empty query", Retrieval(query, (), self.index.version))
        hits = self.index.search(query, self.k)
        passing = tuple(h for h in hits if h.score >= self.min_score)
        if not passing:
            best = hits[0].score if hits else 0.0
            # The rejection keeps the near misses: an escalation can show the closest articles.
            return reject(f"no KB article matches (best score {best:.2f} < {self.min_score:.2f})",
                          Retrieval(query, tuple(hits), self.index.version))
        return ok(Retrieval(query, passing, self.index.version))


@register("retrieve", "faiss")
def _build_faiss(spec: ComponentSpec, resources: Resources) -> FaissRetriever:
    """config: k (4), min_score (0.15), topic_prefix (false), embedder / embedder_dim."""
    cfg = spec.config
    index = shared_index(resources, shared_embedder(resources, cfg))
    opts = typed_options(cfg, {"k": 4, "min_score": DEFAULT_MIN_SCORE, "topic_prefix": False})
    return FaissRetriever(index, spec.name, spec.version, **opts)


def typed_options(cfg: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The config values named in ``defaults``, converted to the defaults' types."""
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        if key not in cfg:
            continue
        value = cfg[key]
        try:
            out[key] = value if default is None else (
                _bool(value) if isinstance(default, bool) else type(default)(value))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config {key!r} must be {type(default).__name__}, got {value!r}") from exc
    return out


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(value)
    return bool(value)
