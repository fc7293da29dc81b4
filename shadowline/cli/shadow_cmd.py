"""Shadow mode commands: register candidates, run mirror / candidate / comparator, status, promote, rollback."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schemas.topics import STAGES

# Piped output (logs, CI) gets room for the status table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
shadow = typer.Typer(help="Run and watch candidates in shadow.", no_args_is_help=True)


def _settings() -> Any:
    from shadowline.config import get_settings

    return get_settings()


def _stage(stage: str) -> str:
    from shadowline.errors import ConfigError

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return stage


NICE_HELP = "CPU priority offset (Unix nice): shadow work yields the CPU to production on a shared host."
METRICS_HELP = "Serve Prometheus metrics on this port (/metrics)."


def _lower_priority(nice: int) -> None:
    import os

    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)


def _registry() -> Any:
    from shadow.registry import Registry

    s = _settings()
    registry = Registry(s.redis_url)
    from streams.pipeline import load_pipeline

    pipeline = load_pipeline(s.pipeline_config)
    registry.seed(pipeline.active, pipeline.candidates)
    for stage, rate in pipeline.mirror_rate.items():
        if registry.mirror_rate(stage) == 0.0:
            registry.set_mirror_rate(stage, rate)
    return registry


def promoter(actor: str = "cli") -> Any:
    from schemas.topics import Topics
    from shadow.promotion import Promoter
    from shadow.regression import regression_gate
    from shadow.stats_store import RedisStats
    from streams.pipeline import load_pipeline
    from streams.publisher import Publisher

    s = _settings()
    topics = Topics(s.topic_prefix)

    def publish(record: dict) -> None:
        with Publisher(s.kafka_bootstrap, topics=topics) as pub:
            pub.send(topics.promotions, "Promotion", record, record["stage"])

    return Promoter(_registry(), RedisStats(s.redis_url), publish, load_pipeline(s.pipeline_config).gates,
                    regression=regression_gate, actor=actor)


@shadow.command("register")
def register_candidate(
    ref: str = typer.Argument(..., help="stage:name@version"),
    config: str = typer.Option("{}", help="Component config as JSON."),
    mirror_rate: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Also set the stage's mirror sample rate."),
) -> None:
    """Register a shadow candidate for a stage."""
    from agents.base import ComponentSpec
    from shadowline.errors import ConfigError

    try:
        cfg = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config is not JSON: {exc.msg}") from exc
    spec = ComponentSpec.parse(ref, cfg)
    _stage(spec.stage)
    registry = _registry()
    registry.add_candidate(spec)
    if mirror_rate is not None:
        registry.set_mirror_rate(spec.stage, mirror_rate)
    console.print(f"registered {spec.ref}; mirror rate {registry.mirror_rate(spec.stage):.0%}")


@shadow.command("mirror")
def run_mirror(
    stage: str = typer.Argument(...),
    rate: Optional[float] = typer.Option(None, min=0.0, max=1.0),
    nice: int = typer.Option(10, min=0, max=19, help=NICE_HELP),
    metrics_port: Optional[int] = typer.Option(None, envvar="SHADOWLINE_METRICS_PORT", help=METRICS_HELP),
) -> None:
    """Mirror a sample of the stage's production input to shadow.<stage>.in (PII redacted)."""
    from shadow.workers import mirror_app
    from streams.worker import run_app

    _stage(stage)
    _lower_priority(nice)
    if rate is not None:
        _registry().set_mirror_rate(stage, rate)
    run_app(mirror_app(stage, _settings(), metrics_port=metrics_port))


@shadow.command("run")
def run_candidate(
    stage: str = typer.Argument(...),
    candidate: Optional[str] = typer.Option(None, help="name@version; default: the stage's only candidate."),
    replica: bool = typer.Option(False, help="Run production's own version (the noise floor) instead."),
    timeout_s: float = typer.Option(5.0, min=0.01, help="Per-event time limit."),
    # Default 0, unlike the mirror and comparator: a candidate's latency is measured against production's,
    # and a deprioritised process on a busy host would look slower than it is.
    nice: int = typer.Option(0, min=0, max=19, help=NICE_HELP + " Biases the latency gate if > 0 on a busy host."),
    metrics_port: Optional[int] = typer.Option(None, envvar="SHADOWLINE_METRICS_PORT", help=METRICS_HELP),
) -> None:
    """Run a candidate (or the production replica) on shadow.<stage>.in, in its own process and group."""
    from shadow.workers import candidate_app
    from streams.worker import run_app

    _stage(stage)
    _lower_priority(nice)
    registry = _registry()
    spec = registry.active(stage) if replica else promoter().candidate(stage, candidate)
    run_app(candidate_app(spec, _settings(), replica=replica, timeout_s=timeout_s, metrics_port=metrics_port))


