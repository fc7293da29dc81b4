"""`shadowline grafana push` against a real HTTP server speaking the few Grafana API calls it makes.

The server runs in a thread on a loopback port and records every request, so the tests see the bytes
grafana-client actually sent (auth header, folder creation, the /api/dashboards/db envelope), not a mock.
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shadowline.cli import grafana_cmd
from shadowline.errors import ConfigError, TransportError

REPO_DASHBOARDS = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboards"
TOKEN = "glsa_test_token"


class FakeGrafana(ThreadingHTTPServer):
    """GET/POST /api/folders and POST /api/dashboards/db, with Bearer auth, recording what arrives."""

    daemon_threads = True

    def __init__(self, folders: list[dict] | None = None, fail_dashboards: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folders = list(folders or [])
        self.fail_dashboards = fail_dashboards
        self.requests: list[dict] = []
        self.dashboards: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.server.requests.append({"method": method, "path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(401, {"message": "Unauthorized"})
        path = self.path.split("?")[0]
        if (method, path) == ("GET", "/api/folders"):
            return self._reply(200, self.server.folders)
        if (method, path) == ("POST", "/api/folders"):
            folder = {"id": len(self.server.folders) + 1, "uid": body.get("uid") or "generated", "title": body["title"]}
            self.server.folders.append(folder)
            return self._reply(200, folder)
        if (method, path) == ("POST", "/api/dashboards/db"):
            if self.server.fail_dashboards:
                return self._reply(self.server.fail_dashboards, {"message": "Dashboard title cannot be empty", "status": "empty-name"})
            dash = body["dashboard"]
            version = self.server.dashboards.get(dash["uid"], {}).get("version", 0) + 1
            self.server.dashboards[dash["uid"]] = {"version": version, "body": body}
            slug = dash["title"].lower().replace(":", "").replace(" ", "-")
            return self._reply(200, {"id": 7, "uid": dash["uid"], "url": f"/d/{dash['uid']}/{slug}",
                                     "status": "success", "version": version, "slug": slug})
        return self._reply(404, {"message": "Not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def grafana(request):
    params = getattr(request, "param", {})
    server = FakeGrafana(**params)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)


def _app() -> typer.Typer:
    app = typer.Typer()
    grafana_cmd.register(app)
    return app


def _push(*args: str):
    return CliRunner().invoke(_app(), ["grafana", "push", *args])


def _main(monkeypatch, argv: list[str]) -> int:
    """Run through the real entry point's error handling, with only this command registered."""
    main_mod = importlib.import_module("shadowline.cli.main")  # the package re-exports main(), shadowing it

    monkeypatch.setattr(main_mod, "app", _app())
    monkeypatch.setattr(main_mod, "_registered", True)
    return main_mod.main(argv)


