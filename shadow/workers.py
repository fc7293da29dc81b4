"""Processes of the shadow path, each its own Faust app and consumer group, so none can slow production.

Each serves Prometheus metrics on ``metrics_port`` when given, like the production worker: the candidate
its stage latencies and statuses, the comparator comparisons, agreement and match rates.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from agents.base import ComponentSpec, Resources
from kb_index.embedder import get_embedder
from schemas.codec import make_codec
from schemas.topics import Topics
from shadow.agreement import TextSimilarity
from shadow.candidate import candidate_processor
from shadow.compare import Comparator
from shadow.mirror import Mirror
from shadow.registry import Registry
from shadow.stats_store import MeteredStats, RedisStats
from shadowline.config import Settings
from streams.worker import Route, make_app, worker_metrics


def cached(fn: Callable[[], Any], ttl_s: float = 2.0) -> Callable[[], Any]:
    """Read registry settings at most every ``ttl_s`` on the hot path."""
    state = {"at": -1e9, "value": None}

    def get() -> Any:
        now = time.monotonic()
        if now - state["at"] >= ttl_s:
            state["value"], state["at"] = fn(), now
        return state["value"]

    return get


def mirror_app(stage: str, settings: Settings, *, metrics_port: int | None = None) -> Any:
    metrics = worker_metrics(metrics_port)
    registry = Registry(settings.redis_url)
    mirror = Mirror(stage, make_codec(settings.schema_registry_url), Topics(settings.topic_prefix), cached(lambda: registry.mirror_rate(stage)))
    return make_app(f"shadowline-mirror-{stage}", settings, [Route(f"mirror-{stage}", (mirror.input_topic,), mirror)], metrics=metrics)


def candidate_app(spec: ComponentSpec, settings: Settings, *, replica: bool = False, timeout_s: float = 5.0,
                  metrics_port: int | None = None) -> Any:
    metrics = worker_metrics(metrics_port)
    proc = candidate_processor(spec, settings, make_codec(settings.schema_registry_url), Resources(settings), timeout_s=timeout_s, replica=replica)
    proc.metrics = metrics  # its events and latencies, labelled with the candidate's version
    label = f"{spec.name}-{spec.version}" + ("-replica" if replica else "")
    return make_app(f"shadowline-shadow-{spec.stage}-{label}", settings, [Route(f"shadow-{spec.stage}", (proc.input_topic,), proc)], metrics=metrics)


def comparator_app(stage: str, settings: Settings, *, threshold: float = 0.8, window_s: float = 30.0,
                   metrics_port: int | None = None) -> Any:
    metrics = worker_metrics(metrics_port)
    registry = Registry(settings.redis_url)

    def expected() -> tuple[float, list[str]]:
        return registry.mirror_rate(stage), [f"{c.name}@{c.version}" for c in registry.candidates(stage)]

    comparator = Comparator(
        stage, make_codec(settings.schema_registry_url), Topics(settings.topic_prefix), MeteredStats(RedisStats(settings.redis_url), metrics),
        TextSimilarity(get_embedder("hashing")), cached(expected), threshold=threshold, window_s=window_s,
    )
    route = Route(f"compare-{stage}", comparator.input_topics, comparator)
    # The timer emits missing-side records even when traffic stops.
    return make_app(f"shadowline-compare-{stage}", settings, [route], timers=[(1.0, comparator.sweep)], metrics=metrics)
