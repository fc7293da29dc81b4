"""`shadowline infra up|down|status`: local Kafka and Redis on the ports in settings, without Docker."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from shadowline import localinfra
from shadowline.config import get_settings

app = typer.Typer(
    help="Start, stop and inspect local Kafka (KRaft, Java 17) and Redis on loopback ports.",
    no_args_is_help=True,
)
console = Console()


@app.command()
def up() -> None:
    """Start Redis and Kafka; running ones are left alone, so calling it twice is safe."""
    settings = get_settings()
    began = time.monotonic()
    with console.status("starting local infra…") as spinner:
        report = localinfra.up(settings, on_step=spinner.update)
    console.print(_table(report))
    console.print(f"ready in {time.monotonic() - began:.1f}s; data, logs and pids in {settings.home}")


@app.command()
def down() -> None:
    """Stop Kafka and Redis (SIGTERM, then SIGKILL after a grace period)."""
    with console.status("stopping local infra…"):
        localinfra.down(get_settings())
    console.print("stopped")


@app.command()
def status() -> None:
    """Show whether Kafka and Redis answer; exit code 1 if either is down."""
    report = localinfra.status(get_settings())
    console.print(_table(report))
    if not all(service["reachable"] for service in report.values()):
        raise typer.Exit(1)


def _table(report: dict[str, Any]) -> Table:
    table = Table(title="local infra")
    for column in ("service", "state", "address", "pid", "topics"):
        table.add_column(column)
    for name, service in report.items():
        state = "[green]up[/green]" if service["reachable"] else "[red]down[/red]"
        pid = str(service["pid"]) if service["pid"] is not None else "-"
        topics = (", ".join(service["topics"]) or "-") if "topics" in service else ""
        table.add_row(name, state, service["address"], pid, topics)
    return table
