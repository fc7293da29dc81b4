"""shadowline query without a broker: flattening, time parsing, tables, the documented queries, output formats, errors.

The example data set and the docs' commands are shared with tests/integration/test_query_and_metrics.py,
which publishes the same records to a real broker and runs the command end to end.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path

import pytest
import typer

from agents.records import Classification, ConversationEvent, StageRun, Turn
from schemas.codec import SingleObjectCodec
from schemas.topics import STAGES
from shadowline.analytics import (
    TABLES, Analytics, comparison_row, infer_format, parse_time, promotion_row, sql_error, suggestion_row, table_names,
)
from shadowline.cli import query_cmd
from shadowline.config import REPO_ROOT
from shadowline.errors import ConfigError
from streams.routing import escalation_record, suggestion_record

CODEC = SingleObjectCodec()
HOUR = 3_600_000
MINUTE = 60_000
DOCS = REPO_ROOT / "docs" / "analytics.md"


# -- the example data set -------------------------------------------------------------------------
def _valid(name: str, record: dict) -> dict:
    """Round trip through the real codec: every record here is what a reader of the topic gets."""
    return CODEC.decode(CODEC.encode(name, record), name)


def comparison(eid: str, ms: int, *, stage: str = "classify", agree: bool | None = True, status: str = "matched",
               prod: tuple[str, str] = ("tfidf-logreg", "1"), cand: tuple[str, str] = ("tfidf-logreg", "2"),
               prod_ms: float | None = 1.0, cand_ms: float | None = 2.0, similarity: float | None = None) -> dict:
    label = stage != "generate"
    if label:
        outputs = ('{"topic": "refunds"}', '{"topic": "refunds"}' if agree else '{"topic": "shipping"}')
    else:
        outputs = (json.dumps({"text": f"draft {eid}"}), json.dumps({"text": f"draft {eid}" if agree else f"other {eid}"}))
    if status != "matched":
        outputs, cand_ms = (outputs[0], None), None
    return _valid("Comparison", {
        "comparison_id": f"cmp-{eid}-{ms}", "event_id": eid, "conversation_id": f"conv-{eid}", "stage": stage,
        "production": {"name": prod[0], "version": prod[1]}, "candidate": {"name": cand[0], "version": cand[1]},
        "status": status, "kind": "label" if label else "text", "agree": agree,
        "similarity": similarity if similarity is not None else (None if agree is None else float(bool(agree))),
        "production_output": outputs[0], "candidate_output": outputs[1],
        "production_latency_ms": prod_ms, "candidate_latency_ms": cand_ms, "candidate_error": None, "created_ms": ms,
    })


def turn(eid: str, received_ms: int, versions: dict[str, str] | None = None, upto: str = "guardrail") -> Turn:
    versions = versions or {}
    t = Turn.start(ConversationEvent(eid, f"conv-{eid}", "customer", f"question {eid}", received_ms - 5), received_ms)
    for i, stage in enumerate(STAGES[: STAGES.index(upto) + 1]):
        run = StageRun(stage, "c-" + stage, versions.get(stage, "1"), "ok", None, 1.5 + i, received_ms + i)
        t = t.with_result(stage, Classification("refunds", 0.91) if stage == "classify" else None, run)
    return t


def suggestion(eid: str, ms: int, e2e_ms: int = 40, versions: dict[str, str] | None = None) -> dict:
    return _valid("Suggestion", suggestion_record(turn(eid, ms - e2e_ms, versions), ms) | {"text": f"draft {eid}"})


def escalation(eid: str, ms: int) -> dict:
    return _valid("Escalation", escalation_record(turn(eid, ms - 30, upto="guardrail"), "guardrail", "ungrounded", ms))


def feedback(eid: str, action: str, ms: int) -> dict:
    return _valid("AgentFeedback", {"feedback_id": f"fb-{eid}", "conversation_id": f"conv-{eid}", "event_id": eid,
                                    "suggestion_id": f"sug-{eid}", "sent_text": f"sent {eid}", "action": action,
                                    "agent_id": "agent-7", "ts_ms": ms})


def promotion(ms: int) -> dict:
    gates = [{"name": "agreement", "passed": True, "value": 0.93, "threshold": 0.9, "detail": ""},
             {"name": "latency", "passed": False, "value": 2.0, "threshold": 1.5, "detail": "p95 2.0 ms"}]
    return _valid("Promotion", {
        "promotion_id": "promo-1", "stage": "classify", "action": "promote",
        "from_component": {"name": "tfidf-logreg", "version": "1"}, "to_component": {"name": "tfidf-logreg", "version": "2"},
        "forced": True, "reason": "ticket 1234", "actor": "ana", "gates": gates, "created_ms": ms,
    })


def judgment(eid: str, ms: int) -> dict:
    return _valid("Judgment", {"judgment_id": f"j-{eid}", "event_id": eid, "suggestion_id": f"sug-{eid}", "judge": "llm@1",
                               "scores": {"accuracy": 0.8, "relevance": 0.6}, "rationale": "ok", "created_ms": ms})


def example_records(h1: int) -> dict[str, list[dict]]:
    """Two hours (h1 and h1 + 1h, epoch ms at an hour boundary) of a classify and a generate candidate.

    Hour 1, classify: a0..a9 compared (8 agree), a0 delivered twice, a10 missing its candidate; feedback
    accepted a0-a2, a8, a9 (a9 was escalated: no suggestion to accept), edited a3-a4, ignored a5.
    Hour 1, generate: g0..g3 (g0, g1 agree; latencies 10..40 vs 15..45 ms); g0, g1 accepted.
    Hour 2, classify: b0..b4 (4 agree), no feedback.
    """
    h2 = h1 + HOUR
    comps = [comparison(f"a{i}", h1 + i * MINUTE, agree=i < 8) for i in range(10)]
    comps += [comparison("a0", h1 + 30 * MINUTE), comparison("a10", h1 + 20 * MINUTE, agree=None, status="missing_candidate")]
    comps += [comparison(f"g{i}", h1 + (40 + i) * MINUTE, stage="generate", agree=i < 2, prod=("extractive", "1"),
                         cand=("extractive", "2"), prod_ms=10.0 * (i + 1), cand_ms=10.0 * (i + 1) + 5, similarity=0.9 if i < 2 else 0.4)
              for i in range(4)]
    comps += [comparison(f"b{i}", h2 + i * MINUTE, agree=i < 4) for i in range(5)]
    sugg = [suggestion(e, h1 + i * MINUTE - 1000) for i, e in enumerate(f"a{i}" for i in range(9))]
    sugg += [suggestion(f"g{i}", h1 + (40 + i) * MINUTE - 1000, versions={"classify": "2"}) for i in range(4)]
    sugg += [suggestion(f"b{i}", h2 + i * MINUTE - 1000) for i in range(5)]
    actions = {"a0": "accepted", "a1": "accepted", "a2": "accepted", "a3": "edited", "a4": "edited", "a5": "ignored",
               "a8": "accepted", "a9": "accepted", "g0": "accepted", "g1": "accepted"}
    return {
        "comparisons": comps,
        "suggestions": sugg,
        "escalations": [escalation("a9", h1 + 9 * MINUTE - 1000)],
        "feedback": [feedback(e, a, h1 + 50 * MINUTE) for e, a in actions.items()],
        "judgments": [judgment("a0", h1 + 55 * MINUTE)],
        "promotions": [promotion(h2 + 30 * MINUTE)],
    }


def expected_a(h1: int) -> list[dict]:
    """Query (a) on example_records(h1): per hour, stage, candidate."""
    hour = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None).isoformat()
    cols = ("hour", "stage", "production", "candidate", "compared", "agreement", "with_feedback", "match_rate",
            "match_when_agree", "match_when_diverge", "diverge_miss")
    rows = [
        (hour(h1), "classify", "tfidf-logreg@1", "tfidf-logreg@2", 10, 0.8, 8, 0.5, 0.5, 0.5, 1),
        (hour(h1), "generate", "extractive@1", "extractive@2", 4, 0.5, 2, 1.0, 1.0, None, 0),
        (hour(h1 + HOUR), "classify", "tfidf-logreg@1", "tfidf-logreg@2", 5, 0.8, 0, None, None, None, 0),
    ]
    return [dict(zip(cols, r)) for r in rows]


EXPECTED_B_EVENTS = ["b4", "g3", "g2", "a9", "a8"]
EXPECTED_C = [
    {"stage": "classify", "candidate": "tfidf-logreg@2", "n": 15, "prod_avg_ms": 1.0, "cand_avg_ms": 2.0, "avg_delta_ms": 1.0,
     "prod_p95_ms": 1.0, "cand_p95_ms": 2.0, "p95_delta_ms": 1.0},
    {"stage": "generate", "candidate": "extractive@2", "n": 4, "prod_avg_ms": 25.0, "cand_avg_ms": 30.0, "avg_delta_ms": 5.0,
     "prod_p95_ms": 38.5, "cand_p95_ms": 43.5, "p95_delta_ms": 5.0},
]


def docs_commands() -> dict[str, list[str]]:
    """The documented example commands, (a) (b) (c), as argv after `shadowline`, verbatim from docs/analytics.md."""
    text = DOCS.read_text()
    out = {}
    for label in ("a", "b", "c"):
        section = re.search(rf"^### \({label}\).*?```bash\n(.*?)```", text, re.S | re.M)
        assert section, f"docs/analytics.md has no bash block for ({label})"
        argv = shlex.split(section.group(1))
        assert argv[:2] == ["shadowline", "query"], argv[:2]
        out[label] = argv[1:]
    return out


def sql_of(argv: list[str]) -> str:
    return next(a for a in argv[1:] if "SELECT" in a)


def result_dicts(result) -> list[dict]:
    return [dict(zip(result.columns, row)) for row in result.rows()]


H1 = 1_750_000_000_000 // HOUR * HOUR


@pytest.fixture
def db() -> Analytics:
    db = Analytics()
    for table, records in example_records(H1).items():
        db.insert(table, records)
    return db


# -- flattening ------------------------------------------------------------------------------------
def test_suggestion_row_flattens_versions_latency_and_trace():
    rec = suggestion("e1", 1_000_040, e2e_ms=40, versions={"classify": "2"})
    row = suggestion_row(rec)
    assert row["event_id"] == "e1" and row["conversation_id"] == "conv-e1" and row["topic"] == "refunds"
    assert row["text"] == "draft e1" and row["created_ms"] == 1_000_040 and row["e2e_ms"] == 40
    assert row["classify_version"] == "2" and row["validate_version"] == "1" and row["classify_component"] == "c-classify"
    assert row["guardrail_status"] == "ok" and row["retrieve_latency_ms"] == 4.5
    assert row["classify_confidence"] == 0.91 and row["customer_text"] == "question e1"
    trace = json.loads(row["trace"])
    assert [r["stage"] for r in trace] == list(STAGES) and trace[2]["version"] == "2"
    assert set(row) == {c for c, _ in TABLES["suggestions"].columns}


def test_every_table_row_has_exactly_its_columns():
    records = example_records(H1)
    for name, table in TABLES.items():
        row = table.row(records[name][0])
        assert set(row) == {c for c, _ in table.columns}, name
        assert table.ts_field in row


def test_escalation_turn_that_stopped_early_has_null_stage_columns():
    rec = _valid("Escalation", escalation_record(turn("e2", 500, upto="validate"), "validate", "out_of_scope", 600))
    row = TABLES["escalations"].row(rec)
    assert row["stage"] == "validate" and row["e2e_ms"] == 100 and row["validate_status"] == "ok"
    assert row["classify_version"] is None and row["topic"] is None and row["classify_confidence"] is None


def test_comparison_and_promotion_rows():
    row = comparison_row(comparison("e3", 5, agree=False))
    assert row["production"] == "tfidf-logreg@1" and row["candidate_version"] == "2" and row["agree"] is False
    assert json.loads(row["candidate_output"]) == {"topic": "shipping"}
    p = promotion_row(promotion(9))
    assert p["from_component"] == "tfidf-logreg@1" and p["to_version"] == "2" and p["failed_gates"] == "latency"
    assert [g["name"] for g in json.loads(p["gates"])] == ["agreement", "latency"]


# -- time and options ------------------------------------------------------------------------------
NOW = 1_750_000_000_000


@pytest.mark.parametrize("value, expected", [
    ("24h", NOW - 24 * HOUR), ("30m", NOW - 30 * MINUTE), ("7d", NOW - 7 * 24 * HOUR), ("90s", NOW - 90_000),
    ("1.5h", NOW - 90 * MINUTE), ("2w", NOW - 14 * 24 * HOUR), ("now", NOW), ("0", 0),
    ("1700000000000", 1_700_000_000_000),
    ("2025-06-01T12:00:00Z", 1_748_779_200_000), ("2025-06-01T14:00:00+02:00", 1_748_779_200_000),
    ("2025-06-01T12:00", 1_748_779_200_000), ("2025-06-01", 1_748_736_000_000),
])
def test_parse_time(value, expected):
    assert parse_time(value, NOW) == expected


@pytest.mark.parametrize("value, needle", [("yesterday", "expected a duration"), ("1700000000", "epoch seconds"), ("24x", "expected a duration")])
def test_parse_time_rejects_with_one_line(value, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        parse_time(value, NOW, "--until")
    assert str(exc.value).startswith("--until") and "\n" not in str(exc.value)


def test_tables_loaded_are_the_ones_the_sql_names_or_the_option_lists():
    assert table_names(None, "SELECT * FROM comparisons c JOIN feedback f USING (event_id)") == ["comparisons", "feedback"]
    assert table_names(None, "SELECT 1") == list(TABLES)
    assert table_names("compare, suggestions,compare", "SELECT 1") == ["comparisons", "suggestions"]
    with pytest.raises(ConfigError, match="unknown nope"):
        table_names("compare,nope", "")


def test_format_is_inferred_from_out_and_parquet_needs_a_file(tmp_path):
    assert infer_format(None, None) == "table"
    assert infer_format(None, tmp_path / "x.parquet") == "parquet" and infer_format(None, tmp_path / "x.CSV") == "csv"
    assert infer_format("json", tmp_path / "x.txt") == "json"
    with pytest.raises(ConfigError, match="needs --out"):
        infer_format("parquet", None)
    with pytest.raises(ConfigError, match="must be one of"):
        infer_format("xml", None)


# -- tables and SQL --------------------------------------------------------------------------------
def test_empty_tables_have_every_column_so_sql_runs():
    db = Analytics()
    for name, table in TABLES.items():
        result = db.query(f"SELECT * FROM {name}")
        assert result.columns == table.column_names and result.rows() == []
    for label, argv in docs_commands().items():
        assert db.query(sql_of(argv)).rows() == [], label
    assert db.query("SELECT typeof(ts) AS t, typeof(agree) AS a FROM comparisons").rows() == []
    types = dict(db.con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'comparisons'").fetchall())
    assert types["ts"] == "TIMESTAMP" and types["agree"] == "BOOLEAN" and types["created_ms"] == "BIGINT"


def test_ts_is_the_record_time(db):
    rows = db.query("SELECT event_id, ts, created_ms FROM comparisons WHERE event_id = 'b1'").rows()
    utc = datetime.fromtimestamp((H1 + HOUR + MINUTE) / 1000, timezone.utc).replace(tzinfo=None)
    assert rows == [("b1", utc, H1 + HOUR + MINUTE)]
    assert db.query("SELECT count(*) FROM feedback WHERE ts IS NULL").rows() == [(0,)]


def test_documented_queries_give_the_expected_numbers(db):
    cmds = docs_commands()
    a = result_dicts(db.query(sql_of(cmds["a"])))
    for row in a:
        row["hour"] = row["hour"].isoformat()
    assert a == expected_a(H1)
    b = result_dicts(db.query(sql_of(cmds["b"])))
    assert [r["event_id"] for r in b] == EXPECTED_B_EVENTS
    assert json.loads(b[0]["candidate_output"]) == {"topic": "shipping"} and json.loads(b[0]["production_output"]) == {"topic": "refunds"}
    c = result_dicts(db.query(sql_of(cmds["c"])))
    assert [{k: r[k] for k in EXPECTED_C[0]} for r in c] == EXPECTED_C


def test_several_statements_return_the_last_result(db):
    result = db.query("CREATE TEMP VIEW v AS SELECT stage FROM comparisons; SELECT count(DISTINCT stage) AS n FROM v;")
    assert result.columns == ["n"] and result.rows() == [(2,)]


@pytest.mark.parametrize("sql, needle", [
    ("SELECT nope FROM comparisons", 'Binder Error: Referenced column "nope" not found'),
    ("SELEC 1", "Parser Error: syntax error"),
    ("SELECT * FROM comparison", "Catalog Error"),
    ("SELECT 'abc'::INTEGER", "Conversion Error"),  # fails while running, not while planning
    ("", "empty SQL"),
])
def test_sql_errors_are_one_config_error_line(db, sql, needle):
    with pytest.raises(ConfigError) as exc:
        db.query(sql)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_sql_error_keeps_the_hint():
    class Fake(Exception):
        pass
    msg = sql_error(Fake('Catalog Error: Table with name x does not exist!\nDid you mean "t"?\n\nLINE 1: SELECT * FROM x\n              ^'))
    assert msg == 'SQL: Catalog Error: Table with name x does not exist!; Did you mean "t"?'


# -- output formats --------------------------------------------------------------------------------
SMALL = "SELECT event_id, agree, similarity, ts FROM comparisons WHERE event_id IN ('a0', 'a8') AND status = 'matched' ORDER BY event_id, ts"


def test_csv_to_stdout_and_file(db, tmp_path, capsys):
    result = db.query(SMALL)
    query_cmd.write(result, "csv", None)
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["event_id", "agree", "similarity", "ts"]
    assert [r[:3] for r in rows[1:]] == [["a0", "true", "1.0"], ["a0", "true", "1.0"], ["a8", "false", "0.0"]]
    assert datetime.fromisoformat(rows[1][3]).minute == 0
    out = tmp_path / "r.csv"
    query_cmd.write(result, "csv", out)
    assert list(csv.reader(out.open())) == rows


def test_json_output_is_an_array_of_objects(db, tmp_path):
    out = tmp_path / "r.json"
    query_cmd.write(db.query(SMALL), "json", out)
    data = json.loads(out.read_text())
    assert [d["event_id"] for d in data] == ["a0", "a0", "a8"] and data[2]["agree"] is False
    assert datetime.fromisoformat(data[0]["ts"]) == datetime.fromtimestamp(H1 / 1000, timezone.utc).replace(tzinfo=None)
    query_cmd.write(db.query("SELECT * FROM promotions WHERE false"), "json", out)
    assert json.loads(out.read_text()) == []


def test_parquet_output_reads_back_with_types(db, tmp_path):
    out = tmp_path / "r.parquet"
    query_cmd.write(db.query(SMALL), "parquet", out)
    back = Analytics().con.execute("SELECT event_id, agree, typeof(ts) FROM read_parquet(?) ORDER BY event_id", [str(out)]).fetchall()
    assert back == [("a0", True, "TIMESTAMP"), ("a0", True, "TIMESTAMP"), ("a8", False, "TIMESTAMP")]


def test_table_output_shows_rows_and_nulls(db, capsys):
    query_cmd.write(db.query("SELECT stage, candidate, agree FROM comparisons WHERE event_id = 'a10'"), "table", None)
    out = capsys.readouterr().out
    assert "classify" in out and "tfidf-logreg@2" in out and "NULL" in out and "1 row(s)" in out


# -- the command -----------------------------------------------------------------------------------
def _app() -> typer.Typer:
    app = typer.Typer()
    query_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command, so `query` is a subcommand as in the real CLI
    return app


@pytest.mark.parametrize("args, needle", [
    (["query", "SELECT 1", "--since", "yesterday"], "--since 'yesterday'"),
    (["query", "SELECT 1", "--since", "1h", "--until", "2h"], "must be after --since"),
    (["query", "SELECT 1", "--format", "parquet"], "needs --out"),
    (["query", "SELECT 1", "--topics", "bogus"], "unknown bogus"),
    (["query", "@/definitely/missing.sql"], "cannot read SQL"),
])
def test_bad_arguments_raise_config_error_before_touching_kafka(args, needle, monkeypatch):
    monkeypatch.setenv("SHADOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # unreachable: the error must come first
    with pytest.raises(ConfigError, match=re.escape(needle)):
        _app()(args=args, standalone_mode=False)
