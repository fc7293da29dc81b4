"""Counters every worker keeps: in-process for tests and the demo, Prometheus for workers.

One ``Metrics`` object per process, handed to whatever does the work (stage processors, the Faust
agent loop, the lag timer, the comparator's stats sink), so the same code runs with or without an
exporter. ``PrometheusMetrics`` keeps its series on a registry of its own: no import-time globals,
and two in one process (tests) never collide.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shadowline.errors import ConfigError

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """In-process counts; ``PrometheusMetrics`` adds exported series on top."""

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()  # (stage, status)
        self.deadletters: Counter[tuple[str, str]] = Counter()  # (stage, reason)
        self.comparisons: Counter[tuple[str, str, str]] = Counter()  # (stage, candidate, status)
        self.lag: dict[tuple[str, str, int], int] = {}  # (app, topic, partition) -> records behind

    def observed(self, stage: str, component: str, version: str, status: str, latency_s: float) -> None:
        self.events[(stage, status)] += 1

    def deadlettered(self, stage: str, reason: str) -> None:
        self.deadletters[(stage, reason)] += 1

    def handled(self, agent: str, outputs: list[str]) -> None:
        """One message consumed by a Faust agent, and the topics of what it produced."""

    def consumer_lag(self, app: str, lag: dict[tuple[str, int], int]) -> None:
        """Replace the lag of every partition assigned to ``app`` (its consumer group); revoked ones drop out."""
        self.lag = {k: v for k, v in self.lag.items() if k[0] != app} | {(app, t, p): n for (t, p), n in lag.items()}

    def compared(self, stage: str, candidate: str, status: str, agree: bool | None) -> None:
        """One comparison record; ``status`` is matched, missing_candidate, missing_production or error."""
        self.comparisons[(stage, candidate, status)] += 1

    def shadow_ratios(self, stage: str, candidate: str, agreement: float | None,
                      prod_match: float | None, cand_match: float | None) -> None:
        """Running agreement and outcome match rates of a candidate (None: no samples yet)."""


class PrometheusMetrics(Metrics):
    """Prometheus series, named with units and ``_total`` for counters (the client adds the suffix)."""

    def __init__(self, registry: Any = None) -> None:
        super().__init__()
        from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._events = PCounter("shadowline_events", "Events processed per stage, component version and status (ok, rejected, error).",
                                ["stage", "component", "version", "status"], registry=r)
        self._latency = Histogram("shadowline_stage_latency_seconds", "Component processing time per event.",
                                  ["stage", "component", "version"], registry=r, buckets=LATENCY_BUCKETS)
        self._dead = PCounter("shadowline_deadletters", "Inputs sent to the dead-letter topic.", ["stage", "reason"], registry=r)
        self._messages = PCounter("shadowline_worker_messages", "Messages consumed per Faust agent.", ["agent"], registry=r)
        self._outputs = PCounter("shadowline_worker_outputs", "Messages produced per Faust agent and topic.", ["agent", "topic"], registry=r)
        self._lag = Gauge("shadowline_consumer_lag", "Records behind: high watermark minus committed offset, per app (consumer group) and assigned partition.",
                          ["app", "topic", "partition"], registry=r)
        self._comparisons = PCounter("shadowline_shadow_comparisons", "Comparison records per stage, candidate and status.",
                                     ["stage", "candidate", "status"], registry=r)
        self._verdicts = PCounter("shadowline_shadow_verdicts", "Matched comparisons with a verdict, agree or disagree.",
                                  ["stage", "candidate", "verdict"], registry=r)
        self._agreement = Gauge("shadowline_shadow_agreement_ratio", "Share of compared events where the candidate agrees with production.",
                                ["stage", "candidate"], registry=r)
        self._match = Gauge("shadowline_shadow_match_ratio", "Share of scored events whose draft matched what the agent sent (side: production or candidate).",
                            ["stage", "candidate", "side"], registry=r)

    def observed(self, stage: str, component: str, version: str, status: str, latency_s: float) -> None:
        super().observed(stage, component, version, status, latency_s)
        self._events.labels(stage, component, version, status).inc()
        self._latency.labels(stage, component, version).observe(latency_s)

    def deadlettered(self, stage: str, reason: str) -> None:
        super().deadlettered(stage, reason)
        self._dead.labels(stage, reason).inc()

    def handled(self, agent: str, outputs: list[str]) -> None:
        self._messages.labels(agent).inc()
        for topic in outputs:
            self._outputs.labels(agent, topic).inc()

    def consumer_lag(self, app: str, lag: dict[tuple[str, int], int]) -> None:
        before = set(self.lag)
        super().consumer_lag(app, lag)
        for key in before - set(self.lag):
            self._lag.remove(key[0], key[1], str(key[2]))
        for (a, topic, partition), value in self.lag.items():
            if a == app:
                self._lag.labels(app, topic, str(partition)).set(value)

    def compared(self, stage: str, candidate: str, status: str, agree: bool | None) -> None:
        super().compared(stage, candidate, status, agree)
        self._comparisons.labels(stage, candidate, status).inc()
        if status == "matched" and agree is not None:
            self._verdicts.labels(stage, candidate, "agree" if agree else "disagree").inc()

    def shadow_ratios(self, stage: str, candidate: str, agreement: float | None,
                      prod_match: float | None, cand_match: float | None) -> None:
        if agreement is not None:
            self._agreement.labels(stage, candidate).set(agreement)
        for side, value in (("production", prod_match), ("candidate", cand_match)):
            if value is not None:
                self._match.labels(stage, candidate, side).set(value)

    def serve(self, port: int) -> None:
        """Serve /metrics on ``port`` from a daemon thread (prometheus-client's own HTTP server)."""
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr="0.0.0.0", registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from exc

    def exposition(self) -> str:
        """The text a scrape of /metrics returns, for tests and debugging."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
