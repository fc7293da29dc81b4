"""`shadowline judge run`: the quality judge worker on support.suggestions (see docs/quality.md)."""

from __future__ import annotations

import json
from typing import Optional

import typer

judge = typer.Typer(help="Score a sample of suggestions on five quality aspects.", no_args_is_help=True)


@judge.command("run")
def run_judge(
    name: str = typer.Option("rules", "--judge", help="rules (offline) or openai (needs OPENAI_API_KEY / OPENAI_BASE_URL)."),
    version: str = typer.Option("1", help="The judge's version, recorded in every judgment."),
    config: str = typer.Option("{}", help="The judge's config as JSON (e.g. model, languages)."),
    rate: float = typer.Option(0.2, min=0.0, max=1.0, help="Share of suggestions judged (deterministic by id hash)."),
    sample_by: str = typer.Option("event", help="event, or conversation: judge whole conversations."),
    review_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of judged turns queued for human review."),
    metrics_port: Optional[int] = typer.Option(None, envvar="SHADOWLINE_METRICS_PORT", help="Serve Prometheus metrics here."),
    loglevel: str = typer.Option("warning"),
) -> None:
    """Judge a sample of suggestions into quality.judgments, and queue some for human review."""
    from agents.base import ComponentSpec
    from shadowline.config import get_settings
    from shadowline.errors import ConfigError
    from streams.judging import judge_app
    from streams.worker import run_app

    try:
        cfg = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config is not JSON: {exc.msg}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError("--config must be a JSON object")
    spec = ComponentSpec("judge", name, version, cfg)
    app = judge_app(spec, get_settings(), rate=rate, sample_by=sample_by, review_rate=review_rate, metrics_port=metrics_port)
    run_app(app, loglevel)


def register(app: typer.Typer) -> None:
    app.add_typer(judge, name="judge")
