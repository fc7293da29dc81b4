"""`shadowline query`: SQL over a time range of the record topics (see docs/analytics.md)."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

MAX_TABLE_ROWS = 1000
NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE"}
err = Console(stderr=True, soft_wrap=True)


def _console() -> Console:
    # Piped output (logs, CI) gets room for wide results instead of rich's 80-column default.
    return Console(width=None if sys.stdout.isatty() else 200)


def _read_sql(sql: str) -> str:
    from shadowline.errors import ConfigError

    if not sql.startswith("@"):
        return sql
    try:
        return Path(sql[1:]).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read SQL from {sql[1:]}: {exc.strerror}") from exc


def query(
    sql: str = typer.Argument(..., help="DuckDB SQL over comparisons, suggestions, escalations, feedback, judgments, promotions; or @FILE."),
    since: str = typer.Option("24h", help="Start: a duration back from now (24h, 30m, 7d), an ISO time, or epoch ms."),
    until: Optional[str] = typer.Option(None, help="End (exclusive), same forms; default: everything up to now."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv, json or parquet; default: from --out's extension, else table."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result to this file instead of the terminal."),
    topics: Optional[str] = typer.Option(None, help="Tables to load, comma-separated (compare,suggestions,escalations,feedback,judgments,promotions); default: those the SQL names."),
    timeout_s: float = typer.Option(300.0, "--timeout-s", min=1.0, help="Give up reading the topics after this long."),
) -> None:
    """Run SQL over the records of a time range, read from Kafka into DuckDB tables."""
    from schemas.codec import make_codec
    from schemas.topics import Topics
    from shadowline.analytics import Analytics, infer_format, now_ms, parse_time, table_names
    from shadowline.config import get_settings
    from shadowline.errors import ConfigError

    text = _read_sql(sql)
    fmt = infer_format(fmt, out)
    now = now_ms()
    since_ms = parse_time(since, now, "--since")
    until_ms = parse_time(until, now, "--until") if until else None
    if until_ms is not None and until_ms <= since_ms:
        raise ConfigError(f"--until ({until}) must be after --since ({since})")
    tables = table_names(topics, text)
    settings = get_settings()
    db = Analytics()
    t0 = time.monotonic()
    counts = db.load_from_kafka(settings.kafka_bootstrap, Topics(settings.topic_prefix), make_codec(settings.schema_registry_url),
                                tables, since_ms, until_ms, timeout_s)
    loaded = ", ".join(f"{name} {n}" for name, n in counts.items())
    skipped = f"; {db.undecodable} undecodable record(s) skipped" if db.undecodable else ""
    err.print(f"[dim]loaded {loaded} in {time.monotonic() - t0:.1f}s{skipped}[/dim]", highlight=False)
    write(db.query(text), fmt, out)


def write(result: Any, fmt: str, out: Path | None) -> None:
    """Print or save a query result in ``fmt``."""
    from shadowline.errors import ConfigError

    if fmt == "parquet":
        result.write_parquet(out)
    elif fmt == "table":
        if out is not None:
            with out.open("w") as fh:
                Console(file=fh, width=200).print(_table(result))
        else:
            _console().print(_table(result))
    else:
        try:
            fh = out.open("w", newline="") if out else sys.stdout
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
        try:
            if fmt == "csv":
                csv.writer(fh).writerows(result.csv_lines())
            else:
                fh.write(result.json_text())
        finally:
            if out:
                fh.close()
    if out is not None:
        err.print(f"[dim]wrote {fmt} to {out}[/dim]", highlight=False)


def _table(result: Any) -> Table:
    rows = result.rows()
    shown = rows[:MAX_TABLE_ROWS]
    caption = f"{len(rows)} row(s)" + (f", first {MAX_TABLE_ROWS} shown (use --format csv for all)" if len(rows) > len(shown) else "")
    table = Table(caption=caption)
    for name, typ in zip(result.columns, result.types):
        table.add_column(escape(name), justify="right" if typ.upper() in NUMERIC else "left")
    for row in shown:
        table.add_row(*[_cell(v) for v in row])
    return table


def _cell(v: Any) -> str:
    if v is None:
        return "[dim]NULL[/dim]"
    if isinstance(v, float):
        return f"{v:.6g}"
    return escape(str(v))


def register(app: typer.Typer) -> None:
    app.command()(query)