@shadow.command("compare")
def run_comparator(
    stage: str = typer.Argument(...),
    threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="Text similarity that counts as agreement."),
    window_s: float = typer.Option(30.0, min=0.1, help="How long to wait for the other side."),
    nice: int = typer.Option(10, min=0, max=19, help=NICE_HELP),
    metrics_port: Optional[int] = typer.Option(None, envvar="SHADOWLINE_METRICS_PORT", help=METRICS_HELP),
) -> None:
    """Join production and shadow outputs; write compare.<stage> and the running statistics."""
    from shadow.workers import comparator_app
    from streams.worker import run_app

    _stage(stage)
    _lower_priority(nice)
    _registry()
    run_app(comparator_app(stage, _settings(), threshold=threshold, window_s=window_s, metrics_port=metrics_port))


def _fmt(x: Optional[float], pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:.1f}"


@shadow.command("status")
def status(stage: Optional[str] = typer.Option(None, help="Only this stage."), as_json: bool = typer.Option(False, "--json")) -> None:
    """Per stage and candidate: samples, agreement (Wilson 95%), net disagreement, match rates, latency, errors, gates."""
    p = promoter()
    rows = []
    for st in [_stage(stage)] if stage else STAGES:
        for spec in p.registry.candidates(st):
            d = p.evaluate(st, spec.ref)
            rows.append((st, spec, d))
    if as_json:
        console.print_json(json.dumps([{**d.stats.to_dict(), "gates": [g.to_record() for g in d.gates], "passed": d.passed} for _, _, d in rows]))
        return
    if not rows:
        console.print("no candidates in shadow")
        return
    table = Table("stage", "active → candidate", "n", "agree [95%]", "net dis.", "match prod/cand", "p50/p95 ms prod", "p50/p95 ms cand", "err", "gates")
    for st, spec, d in rows:
        s = d.stats
        lo, hi = s.agreement_interval
        table.add_row(
            st, f"{s.production} → {spec.name}@{spec.version}", str(s.samples),
            f"{_fmt(s.agreement)} [{lo:.0%}, {hi:.0%}]", _fmt(s.net_disagreement),
            f"{_fmt(s.prod_match_rate)} / {_fmt(s.cand_match_rate)}",
            f"{_fmt(s.production_p50_ms, False)} / {_fmt(s.production_p95_ms, False)}",
            f"{_fmt(s.candidate_p50_ms, False)} / {_fmt(s.candidate_p95_ms, False)}",
            _fmt(s.error_rate), "[green]pass[/green]" if d.passed else f"[red]fail[/red]: {escape(', '.join(d.failing))}",
        )
    console.print(table)


def promote(
    stage: str = typer.Argument(...),
    candidate: Optional[str] = typer.Option(None, help="name@version; default: the stage's only candidate."),
    force: bool = typer.Option(False, help="Promote even if gates fail (needs --reason; audited)."),
    reason: Optional[str] = typer.Option(None),
    actor: str = typer.Option("cli", help="Who promotes, for the audit log."),
) -> None:
    """Promote a stage's candidate if its gates pass (hot: workers switch without restart)."""
    d = promoter(actor).promote(_stage(stage), candidate, force=force, reason=reason)
    state = "forced past failing gates: " + d.explain() if not d.passed else "all gates pass"
    console.print(f"promoted {d.candidate.ref} ({state}); recorded on ops.promotions")


def rollback(stage: str = typer.Argument(...), reason: Optional[str] = typer.Option(None), actor: str = typer.Option("cli")) -> None:
    """Restore a stage's previous active version (hot)."""
    replaced, restored = promoter(actor).rollback(_stage(stage), reason)
    console.print(f"rolled back {stage}: {replaced.name}@{replaced.version} → {restored.name}@{restored.version}; recorded on ops.promotions")


def registry_show() -> None:
    """Active version, candidates and history per stage."""
    reg = _registry()
    table = Table("stage", "active", "candidates", "previous", "mirror")
    for st in STAGES:
        active = reg.active(st)
        table.add_row(st, f"{active.name}@{active.version}" if active else "-",
                      ", ".join(f"{c.name}@{c.version}" for c in reg.candidates(st)) or "-",
                      ", ".join(f"{h.name}@{h.version}" for h in reg.history(st)[:3]) or "-", f"{reg.mirror_rate(st):.0%}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(shadow, name="shadow")
    app.command()(promote)
    app.command()(rollback)
    app.command("registry")(registry_show)
