"""Counters every processor keeps: in-process for tests and the demo, Prometheus for workers."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Metrics:
    """In-process counts; ``PrometheusMetrics`` adds exported series on top."""

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()  # (stage, status)
        self.deadletters: Counter[tuple[str, str]] = Counter()  # (stage, reason)

    def observed(self, stage: str, component: str, version: str, status: str, latency_s: float) -> None:
        self.events[(stage, status)] += 1

    def deadlettered(self, stage: str, reason: str) -> None:
        self.deadletters[(stage, reason)] += 1


class PrometheusMetrics(Metrics):
    """Prometheus series on a registry of its own (no import-time globals)."""

    def __init__(self, registry: Any = None) -> None:
        super().__init__()
        from prometheus_client import CollectorRegistry, Counter as PCounter, Histogram

        self.registry = registry or CollectorRegistry()
        labels = ["stage", "component", "version", "status"]
        self._events = PCounter("shadowline_events", "Events processed per stage.", labels, registry=self.registry)
        self._latency = Histogram(
            "shadowline_stage_latency_seconds", "Component processing time per event.",
            ["stage", "component", "version"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._dead = PCounter("shadowline_deadletters", "Inputs sent to the dead-letter topic.", ["stage", "reason"], registry=self.registry)

    def observed(self, stage: str, component: str, version: str, status: str, latency_s: float) -> None:
        super().observed(stage, component, version, status, latency_s)
        self._events.labels(stage, component, version, status).inc()
        self._latency.labels(stage, component, version).observe(latency_s)

    def deadlettered(self, stage: str, reason: str) -> None:
        super().deadlettered(stage, reason)
        self._dead.labels(stage, reason).inc()

    def serve(self, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr="0.0.0.0", registry=self.registry)
