"""Ad-hoc SQL over the record topics: read a time range into DuckDB tables, run one query.

Every comparison, suggestion, escalation, feedback, judgment and promotion is already an Avro record on
Kafka, kept for weeks; "how often did the candidate agree with production last night, and did agents
take those suggestions" should not need a warehouse. So a query reads the range it needs straight from
the topics (timestamps mapped to offsets with ``offsets_for_times``, up to the high watermark when the
query starts), flattens each record into one row of a fixed table and hands the SQL to DuckDB.

Tables and columns are fixed here, so SQL keeps working on empty topics and the docs
(docs/analytics.md) can list them. Record-to-row functions are pure and tested without a broker.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

from schemas.topics import STAGES, Topics
from shadowline.errors import ConfigError

RESULT = "__shadowline_result"
JUDGMENT_ASPECTS = ("retrieval", "accuracy", "language", "coherence", "relevance")
FORMATS = ("table", "csv", "json", "parquet")


# -- record -> row -------------------------------------------------------------------------------
def _ref(ref: dict[str, Any] | None) -> str | None:
    return f"{ref['name']}@{ref['version']}" if ref else None


def _turn_columns(turn: dict[str, Any]) -> dict[str, Any]:
    """What every stage did to this turn: component, version, status and latency per stage."""
    runs = {run["stage"]: run for run in turn["trace"]}  # a stage appears once; the last run wins
    row: dict[str, Any] = {
        "customer_text": turn["event"]["text"],
        "received_ms": turn["received_ms"],
        "classify_confidence": turn["classify"]["confidence"] if turn.get("classify") else None,
        "guardrail_verdict": turn["guardrail"]["verdict"] if turn.get("guardrail") else None,
        # Which check failed (language, compliance:<rule>, grounding, llm:...): analysts group escalations by it.
        "guardrail_check": (turn["guardrail"].get("check") or None) if turn.get("guardrail") else None,
    }
    for stage in STAGES:
        run = runs.get(stage) or {}
        row[f"{stage}_component"] = run.get("component")
        row[f"{stage}_version"] = run.get("version")
        row[f"{stage}_status"] = run.get("status")
        row[f"{stage}_latency_ms"] = run.get("latency_ms")
    row["trace"] = json.dumps(turn["trace"])
    return row


def comparison_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "comparison_id": r["comparison_id"], "event_id": r["event_id"], "conversation_id": r["conversation_id"],
        "stage": r["stage"], "production": _ref(r["production"]), "production_name": r["production"]["name"],
        "production_version": r["production"]["version"], "candidate": _ref(r["candidate"]),
        "candidate_name": r["candidate"]["name"], "candidate_version": r["candidate"]["version"],
        "status": r["status"], "kind": r["kind"], "agree": r["agree"], "similarity": r["similarity"],
        "production_output": r["production_output"], "candidate_output": r["candidate_output"],
        "production_latency_ms": r["production_latency_ms"], "candidate_latency_ms": r["candidate_latency_ms"],
        "candidate_error": r["candidate_error"], "created_ms": r["created_ms"],
    }


def suggestion_row(r: dict[str, Any]) -> dict[str, Any]:
    turn = r["turn"]
    return {
        "suggestion_id": r["suggestion_id"], "event_id": r["event_id"], "conversation_id": r["conversation_id"],
        "topic": r["topic"], "text": r["text"], "sources": json.dumps(r["sources"]),
        "source_ids": ",".join(s["article_id"] for s in r["sources"]),
        "created_ms": r["created_ms"], "e2e_ms": r["created_ms"] - turn["received_ms"], **_turn_columns(turn),
    }


def escalation_row(r: dict[str, Any]) -> dict[str, Any]:
    turn = r["turn"]
    return {
        "escalation_id": r["escalation_id"], "event_id": r["event_id"], "conversation_id": r["conversation_id"],
        "stage": r["stage"], "reason": r["reason"], "draft": r["draft"],
        "topic": turn["classify"]["topic"] if turn.get("classify") else None,
        "created_ms": r["created_ms"], "e2e_ms": r["created_ms"] - turn["received_ms"], **_turn_columns(turn),
    }


def feedback_row(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("feedback_id", "conversation_id", "event_id", "suggestion_id", "sent_text", "action", "agent_id", "ts_ms")}


def judgment_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {k: r[k] for k in ("judgment_id", "event_id", "suggestion_id", "judge")}
    row.update({f"score_{a}": r["scores"].get(a) for a in JUDGMENT_ASPECTS})
    row.update(scores=json.dumps(r["scores"]), rationale=r["rationale"], created_ms=r["created_ms"])
    return row


def promotion_row(r: dict[str, Any]) -> dict[str, Any]:
    frm, to = r["from_component"], r["to_component"]
    return {
        "promotion_id": r["promotion_id"], "stage": r["stage"], "action": r["action"],
        "from_component": _ref(frm), "from_version": frm["version"] if frm else None,
        "to_component": _ref(to), "to_version": to["version"], "forced": r["forced"], "reason": r["reason"],
        "actor": r["actor"], "failed_gates": ",".join(g["name"] for g in r["gates"] if not g["passed"]),
        "gates": json.dumps(r["gates"]), "created_ms": r["created_ms"],
    }


# -- tables --------------------------------------------------------------------------------------
V, B, D, I, BOOL = "VARCHAR", "BIGINT", "DOUBLE", "INTEGER", "BOOLEAN"
TURN_COLUMNS = (("customer_text", V), ("received_ms", B), ("classify_confidence", D), ("guardrail_verdict", V),
                ("guardrail_check", V),
                *((f"{s}_{c}", t) for s in STAGES for c, t in (("component", V), ("version", V), ("status", V), ("latency_ms", D))),
                ("trace", V))


@dataclass(frozen=True)
class Table:
    """One DuckDB table: where its records come from, its columns and how a record becomes a row."""

    name: str
    record: str
    topics: Callable[[Topics], list[str]]
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type); ``ts`` is added from ``ts_field``
    ts_field: str
    row: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns] + ["ts"]


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("comparisons", "Comparison", lambda t: [t.compare(s) for s in STAGES], (
        ("comparison_id", V), ("event_id", V), ("conversation_id", V), ("stage", V), ("production", V),
        ("production_name", V), ("production_version", V), ("candidate", V), ("candidate_name", V),
        ("candidate_version", V), ("status", V), ("kind", V), ("agree", BOOL), ("similarity", D),
        ("production_output", V), ("candidate_output", V), ("production_latency_ms", D),
        ("candidate_latency_ms", D), ("candidate_error", V), ("created_ms", B)), "created_ms", comparison_row),
    Table("suggestions", "Suggestion", lambda t: [t.suggestions], (
        ("suggestion_id", V), ("event_id", V), ("conversation_id", V), ("topic", V), ("text", V), ("sources", V),
        ("source_ids", V), ("created_ms", B), ("e2e_ms", B), *TURN_COLUMNS), "created_ms", suggestion_row),
    Table("escalations", "Escalation", lambda t: [t.escalations], (
        ("escalation_id", V), ("event_id", V), ("conversation_id", V), ("stage", V), ("reason", V), ("draft", V),
        ("topic", V), ("created_ms", B), ("e2e_ms", B), *TURN_COLUMNS), "created_ms", escalation_row),
    Table("feedback", "AgentFeedback", lambda t: [t.feedback], (
        ("feedback_id", V), ("conversation_id", V), ("event_id", V), ("suggestion_id", V), ("sent_text", V),
        ("action", V), ("agent_id", V), ("ts_ms", B)), "ts_ms", feedback_row),
    Table("judgments", "Judgment", lambda t: [t.judgments], (
        ("judgment_id", V), ("event_id", V), ("suggestion_id", V), ("judge", V),
        *((f"score_{a}", D) for a in JUDGMENT_ASPECTS), ("scores", V), ("rationale", V), ("created_ms", B)),
        "created_ms", judgment_row),
    Table("promotions", "Promotion", lambda t: [t.promotions], (
        ("promotion_id", V), ("stage", V), ("action", V), ("from_component", V), ("from_version", V),
        ("to_component", V), ("to_version", V), ("forced", BOOL), ("reason", V), ("actor", V), ("failed_gates", V),
        ("gates", V), ("created_ms", B)), "created_ms", promotion_row),
)}
ALIASES = {"compare": "comparisons", "comparison": "comparisons", "suggestion": "suggestions",
           "escalation": "escalations", "judgment": "judgments", "promotion": "promotions"}


def table_names(spec: str | None, sql: str) -> list[str]:
    """Tables to load: those named in ``spec`` (comma-separated, topic short names accepted), else those
    the SQL mentions, else all. A table not loaded still exists, empty."""
    if spec:
        names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in TABLES]
        if unknown:
            raise ConfigError(f"--topics: unknown {', '.join(unknown)}; choose from compare, {', '.join(list(TABLES)[1:])}")
        return list(dict.fromkeys(names))
    mentioned = [n for n in TABLES if re.search(rf"\b{n}\b", sql, re.IGNORECASE)]
    return mentioned or list(TABLES)


# -- time ----------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(value: str, now_ms: int, option: str = "--since") -> int:
    """Epoch ms from a duration back from now (``24h``, ``30m``, ``7d``), an ISO time (UTC unless it
    says otherwise), epoch milliseconds, or ``now``."""
    text = value.strip().lower()
    if text == "now":
        return now_ms
    if m := _DURATION.match(text):
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if text.isdigit():
        ms = int(text)
        if 0 < ms < 10**11:  # before 1973 as ms, but a plausible date as seconds
            raise ConfigError(f"{option} {value}: looks like epoch seconds; give epoch milliseconds ({ms * 1000})")
        return ms
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option} {value!r}: expected a duration (24h, 30m, 7d), an ISO time (2025-06-01T12:00Z) or epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


# -- the database --------------------------------------------------------------------------------
class Analytics:
    """An in-memory DuckDB holding the shadowline tables (all created, empty until loaded)."""

    def __init__(self) -> None:
        import duckdb

        self._duckdb = duckdb
        self.con = duckdb.connect(":memory:")
        self.loaded: dict[str, int] = {name: 0 for name in TABLES}
        self.undecodable = 0
        for t in TABLES.values():
            cols = ", ".join(f"{c} {typ}" for c, typ in t.columns)
            self.con.execute(f"CREATE TABLE {t.name} ({cols}, ts TIMESTAMP)")

    def insert(self, table: str, records: Iterable[dict[str, Any]]) -> int:
        """Flatten Avro records into ``table``; returns how many rows were added."""
        return self._bulk_insert(((table, r) for r in records), [table])[table]

    def load_from_kafka(self, bootstrap: str, topics: Topics, codec: Any, tables: list[str], since_ms: int,
                        until_ms: int | None, timeout_s: float = 300.0) -> dict[str, int]:
        """Read every record of ``tables``' topics whose Kafka timestamp is in [since_ms, until_ms)
        (until None: the high watermark when this starts) and insert them; rows added per table."""
        from streams.reader import offsets_at, read_range

        by_topic = {topic: TABLES[name] for name in tables for topic in TABLES[name].topics(topics)}
        start = offsets_at(bootstrap, list(by_topic), since_ms)
        end = offsets_at(bootstrap, list(by_topic), until_ms)

        def records() -> Iterable[tuple[str, dict[str, Any]]]:
            for topic, record, ts in read_range(bootstrap, start, end, codec, lambda tp: by_topic[tp].record, timeout_s=timeout_s):
                if topic.startswith("!"):
                    self.undecodable += 1
                elif ts < 0 or since_ms <= ts and (until_ms is None or ts < until_ms):
                    yield by_topic[topic].name, record

        return self._bulk_insert(records(), tables)

    def _bulk_insert(self, records: Iterable[tuple[str, dict[str, Any]]], tables: list[str]) -> dict[str, int]:
        """Rows go through one newline-delimited JSON file per table that DuckDB reads with the declared
        column types: far faster than row-by-row inserts, flat in memory, and no pandas or pyarrow."""
        counts = dict.fromkeys(tables, 0)
        with tempfile.TemporaryDirectory(prefix="shadowline-query-") as tmp:
            files = {name: (Path(tmp) / f"{name}.ndjson").open("w") for name in tables}
            try:
                for name, record in records:
                    files[name].write(json.dumps(TABLES[name].row(record)) + "\n")
                    counts[name] += 1
            finally:
                for fh in files.values():
                    fh.close()
            for name, n in counts.items():
                if n:
                    t = TABLES[name]
                    types = ", ".join(f"{c}: '{typ}'" for c, typ in t.columns)
                    self.con.execute(
                        f"INSERT INTO {t.name} SELECT {', '.join(c for c, _ in t.columns)}, epoch_ms({t.ts_field}) "
                        f"FROM read_json(?, format = 'newline_delimited', columns = {{{types}}})", [files[name].name]
                    )
                self.loaded[name] += n
        return counts

    def query(self, sql: str) -> Result:
        """Run ``sql`` (several statements allowed; the last one's rows are the result) once, into a
        temporary table that every output format then reads."""
        sql = sql.strip().rstrip(";").strip()
        if not sql:
            raise ConfigError("empty SQL")
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {RESULT}")
            rel = self.con.sql(sql)
            if rel is None:
                raise ConfigError("the SQL returned no rows to show: end it with a SELECT")
            rel.create(RESULT)
        except self._duckdb.Error as exc:
            raise ConfigError(sql_error(exc)) from exc
        result = self.con.table(RESULT)
        return Result(self, list(result.columns), [str(t) for t in result.types])


def sql_error(exc: Exception) -> str:
    """DuckDB's message on one line: the error, then its hint (candidate columns, "did you mean")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(("LINE ", "^"))]
    return "SQL: " + "; ".join(lines[:2]) if lines else f"SQL: {type(exc).__name__}"


@dataclass
class Result:
    db: Analytics
    columns: list[str]
    types: list[str]

    def rows(self) -> list[tuple[Any, ...]]:
        return self.db.con.execute(f"SELECT * FROM {RESULT}").fetchall()

    def write_parquet(self, path: Path) -> None:
        try:
            self.db.con.table(RESULT).write_parquet(str(path))
        except self.db._duckdb.Error as exc:
            raise ConfigError(f"cannot write {path}: {str(exc).splitlines()[0]}") from exc

    def csv_lines(self) -> Iterable[list[str]]:
        yield self.columns
        for row in self.rows():
            yield [_csv_value(v) for v in row]

    def json_text(self) -> str:
        """A JSON array, one object per line, so large results stay readable and greppable."""
        objects = [json.dumps(dict(zip(self.columns, row)), default=_json_value, ensure_ascii=False) for row in self.rows()]
        return "[\n" + ",\n".join(objects) + ("\n]\n" if objects else "]\n")


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v.isoformat(sep=" ") if isinstance(v, datetime) else str(v)


def _json_value(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


def infer_format(fmt: str | None, out: Path | None) -> str:
    if fmt is None:
        suffix = out.suffix.lower().lstrip(".") if out else ""
        fmt = {"csv": "csv", "json": "json", "parquet": "parquet", "pq": "parquet"}.get(suffix, "table")
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE")
    return fmt


def now_ms() -> int:
    return int(time.time() * 1000)
