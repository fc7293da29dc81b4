"""`shadowline grafana push`: upload the repository's dashboards to a running Grafana over its HTTP API.

Docker Compose provisions the dashboards from files; this command is for a Grafana that shadowline does
not start (a shared or hosted one). It creates the folder when missing and upserts every dashboard by
its ``uid`` (``overwrite=True``), so pushing twice leaves one copy of each, at the latest version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import typer

from shadowline.errors import ConfigError, TransportError

DEFAULT_DIR = Path("infra/grafana/dashboards")
# The same folder name as infra/grafana/provisioning/dashboards/shadowline.yml, so a Grafana that is
# both provisioned and pushed to keeps one folder.
DEFAULT_FOLDER = "shadowline"
_REPO_DIR = Path(__file__).resolve().parents[2] / DEFAULT_DIR
_T = TypeVar("_T")


@dataclass(frozen=True)
class Pushed:
    """One dashboard Grafana accepted: where it lives now."""

    file: str
    uid: str
    title: str
    url: str
    version: int | None


def load_dashboards(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` dashboard in ``directory``, sorted by file name; a bad file is a ConfigError.

    Files hold the bare dashboard object (what file provisioning reads), never the API's
    ``{"dashboard": ...}`` envelope; the envelope is added when pushing.
    """
    if not directory.is_dir():
        raise ConfigError(f"--dir {directory}: no such directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConfigError(f"--dir {directory}: no *.json dashboards in it")
    loaded, uids = [], {}
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
        if not isinstance(data, dict) or not data.get("uid") or not data.get("title"):
            raise ConfigError(f"{path} is not a dashboard: it needs a top-level object with uid and title")
        if data["uid"] in uids:
            raise ConfigError(f"{path} and {uids[data['uid']]} share the uid {data['uid']!r}")
        uids[data["uid"]] = path
        loaded.append((path, data))
    return loaded


def _one_line(exc: BaseException) -> str:
    """Grafana's message, or the root network cause, on one line (niquests nests several)."""
    message = getattr(exc, "message", None) or str(exc)
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not getattr(exc, "status_code", 0):
        if isinstance(cause, OSError) and cause.strerror:
            message = cause.strerror
        cause = cause.__cause__ or cause.__context__
    message = " ".join(str(message).split())
    # urllib3's "Max retries exceeded ... (Caused by NewConnectionError('<object at 0x..>: reason'))"
    nested = re.search(r"Caused by \w+\(['\"](?:<[^>]*>: )?(.*)", message)
    if nested:
        message = re.sub(r"['\"]\)*$", "", nested.group(1))
    return message[:300]


class GrafanaPusher:
    """Folder lookup or creation and dashboard upserts, with grafana-client's errors mapped at this edge."""

    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        from grafana_client import GrafanaApi

        self.url = url.rstrip("/")
        # grafana-client appends "api" to the URL's path as is: a sub-path needs its trailing slash.
        self.api = GrafanaApi.from_url(self.url + "/", credential=token, timeout=timeout_s)

    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        from grafana_client.client import GrafanaException, GrafanaUnauthorizedError
        from niquests.exceptions import RequestException

        try:
            return fn(*args, **kwargs)
        except GrafanaUnauthorizedError as exc:
            raise TransportError(f"Grafana at {self.url} refused the token (401) while trying to {what}") from exc
        except GrafanaException as exc:
            raise TransportError(f"Grafana at {self.url} failed to {what}: {_one_line(exc)}") from exc
        except (RequestException, ValueError) as exc:  # ValueError: a body that is not JSON (not Grafana?)
            raise TransportError(f"cannot reach Grafana at {self.url} to {what}: {_one_line(exc)}") from exc

    def ensure_folder(self, title: str) -> str:
        """The uid of the top-level folder named ``title``, created when there is none."""
        folders = self._call("list folders", self.api.folder.get_all_folders)
        for folder in folders or []:
            if isinstance(folder, dict) and folder.get("title") == title:
                return str(folder["uid"])
        created = self._call(f"create folder {title!r}", self.api.folder.create_folder, title, uid=_slug(title))
        return str(created["uid"])

    def push(self, path: Path, dashboard: dict[str, Any], folder_uid: str) -> Pushed:
        """Upsert one dashboard by uid: ``id`` is dropped (ids are per Grafana instance), overwrite wins."""
        body = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": f"shadowline grafana push ({path.name})",
        }
        result = self._call(f"save dashboard {dashboard['uid']!r}", self.api.dashboard.update_dashboard, body)
        if not isinstance(result, dict):
            raise TransportError(f"Grafana at {self.url} answered saving {dashboard['uid']!r} with {result!r}")
        return Pushed(path.name, str(result.get("uid", dashboard["uid"])), str(dashboard["title"]),
                      self._absolute(str(result.get("url", f"/d/{dashboard['uid']}"))), result.get("version"))

    def _absolute(self, url: str) -> str:
        """Grafana answers a path that already holds its sub-path when it serves from one."""
        if not url.startswith("/"):
            return url
        parts = urlsplit(self.url)
        origin, prefix = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        return origin + url if not prefix or url.startswith(prefix + "/") else origin + prefix + url


def _slug(title: str) -> str:
    """A folder uid from its title: Grafana allows letters, digits, '-' and '_', 40 at most."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", title).strip("-")[:40] or "shadowline"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url must be an http(s) URL such as http://localhost:3000, not {url!r}")
    try:
        parts.port
    except ValueError as exc:
        raise ConfigError(f"--url {url!r}: {exc}") from exc
    return url


def push(
    url: str = typer.Option(..., "--url", envvar="GRAFANA_URL", help="Grafana's base URL, e.g. http://localhost:3000."),
    token: str = typer.Option(..., "--token", envvar="GRAFANA_TOKEN",
                              help="A service account token with dashboard write access (or set GRAFANA_TOKEN)."),
    folder: str = typer.Option(DEFAULT_FOLDER, "--folder", help="Folder title; created when missing."),
    directory: Path = typer.Option(DEFAULT_DIR, "--dir", help="Directory of dashboard JSON files."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for each HTTP request."),
) -> None:
    """Create the folder if missing and upsert every dashboard in --dir; print each one's URL."""
    _check_url(url)
    if not token.strip():
        raise ConfigError("--token is empty")
    if not folder.strip():
        raise ConfigError("--folder is empty")
    if timeout <= 0:
        raise ConfigError(f"--timeout must be positive, not {timeout}")
    if directory == DEFAULT_DIR and not directory.is_dir() and _REPO_DIR.is_dir():
        directory = _REPO_DIR  # run from outside the checkout: the dashboards shipped beside the package
    dashboards = load_dashboards(directory)
    pusher = GrafanaPusher(url, token.strip(), timeout)
    folder_uid = pusher.ensure_folder(folder.strip())
    for path, dashboard in dashboards:
        done = pusher.push(path, dashboard, folder_uid)
        version = f" v{done.version}" if done.version is not None else ""
        typer.echo(f"{done.file}: {done.title!r} -> {done.url}{version}")


def register(app: typer.Typer) -> None:
    grafana = typer.Typer(help="Grafana dashboards: push them to a running Grafana.", no_args_is_help=True)
    grafana.command("push")(push)
    app.add_typer(grafana, name="grafana")
