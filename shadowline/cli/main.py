"""Entry point: builds the Typer app and turns every ShadowlineError into one line and exit code 2."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from shadowline.errors import ShadowlineError

app = typer.Typer(
    name="shadowline",
    help="LLM-assisted customer support on Kafka, with shadow mode.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Recent typer vendors its own click; catch both so a bad argument never shows a traceback.
_CLICK_ERRORS = tuple({click.ClickException, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")})
_EXITS = tuple({click.exceptions.Exit, typer.Exit})
_ABORTS = tuple({click.exceptions.Abort, typer.Abort})
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    # Imported here, not at module import, so `shadowline --help` stays fast and side-effect free.
    from shadowline.cli import (
        dashboard_cmd, demo_cmd, eval_cmd, grafana_cmd, infra_cmd, judge_cmd, kb_cmd, pipeline_cmd, query_cmd,
        review_cmd, shadow_cmd, train_cmd, weak_cmd,
    )

    app.add_typer(infra_cmd.app, name="infra")
    app.add_typer(kb_cmd.app, name="kb")
    pipeline_cmd.register(app)
    demo_cmd.register(app)
    shadow_cmd.register(app)
    eval_cmd.register(app)
    grafana_cmd.register(app)
    dashboard_cmd.register(app)
    query_cmd.register(app)
    train_cmd.register(app)
    judge_cmd.register(app)
    review_cmd.register(app)
    weak_cmd.register(app)


def main(argv: list[str] | None = None) -> int:
    _register()
    try:
        # standalone_mode=False hands typer.Exit codes back as the return value instead of raising.
        result = app(args=argv, standalone_mode=False)
    except ShadowlineError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except _ABORTS:
        err.print("aborted")
        return 130
    except _EXITS as exc:
        return exc.exit_code
    except _CLICK_ERRORS as exc:
        # Bad arguments: one clear line, no usage dump and no traceback.
        err.print(f"[red]error:[/red] {exc.format_message()}", highlight=False)
        return 2
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
