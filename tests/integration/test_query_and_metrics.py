"""`shadowline query` and worker metrics on a real broker.

Query: the example records of tests/unit/test_analytics.py are published to their topics under a
unique prefix, and the documented commands of docs/analytics.md run verbatim end to end (Kafka ->
DuckDB -> output). Metrics: a real production worker process with SHADOWLINE_METRICS_PORT set is
scraped over HTTP after events went through it.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import STAGES, Topics
from shadowline.cli import query_cmd
from shadowline.config import get_settings
from shadowline.errors import ConfigError
from shadowline.localinfra import free_port
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import end_offsets, read
from tests.integration.workers import WorkerProcess, worker_env
from tests.unit.test_analytics import (
    EXPECTED_B_EVENTS, EXPECTED_C, HOUR, comparison, docs_commands, example_records, expected_a,
)

CODEC = SingleObjectCodec()
DAY = 24 * HOUR


def _app() -> typer.Typer:
    app = typer.Typer()
    query_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command, so `query` is a subcommand as in the real CLI
    return app


@pytest.fixture(scope="module")
def published(kafka_bootstrap):
    """The example records under a fresh prefix, after two 3-day-old comparisons (Kafka timestamp too)."""
    from confluent_kafka import Producer

    topics = Topics(f"q{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_bootstrap, topics.specs(), partitions=3)
    now = int(time.time() * 1000)
    h1 = now // HOUR * HOUR - 2 * HOUR
    old_ms = now - 3 * DAY
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for eid in ("old0", "old1"):
        rec = comparison(eid, old_ms, agree=False)
        producer.produce(topics.compare("classify"), CODEC.encode("Comparison", rec), rec["conversation_id"].encode(), timestamp=old_ms)
    assert producer.flush(30) == 0
    records = example_records(h1)
    topic_of = {"suggestions": topics.suggestions, "escalations": topics.escalations, "feedback": topics.feedback,
                "judgments": topics.judgments, "promotions": topics.promotions}
    record_of = {"comparisons": "Comparison", "suggestions": "Suggestion", "escalations": "Escalation",
                 "feedback": "AgentFeedback", "judgments": "Judgment", "promotions": "Promotion"}
    with Publisher(kafka_bootstrap, CODEC, topics) as pub:
        for table, recs in records.items():
            for rec in recs:
                topic = topics.compare(rec["stage"]) if table == "comparisons" else topic_of[table]
                pub.send(topic, record_of[table], rec, rec.get("conversation_id") or rec.get("stage"))
    return topics, h1


@pytest.fixture
def query(published, kafka_bootstrap, monkeypatch):
    """Run `shadowline query ARGS` in process against the prefixed topics; returns the CliRunner result."""
    topics, _ = published
    monkeypatch.setenv("SHADOWLINE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("SHADOWLINE_TOPIC_PREFIX", topics.prefix)
    get_settings.cache_clear()
    runner, app = CliRunner(), _app()

    def run(args: list[str]):
        result = runner.invoke(app, args)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result

    yield run
    get_settings.cache_clear()


def _json(query, argv: list[str], tmp_path) -> list[dict]:
    out = tmp_path / f"{uuid.uuid4().hex}.json"
    query([*argv, "--format", "json", "--out", str(out)])
    return json.loads(out.read_text())


def test_documented_match_rate_command_runs_verbatim(query, published, tmp_path):
    _, h1 = published
    argv = docs_commands()["a"]
    shown = query(argv).stdout  # exactly as documented: a table on the terminal
    assert "tfidf-logreg@2" in shown and "extractive@2" in shown and "3 row(s)" in shown
    rows = _json(query, argv, tmp_path)
    print("\n(a)", *[json.dumps(r) for r in rows], sep="\n")
    assert rows == expected_a(h1)


def test_documented_disagreement_and_latency_queries(query, tmp_path):
    cmds = docs_commands()
    b = _json(query, cmds["b"], tmp_path)
    print("\n(b)", *[json.dumps(r) for r in b], sep="\n")
    assert [r["event_id"] for r in b] == EXPECTED_B_EVENTS  # the 3-day-old disagreements are outside --since 24h
    assert json.loads(b[0]["production_output"]) == {"topic": "refunds"} and json.loads(b[0]["candidate_output"]) == {"topic": "shipping"}
    c = _json(query, cmds["c"], tmp_path)
    print("\n(c)", *[json.dumps(r) for r in c], sep="\n")
    assert [{k: r[k] for k in EXPECTED_C[0]} for r in c] == EXPECTED_C


def test_time_range_maps_to_offsets(query, tmp_path):
    count = "SELECT count(*) AS n, count(DISTINCT stage) AS stages FROM comparisons"
    assert _json(query, ["query", count], tmp_path) == [{"n": 21, "stages": 2}]  # default --since 24h
    assert _json(query, ["query", count, "--since", "4d"], tmp_path) == [{"n": 23, "stages": 2}]
    assert _json(query, ["query", count, "--since", "4d", "--until", "2d"], tmp_path) == [{"n": 2, "stages": 1}]
    every = ("SELECT (SELECT count(*) FROM suggestions) AS s, (SELECT count(*) FROM escalations) AS e, "
             "(SELECT count(*) FROM feedback) AS f, (SELECT count(*) FROM judgments) AS j, (SELECT count(*) FROM promotions) AS p")
    assert _json(query, ["query", every], tmp_path) == [{"s": 18, "e": 1, "f": 10, "j": 1, "p": 1}]
    promo = _json(query, ["query", "SELECT to_component, forced, failed_gates FROM promotions"], tmp_path)
    assert promo == [{"to_component": "tfidf-logreg@2", "forced": True, "failed_gates": "latency"}]


def test_csv_and_parquet_files(query, tmp_path):
    sql = "SELECT event_id, e2e_ms, classify_version FROM suggestions WHERE event_id LIKE 'g%' ORDER BY event_id"
    out = tmp_path / "s.csv"
    query(["query", sql, "--out", str(out)])
    assert out.read_text().splitlines() == ["event_id,e2e_ms,classify_version", *[f"g{i},40,2" for i in range(4)]]
    pq = tmp_path / "s.parquet"
    query(["query", sql, "--out", str(pq)])
    import duckdb

    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [str(pq)]).fetchone() == (4,)


def test_missing_topics_are_empty_tables_and_sql_errors_are_config_errors(kafka_bootstrap, monkeypatch, tmp_path):
    monkeypatch.setenv("SHADOWLINE_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("SHADOWLINE_TOPIC_PREFIX", f"none{uuid.uuid4().hex[:6]}.")  # no topic exists
    get_settings.cache_clear()
    try:
        out = tmp_path / "r.json"
        _app()(args=["query", docs_commands()["a"][-1], "--out", str(out)], standalone_mode=False)
        assert json.loads(out.read_text()) == []
        with pytest.raises(ConfigError, match="Referenced column"):
            _app()(args=["query", "SELECT nope FROM comparisons"], standalone_mode=False)
    finally:
        get_settings.cache_clear()


# -- worker metrics -------------------------------------------------------------------------------
def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_production_worker_serves_stage_metrics_and_lag(kafka_bootstrap, redis_url, tmp_path):
    topics = Topics(f"m{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_bootstrap, topics.specs(), partitions=3)
    port = free_port()
    env = worker_env(kafka_bootstrap, redis_url, tmp_path, SHADOWLINE_TOPIC_PREFIX=topics.prefix, SHADOWLINE_METRICS_PORT=str(port))
    worker = WorkerProcess(["worker"], env, tmp_path / "worker.log")
    try:
        cid = f"mx-{uuid.uuid4().hex[:6]}"
        texts = ["How long does a refund to my card take?", "How do I reset my password?", "What's the weather in Paris tomorrow?"]
        start = end_offsets(kafka_bootstrap, [topics.suggestions, topics.escalations])
        with Publisher(kafka_bootstrap, CODEC, topics) as pub:
            for i, text in enumerate(texts):
                pub.publish_event(ConversationEvent(f"{cid}-t{i}", f"{cid}-{i}", "customer", text, int(time.time() * 1000), locale="en"))
        want, got = {f"{cid}-t{i}" for i in range(3)}, set()
        for _, rec in read(kafka_bootstrap, start, CODEC, topics.record_of, stop=lambda: want <= got or not worker.alive(), timeout_s=45):
            got.add(rec.get("event_id"))
        assert want <= got, worker.output()[-3000:]

        deadline = time.monotonic() + 15
        while True:  # the lag gauge is refreshed every few seconds
            metrics = scrape(port)
            lag = [s for s in metrics.get("shadowline_consumer_lag", []) if s.labels["topic"] == topics.events]
            if lag or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        events = metrics["shadowline_events_total"]
        assert {s.labels["stage"] for s in events if s.value > 0} == set(STAGES)
        assert sum(s.value for s in events if s.labels["stage"] == "context") == 3
        assert all(s.labels["version"] and s.labels["component"] for s in events)
        counts = {s.labels["stage"]: s.value for s in metrics["shadowline_stage_latency_seconds_count"]}
        assert set(counts) == set(STAGES) and counts["context"] == 3 and all(v > 0 for v in counts.values())
        assert any(s.labels["le"] == "+Inf" for s in metrics["shadowline_stage_latency_seconds_bucket"])
        assert lag, f"no shadowline_consumer_lag for {topics.events}: {metrics.get('shadowline_consumer_lag')}"
        assert {s.labels["app"] for s in lag} == {"shadowline-pipeline"} and all(s.value >= 0 for s in lag)
        assert metrics["shadowline_worker_messages_total"]
    finally:
        worker.stop()
