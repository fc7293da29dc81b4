"""Workers: each route is a thin loop around a handler ``handle(Inbound) -> list[Outbound]``.

The same wrapper runs production stages, the shadow mirror, candidates and the comparator, each in
its own process and consumer group. Infrastructure faults (Redis down) block the partition and retry
rather than skip an event; component faults are already data by the time they leave a handler.

Two runtimes run the same routes and timers, chosen by ``Settings.runtime`` (``SHADOWLINE_RUNTIME``):
``kafka`` (the default: ``streams.kafka_loop``, a batch loop on confluent-kafka) and ``faust``
(faust-streaming, asyncio, several times the CPU per message; docs/benchmarks.md). Headers of a consumed
message are forwarded on what is produced from it (trace context, producer timestamps), as Kafka Streams does.

Every app gets a ``Metrics`` object: messages per agent and, every few seconds, the consumer lag of
each assigned partition; with a metrics port it is served on /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from schemas.codec import make_codec
from shadowline.config import Settings
from streams.history import RedisStore
from streams.messages import Inbound, Outbound
from streams.metrics import Metrics, PrometheusMetrics
from streams.pipeline import PipelineConfig, build_processors
from streams.routes import RETRYABLE, Handler, Route, retry_delay

__all__ = ["RETRYABLE", "Handler", "Route", "app_id", "create_app", "make_app", "partition_lag", "run_app",
           "run_worker", "worker_metrics"]

log = logging.getLogger("shadowline.worker")
LAG_INTERVAL_S = 5.0


def worker_metrics(port: int | None) -> PrometheusMetrics:
    """The process's metrics, served on ``port`` right away (so a scraper sees the worker while it loads)."""
    metrics = PrometheusMetrics()
    if port:
        metrics.serve(port)
    return metrics


def make_app(
    app_id: str,
    settings: Settings,
    routes: list[Route],
    timers: list[tuple[float, Callable[[], Any]]] = (),
    metrics: Metrics | None = None,
) -> Any:
    """A worker app for ``settings.runtime``; start it with ``run_app``."""
    if settings.runtime == "kafka":
        from streams.kafka_loop import KafkaLoop

        return KafkaLoop(app_id, settings, routes, timers, metrics, lag_interval_s=LAG_INTERVAL_S)
    import faust

    datadir = settings.home / "faust"  # not one empty folder per app in the working directory
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        datadir=str(datadir / "{conf.name}-data"),
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
    metrics = metrics or Metrics()
    for route in routes:
        _add_agent(app, route, metrics)
    for interval, fn in timers:
        _add_timer(app, interval, fn)
    _add_lag_timer(app, metrics, LAG_INTERVAL_S)
    app.shadowline_metrics = metrics
    return app


def _add_agent(app: Any, route: Route, metrics: Metrics) -> None:
    source = app.topic(*route.topics)
    sinks: dict[str, Any] = {}

    def sink(name: str) -> Any:
        if name not in sinks:
            sinks[name] = app.topic(name)
        return sinks[name]

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            msg = Inbound(m.topic, m.partition, m.offset, event.key, event.value, int(m.timestamp * 1000))
            outs = await _handle_with_retry(route, msg)
            headers = event.headers or None
            for out in outs:
                await sink(out.topic).send(key=out.key, value=out.value, headers=headers)
            metrics.handled(route.name, [out.topic for out in outs])

    agent.__name__ = route.name.replace("-", "_")
    app.agent(source, name=route.name)(agent)


def _add_timer(app: Any, interval: float, fn: Callable[[], Any]) -> None:
    """A periodic call; if it returns Outbound messages (e.g. expired joins), they are sent."""

    async def tick() -> None:
        try:
            outs = fn()
        except RETRYABLE as exc:  # the next tick tries again
            log.warning("timer %s: %s", getattr(fn, "__name__", fn), exc)
            return
        for out in outs or ():
            if isinstance(out, Outbound):
                await app.topic(out.topic).send(key=out.key, value=out.value)

    tick.__name__ = f"timer_{getattr(fn, '__name__', 'fn')}"
    app.timer(interval)(tick)


def _add_lag_timer(app: Any, metrics: Metrics, interval: float) -> None:
    async def consumer_lag() -> None:
        try:
            lag = await partition_lag(app.consumer)
        except Exception as exc:  # best effort: before the first assignment or mid-rebalance there is nothing to measure
            log.debug("consumer lag: %s", exc)
            return
        metrics.consumer_lag(app.conf.id, lag)

    app.timer(interval)(consumer_lag)


async def partition_lag(consumer: Any) -> dict[tuple[str, int], int]:
    """Per assigned partition: high watermark minus the committed offset (the fetch position while nothing
    is committed yet). Faust keeps each partition's committed offset, the next one to read as Kafka
    stores it, in ``Consumer._committed_offset``; it has no public accessor."""
    tps = consumer.assignment()
    if not tps:
        return {}
    highs = await consumer.highwaters(*tps)
    lag: dict[tuple[str, int], int] = {}
    for tp in tps:
        high = highs.get(tp)
        done = consumer._committed_offset.get(tp)
        if done is None:
            done = await consumer.position(tp)
        if high is not None and done is not None:
            lag[(tp.topic, tp.partition)] = max(0, high - done)
    return lag


async def _handle_with_retry(route: Route, msg: Inbound) -> list[Outbound]:
    failures = 0
    while True:
        try:
            return route.handler.handle(msg)
        except RETRYABLE as exc:
            failures += 1
            delay = retry_delay(failures)
            log.warning("%s: %s; retrying in %.1fs", route.name, exc, delay)
            await asyncio.sleep(delay)


def app_id(stages: list[str]) -> str:
    return f"shadowline-{stages[0]}" if len(stages) == 1 else "shadowline-pipeline"


def create_app(stages: list[str], settings: Settings, pipeline: PipelineConfig, metrics_port: int | None = None) -> Any:
    """Production: one agent per stage, serving the registry's active version, swapped hot on promotion."""
    from shadow.hotswap import HotSwapper

    store = RedisStore(settings.redis_url, settings.history_turns, settings.history_ttl_s)
    metrics = worker_metrics(metrics_port)
    swapper = HotSwapper.for_workers(settings, pipeline)
    active = swapper.active_pipeline()
    processors = build_processors(active, stages, settings, make_codec(settings.schema_registry_url), store, swapper.resources, metrics)
    swapper.attach(processors)
    routes = [Route(f"stage-{p.stage}", (p.input_topic,), p) for p in processors.values()]
    app = make_app(app_id(stages), settings, routes, timers=[(1.0, swapper.poll)], metrics=metrics)
    app.shadowline_processors = processors  # for introspection in tests
    return app


def run_app(app: Any, loglevel: str = "warning") -> None:
    """Run an app from ``make_app`` until SIGTERM/SIGINT."""
    from streams.kafka_loop import KafkaLoop

    if isinstance(app, KafkaLoop):
        logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
        app.run()
        return
    import faust

    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG to see every record, even with no terminal:
    # every logger.debug call in faust/aiokafka then builds a LogRecord (~3 per message) that no handler
    # prints. Without the spinner the root logger stays at ``loglevel``.
    worker.spinner = None
    worker.execute_from_commandline()


def run_worker(stages: list[str], settings: Settings, pipeline: PipelineConfig, metrics_port: int | None = None, loglevel: str = "warning") -> None:
    run_app(create_app(stages, settings, pipeline, metrics_port), loglevel)