def test_push_creates_the_folder_and_upserts_every_dashboard(grafana):
    result = _push("--url", grafana.url, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    files = sorted(REPO_DASHBOARDS.glob("*.json"))
    assert len(files) >= 3

    assert all(r["auth"] == f"Bearer {TOKEN}" for r in grafana.requests)
    calls = [(r["method"], r["path"].split("?")[0]) for r in grafana.requests]
    assert calls[:2] == [("GET", "/api/folders"), ("POST", "/api/folders")]
    assert calls[2:] == [("POST", "/api/dashboards/db")] * len(files)
    assert grafana.requests[1]["body"] == {"title": "shadowline", "uid": "shadowline"}

    for request, path in zip(grafana.requests[2:], files):
        sent, on_disk = request["body"], json.loads(path.read_text())
        assert sent["folderUid"] == "shadowline" and sent["overwrite"] is True
        assert sent["dashboard"] == {**on_disk, "id": None}  # the file's JSON, unchanged but for the instance id
        assert path.name in sent["message"]

    lines = result.output.strip().splitlines()
    assert len(lines) == len(files)
    for line, path in zip(lines, files):
        uid = json.loads(path.read_text())["uid"]
        assert line.startswith(f"{path.name}: ") and f"-> {grafana.url}/d/{uid}/" in line and line.endswith(" v1")


@pytest.mark.parametrize("grafana", [{"folders": [{"id": 3, "uid": "abc123", "title": "shadowline"}]}], indirect=True)
def test_push_reuses_an_existing_folder_and_pushing_twice_overwrites(grafana, tmp_path):
    (tmp_path / "one.json").write_text(json.dumps({"uid": "one", "title": "One", "panels": [], "schemaVersion": 39}))
    for expected_version in (1, 2):
        result = _push("--url", grafana.url + "/", "--token", TOKEN, "--dir", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"one.json: 'One' -> {grafana.url}/d/one/one v{expected_version}"
    assert not any(r["method"] == "POST" and r["path"] == "/api/folders" for r in grafana.requests)
    saved = [r["body"] for r in grafana.requests if r["path"] == "/api/dashboards/db"]
    assert [b["folderUid"] for b in saved] == ["abc123", "abc123"]
    assert all(b["overwrite"] is True and b["dashboard"]["uid"] == "one" for b in saved)


def test_token_can_come_from_the_environment(grafana, monkeypatch, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"uid": "d", "title": "D"}))
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    result = _push("--url", grafana.url, "--dir", str(tmp_path), "--folder", "ops team")
    assert result.exit_code == 0, result.output
    assert grafana.requests[1]["body"] == {"title": "ops team", "uid": "ops-team"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_grafana_is_one_line_and_exit_2(monkeypatch, capsys):
    url = f"http://127.0.0.1:{_free_port()}"  # bound then closed: nothing listens there
    code = _main(monkeypatch, ["grafana", "push", "--url", url, "--token", TOKEN, "--timeout", "3"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"error: cannot reach Grafana at {url} to list folders: Connection refused"
    assert "Traceback" not in err


def test_unreachable_grafana_raises_transport_error(monkeypatch):
    result = _push("--url", f"http://127.0.0.1:{_free_port()}", "--token", TOKEN)
    assert isinstance(result.exception, TransportError)


def test_wrong_token_is_one_line_and_exit_2(grafana, monkeypatch, capsys):
    code = _main(monkeypatch, ["grafana", "push", "--url", grafana.url, "--token", "wrong"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == f"error: Grafana at {grafana.url} refused the token (401) while trying to list folders"
    assert "wrong" not in err  # the token is never echoed


@pytest.mark.parametrize("grafana", [{"fail_dashboards": 400}, {"fail_dashboards": 500}], indirect=True)
def test_grafana_refusing_a_dashboard_is_one_line_and_exit_2(grafana, monkeypatch, capsys):
    code = _main(monkeypatch, ["grafana", "push", "--url", grafana.url, "--token", TOKEN])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: Grafana at {grafana.url} failed to save dashboard ")
    assert "Dashboard title cannot be empty" in err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--url", "localhost:3000"], "--url must be an http(s) URL"),
        (["--url", "http://localhost:3000", "--dir", "/definitely/missing"], "--dir /definitely/missing: no such directory"),
        (["--url", "http://localhost:3000", "--timeout", "0"], "--timeout must be positive"),
        (["--url", "http://localhost:3000", "--folder", " "], "--folder is empty"),
        (["--token", TOKEN], "--url"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, needle, monkeypatch, capsys):
    argv = ["grafana", "push", *args] + ([] if "--token" in args else ["--token", TOKEN])
    assert _main(monkeypatch, argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "is not JSON"),
        ('{"dashboard": {"uid": "x", "title": "X"}}', "is not a dashboard"),
        ('[1, 2]', "is not a dashboard"),
    ],
)
def test_bad_dashboard_files_are_config_errors(tmp_path, content, needle):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ConfigError, match=needle):
        grafana_cmd.load_dashboards(tmp_path)


def test_duplicate_uids_and_empty_dirs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no \\*.json dashboards"):
        grafana_cmd.load_dashboards(tmp_path)
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps({"uid": "same", "title": name}))
    with pytest.raises(ConfigError, match="share the uid 'same'"):
        grafana_cmd.load_dashboards(tmp_path)


def test_dashboard_urls_keep_grafanas_sub_path():
    pusher = grafana_cmd.GrafanaPusher("http://example.test/grafana", TOKEN)
    assert pusher.api.client.url == "http://example.test/grafana/api"
    assert pusher._absolute("/grafana/d/x/y") == "http://example.test/grafana/d/x/y"
    assert pusher._absolute("/d/x/y") == "http://example.test/grafana/d/x/y"
