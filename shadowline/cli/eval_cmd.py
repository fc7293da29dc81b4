"""`shadowline eval SUITE`: run a regression suite, optionally with one component swapped in."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


def eval_suite(
    suite: Path = typer.Argument(..., help="A suite YAML, e.g. suites/classify.yaml."),
    component: Optional[str] = typer.Option(None, help="stage:name@version to evaluate instead of the active one."),
    config: str = typer.Option("{}", help="That component's config as JSON."),
) -> None:
    """Run a regression suite through the pipeline in memory; exit 1 if it fails."""
    from agents.base import ComponentSpec
    from shadow.regression import load_suite, run_suite
    from shadowline.errors import ConfigError

    try:
        cfg = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config is not JSON: {exc.msg}") from exc
    spec = ComponentSpec.parse(component, cfg) if component else None
    result = run_suite(load_suite(suite), spec)
    table = Table("case", "result", "details")
    for r in result.results:
        if r.case.known_gap:
            state = "[cyan]gap fixed[/cyan]" if r.passed else "[dim]known gap[/dim]"
            detail = r.case.known_gap if not r.passed else "passes now: remove known_gap"
        else:
            state = "[green]pass[/green]" if r.passed else "[red]fail[/red]"
            detail = "; ".join(r.failures)
        table.add_row(r.case.id, state, escape(detail))
    console.print(table)
    n = len(result.counted)
    verdict = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
    console.print(f"{verdict} {result.suite.name} on {result.component}: {sum(r.passed for r in result.counted)}/{n} "
                  f"({result.pass_rate:.0%}, need {result.suite.min_pass_rate:.0%}); known gaps: "
                  f"{sum(1 for r in result.results if r.case.known_gap)}, fixed: {len(result.fixed_gaps)}")
    if not result.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_suite)
