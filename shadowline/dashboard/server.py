"""The dashboard's HTTP app: a JSON API over a ``DashboardData`` and one static page.

Reads are open (bind to loopback, the default, or put it behind your proxy). Promote and rollback
change what serves customers, so they need ``Authorization: Bearer <token>``; without a configured
token the dashboard is read-only and refuses them (403). The token is compared in constant time and
never logged or echoed. Errors map to statuses here, in one place: a refused promotion is 409 with the
failing gates in the body, a bad request 400, an unreachable Redis or Kafka 503.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas.topics import STAGES
from shadow.promotion import PromotionRefused
from shadow.registry import PromotionLocked
from shadowline.dashboard.data import BUCKET_S, DashboardData
from shadowline.errors import ConfigError, ShadowlineError, StoreError, TransportError

__all__ = ["STATIC_DIR", "create_app", "serve"]

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("shadowline.dashboard")


class HTTPProblem(Exception):
    """An answer other than 200, raised inside a handler and rendered as ``{"error": ...}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def _problem(exc: ShadowlineError) -> HTTPProblem:
    if isinstance(exc, PromotionRefused):
        d = exc.decision
        return HTTPProblem(409, str(exc), failing=list(d.failing) if d else [],
                           gates=[g.to_record() for g in d.gates] if d else [])
    if isinstance(exc, PromotionLocked):
        return HTTPProblem(409, str(exc))
    if isinstance(exc, ConfigError):
        return HTTPProblem(400, str(exc))
    if isinstance(exc, (StoreError, TransportError)):
        return HTTPProblem(503, str(exc))
    return HTTPProblem(500, str(exc))


def _stage(request: Request) -> str:
    stage = request.path_params["stage"]
    if stage not in STAGES:
        raise HTTPProblem(404, f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return stage


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise HTTPProblem(400, f"{name} must be within {low}..{high}, not {value}")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPProblem(400, "request body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "request body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise HTTPProblem(400, f"{name} must be a {kind.__name__}")
    return value


def create_app(data: DashboardData, token: str | None = None) -> Starlette:
    """The app over ``data``. ``token`` None or empty: read-only."""
    secret = SecretStr(token) if token else None

    def authorize(request: Request) -> None:
        if secret is None:
            raise HTTPProblem(403, "the dashboard is read-only: start it with --token or SHADOWLINE_DASHBOARD_TOKEN to allow promotions")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret.get_secret_value().encode()):
            raise HTTPProblem(401, "missing or wrong bearer token")

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Data reads block on Redis and Kafka: run them off the event loop."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except ShadowlineError as exc:
            raise _problem(exc) from exc

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def overview(request: Request) -> JSONResponse:
        # The page shows promote/rollback controls only when they can work.
        return JSONResponse({**await call(data.overview), "writable": secret is not None})

    async def series(request: Request) -> JSONResponse:
        return JSONResponse(await call(data.series, _stage(request), _int(request, "bucket_s", BUCKET_S, 1, 86400)))

    async def disagreements(request: Request) -> JSONResponse:
        return JSONResponse(await call(data.disagreements, _stage(request), _int(request, "limit", 50, 1, 1000)))

    async def promote(request: Request) -> JSONResponse:
        authorize(request)
        stage, body = _stage(request), await _body(request)
        force = bool(_field(body, "force", bool, False))
        reason = _field(body, "reason", str) or None
        if force and not reason:
            raise HTTPProblem(400, "force needs a reason: forced promotions are audited")
        return JSONResponse(await call(data.promote, stage, _field(body, "candidate", str) or None, force=force,
                                       reason=reason, actor=_actor(body)))

    async def rollback(request: Request) -> JSONResponse:
        authorize(request)
        stage, body = _stage(request), await _body(request)
        return JSONResponse(await call(data.rollback, stage, reason=_field(body, "reason", str) or None, actor=_actor(body)))

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPProblem)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status, headers=headers)

    routes = [
        Route("/", index),
        Route("/api/overview", overview),
        Route("/api/stages/{stage}/series", series),
        Route("/api/stages/{stage}/disagreements", disagreements),
        Route("/api/stages/{stage}/promote", promote, methods=["POST"]),
        Route("/api/stages/{stage}/rollback", rollback, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPProblem: problem})


def _actor(body: dict[str, Any]) -> str:
    """Who promoted, for the audit record: ``dashboard`` or ``dashboard:<name>`` if the page says."""
    name = _field(body, "actor", str)
    return f"dashboard:{name.strip()[:64]}" if name and name.strip() else "dashboard"


def serve(data: DashboardData, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve until interrupted. Binds first, so a taken port is one clear ConfigError, not a log line."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    # Access logs carry paths and statuses only, never headers: the token stays out of the logs.
    config = uvicorn.Config(create_app(data, token), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
