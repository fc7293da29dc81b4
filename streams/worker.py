"""Faust workers: one agent per stage, each a thin loop around a StageProcessor.

A worker process may host one stage (production: one process and consumer group per stage) or
several (the demo). Infrastructure faults (Redis down) block the partition and retry rather than
skip an event; component faults are already data by the time they leave the processor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from schemas.codec import make_codec
from shadowline.config import Settings
from shadowline.errors import StoreError, TransportError
from streams.history import RedisStore
from streams.messages import Inbound
from streams.metrics import PrometheusMetrics
from streams.pipeline import PipelineConfig, build_processors
from streams.processor import StageProcessor

log = logging.getLogger("shadowline.worker")
RETRYABLE = (StoreError, TransportError)


def app_id(stages: list[str]) -> str:
    return f"shadowline-{stages[0]}" if len(stages) == 1 else "shadowline-pipeline"


def create_app(stages: list[str], settings: Settings, pipeline: PipelineConfig, metrics_port: int | None = None) -> Any:
    import faust

    app = faust.App(
        app_id(stages),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are created up front with their retention config
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
    )
    store = RedisStore(settings.redis_url, settings.history_turns, settings.history_ttl_s)
    metrics = PrometheusMetrics()
    if metrics_port:
        metrics.serve(metrics_port)
    processors = build_processors(pipeline, stages, settings, make_codec(settings.schema_registry_url), store, metrics=metrics)
    for proc in processors.values():
        _add_agent(app, proc)
    app.shadowline_processors = processors  # for introspection in tests and the hot-swap watcher
    return app


def _add_agent(app: Any, proc: StageProcessor) -> None:
    source = app.topic(proc.input_topic)
    sinks: dict[str, Any] = {}

    def sink(name: str) -> Any:
        if name not in sinks:
            sinks[name] = app.topic(name)
        return sinks[name]

    async def stage_agent(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            msg = Inbound(m.topic, m.partition, m.offset, event.key, event.value, int(m.timestamp * 1000))
            for out in await _handle_with_retry(proc, msg):
                await sink(out.topic).send(key=out.key, value=out.value)

    stage_agent.__name__ = f"stage_{proc.stage}"
    app.agent(source, name=f"stage-{proc.stage}")(stage_agent)


async def _handle_with_retry(proc: StageProcessor, msg: Inbound) -> list:
    delay = 0.2
    while True:
        try:
            return proc.handle(msg)
        except RETRYABLE as exc:
            log.warning("stage %s: %s; retrying in %.1fs", proc.stage, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def run_worker(stages: list[str], settings: Settings, pipeline: PipelineConfig, metrics_port: int | None = None, loglevel: str = "warning") -> None:
    import faust

    app = create_app(stages, settings, pipeline, metrics_port)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
