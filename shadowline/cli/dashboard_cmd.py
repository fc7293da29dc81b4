"""`shadowline dashboard`: the promotion dashboard (web page + JSON API) for ML engineers."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

console = Console()


def dashboard(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; loopback unless you put it behind a proxy."),
    port: int = typer.Option(8765, min=1, max=65535),
    token: Optional[str] = typer.Option(
        None, envvar="SHADOWLINE_DASHBOARD_TOKEN", show_default=False,
        help="Bearer token that allows promote and rollback (prefer the env var: arguments show in `ps`). "
             "Without one the dashboard is read-only.",
    ),
    tail: int = typer.Option(2000, min=1, max=100_000, help="Recent records per topic behind the charts and examples."),
) -> None:
    """Serve the shadow-mode dashboard: agreement, gates, disagreements; promote and roll back."""
    from shadowline.dashboard.data import LiveData
    from shadowline.dashboard.server import serve

    data = LiveData.from_settings(tail_records=tail)
    mode = "promote and rollback need the bearer token" if token else "read-only (no token configured)"
    console.print(f"dashboard on http://{host}:{port}/ - {mode}", highlight=False)  # never the token itself
    serve(data, host, port, token or None)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
