"""Worker metrics without a broker: series names and labels, lag bookkeeping, the comparator's ratios."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from shadow.stats_store import MemoryStats, MeteredStats
from streams.metrics import Metrics, PrometheusMetrics
from streams.worker import partition_lag


def samples(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(metrics.exposition()) for s in fam.samples}


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_stage_events_latency_and_deadletters_follow_prometheus_names():
    m = PrometheusMetrics()
    m.observed("classify", "tfidf-logreg", "2", "ok", 0.004)
    m.observed("classify", "tfidf-logreg", "2", "error", 0.2)
    m.deadlettered("context", "malformed")
    assert value(m, "shadowline_events_total", stage="classify", component="tfidf-logreg", version="2", status="ok") == 1
    assert value(m, "shadowline_events_total", stage="classify", component="tfidf-logreg", version="2", status="error") == 1
    assert value(m, "shadowline_stage_latency_seconds_count", stage="classify", component="tfidf-logreg", version="2") == 2
    assert value(m, "shadowline_stage_latency_seconds_bucket", stage="classify", component="tfidf-logreg", version="2", le="0.005") == 1
    assert value(m, "shadowline_deadletters_total", stage="context", reason="malformed") == 1
    assert m.events[("classify", "error")] == 1  # the in-process counts still work


def test_lag_gauge_replaces_partitions_and_drops_revoked_ones():
    m = PrometheusMetrics()
    m.consumer_lag("shadowline-classify", {("turns.validate", 0): 5, ("turns.validate", 1): 0})
    assert value(m, "shadowline_consumer_lag", app="shadowline-classify", topic="turns.validate", partition="0") == 5
    m.consumer_lag("shadowline-classify", {("turns.validate", 1): 2})
    assert value(m, "shadowline_consumer_lag", app="shadowline-classify", topic="turns.validate", partition="0") is None
    assert value(m, "shadowline_consumer_lag", app="shadowline-classify", topic="turns.validate", partition="1") == 2


def test_worker_messages_per_agent_and_output_topic():
    m = PrometheusMetrics()
    m.handled("mirror-classify", ["shadow.classify.in"])
    m.handled("mirror-classify", [])
    assert value(m, "shadowline_worker_messages_total", agent="mirror-classify") == 2
    assert value(m, "shadowline_worker_outputs_total", agent="mirror-classify", topic="shadow.classify.in") == 1


def test_partition_lag_is_highwater_minus_committed_or_position():
    class TP(NamedTuple):  # like faust's TP
        topic: str
        partition: int

    tp0, tp1 = TP("t", 0), TP("t", 1)

    class Consumer:
        _committed_offset = {tp0: 7}

        def assignment(self):
            return {tp0, tp1}

        async def highwaters(self, *tps):
            return {tp0: 10, tp1: 4}

        async def position(self, tp):
            return 1

    assert asyncio.run(partition_lag(Consumer())) == {("t", 0): 3, ("t", 1): 3}


def test_metered_stats_writes_through_and_exports_ratios_from_the_store_totals():
    store, m = MemoryStats(), PrometheusMetrics()
    for agree in (True, True, True):
        store.comparison("classify", "tfidf-logreg@1", "t@2", "matched", agree, 1.0, 2.0, False)  # before this process
    stats = MeteredStats(store, m)
    stats.comparison("classify", "tfidf-logreg@1", "t@2", "matched", False, 1.0, 2.0, False)
    stats.comparison("classify", "tfidf-logreg@1", "t@2", "missing_candidate", None, 1.0, None, False)
    stats.comparison("classify", "tfidf-logreg@1", "t@2", "matched", None, 1.0, 2.0, True)
    stats.outcome("classify", "t@2", True, None, False)
    stats.outcome("classify", "t@2", False, None, True)
    assert store.load("classify", "t@2").samples == 4  # written through
    assert value(m, "shadowline_shadow_agreement_ratio", stage="classify", candidate="t@2") == 0.75
    assert value(m, "shadowline_shadow_match_ratio", stage="classify", candidate="t@2", side="production") == 0.5
    assert value(m, "shadowline_shadow_match_ratio", stage="classify", candidate="t@2", side="candidate") is None
    assert value(m, "shadowline_shadow_comparisons_total", stage="classify", candidate="t@2", status="matched") == 1
    assert value(m, "shadowline_shadow_comparisons_total", stage="classify", candidate="t@2", status="missing_candidate") == 1
    assert value(m, "shadowline_shadow_comparisons_total", stage="classify", candidate="t@2", status="error") == 1
    assert value(m, "shadowline_shadow_verdicts_total", stage="classify", candidate="t@2", verdict="disagree") == 1


def test_plain_metrics_accept_every_hook():
    m = Metrics()
    m.handled("a", ["t"])
    m.consumer_lag("app", {("t", 0): 1})
    m.compared("s", "c@1", "matched", True)
    m.shadow_ratios("s", "c@1", 1.0, None, None)
    assert m.lag == {("app", "t", 0): 1} and m.comparisons[("s", "c@1", "matched")] == 1
