"""The dashboard's HTTP API over an in-memory data source: routes, JSON shapes, auth and error statuses.

A real uvicorn server runs on a loopback port in a thread; the data source is a fake built from the
same pure view functions the live source uses, so no Redis or Kafka is needed.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
import uvicorn

from agents.base import ComponentSpec
from schemas.topics import STAGES, Topics
from shadow.gates import evaluate, verdict
from shadow.promotion import Decision, PromotionRefused
from shadow.stats import ShadowStats
from shadowline.dashboard.data import (
    EventInfo, agreement_series, decision_view, disagreement_rows, event_info, spec_view,
)
from shadowline.dashboard.server import create_app
from shadowline.errors import ConfigError, StoreError
from shadowline.localinfra import free_port

TOKEN = "s3cret-token-for-tests"
ACTIVE = ComponentSpec("classify", "tfidf-logreg", "1")
GOOD = ComponentSpec("classify", "tfidf-logreg", "2", {"C": 3.0})
BAD = ComponentSpec("classify", "chaos", "1")


def stats(spec: ComponentSpec, samples: int, agree: int) -> ShadowStats:
    return ShadowStats("classify", "tfidf-logreg@1", f"{spec.name}@{spec.version}", samples=samples, agree=agree,
                       production_latency_ms=(1.0, 1.2, 1.4), candidate_latency_ms=(1.1, 1.3, 1.5))


def decision(spec: ComponentSpec, s: ShadowStats) -> Decision:
    gates = evaluate(s)
    passed, failing = verdict(gates)
    return Decision("classify", spec, s, gates, passed, failing)


def comparison(i: int, agree: bool | None, created_ms: int, candidate: str = "chaos@1", status: str = "matched") -> dict[str, Any]:
    name, version = candidate.split("@")
    return {
        "event_id": f"e{i}", "conversation_id": f"c{i}", "stage": "classify", "status": status, "kind": "label",
        "agree": agree, "similarity": None if agree is None else float(agree),
        "production": {"name": "tfidf-logreg", "version": "1"}, "candidate": {"name": name, "version": version},
        "production_output": json.dumps({"topic": "payments", "confidence": 0.9}),
        "candidate_output": json.dumps({"topic": "payments" if agree else "shipping", "confidence": 0.5}),
        "created_ms": created_ms,
    }


class FakeData:
    """In-memory registry and records; promote/rollback behave like the Promoter on them."""

    def __init__(self) -> None:
        self.active = {"classify": ACTIVE}
        self.candidates = {"classify": {GOOD.name + "@" + GOOD.version: GOOD, BAD.name + "@" + BAD.version: BAD}}
        self.history: dict[str, list[ComponentSpec]] = {}
        self.stats = {"tfidf-logreg@2": stats(GOOD, 300, 298), "chaos@1": stats(BAD, 300, 240)}
        t0 = 1_700_000_000_000
        self.comparisons = [comparison(i, i % 5 != 0, t0 + i * 1000) for i in range(150)]
        self.info = {"e5": EventInfo(question="my card was declined", suggestion="Try again.", sent="Please retry the card.", action="edited")}
        self.calls: list[tuple[str, Any]] = []
        self.fail_reads: Exception | None = None

    def overview(self) -> dict[str, Any]:
        if self.fail_reads:
            raise self.fail_reads
        stages = []
        for stage in STAGES:
            cands = self.candidates.get(stage, {})
            stages.append({
                "stage": stage, "active": spec_view(self.active[stage]) if stage in self.active else None,
                "history": [spec_view(h) for h in self.history.get(stage, [])], "mirror_rate": 1.0,
                "candidates": [decision_view(decision(spec, self.stats[ref])) for ref, spec in sorted(cands.items())],
                "blocked_by": [],
            })
        return {"epoch": 1, "generated_ms": 1, "stages": stages}

    def series(self, stage: str, bucket_s: int = 60) -> dict[str, Any]:
        return {"stage": stage, "bucket_s": bucket_s, "records": len(self.comparisons),
                "candidates": agreement_series(stage, self.comparisons, self.info, lambda a, b: 1.0, bucket_s)}

    def disagreements(self, stage: str, limit: int = 50) -> dict[str, Any]:
        return {"stage": stage, "records": len(self.comparisons), "rows": disagreement_rows(self.comparisons, self.info, limit)}

    def promote(self, stage: str, candidate: str | None, *, force: bool, reason: str | None, actor: str) -> dict[str, Any]:
        self.calls.append(("promote", (stage, candidate, force, reason, actor)))
        spec = self.candidates.get(stage, {}).get(candidate or "")
        if spec is None:
            raise ConfigError(f"{stage}:{candidate} is not a registered candidate of {stage}")
        d = decision(spec, self.stats[candidate])
        if not d.passed and not force:
            raise PromotionRefused(f"promotion of {spec.ref} refused; failing gates: {d.explain()}", d)
        self.history.setdefault(stage, []).insert(0, self.active[stage])
        self.active[stage] = spec
        del self.candidates[stage][candidate]
        return {"stage": stage, "promoted": candidate, "passed": d.passed, "forced": force and not d.passed,
                "explain": d.explain(), "gates": [g.to_record() for g in d.gates]}

    def rollback(self, stage: str, *, reason: str | None, actor: str) -> dict[str, Any]:
        self.calls.append(("rollback", (stage, reason, actor)))
        if not self.history.get(stage):
            raise ConfigError(f"stage {stage} has no previous version to roll back to")
        replaced, self.active[stage] = self.active[stage], self.history[stage].pop(0)
        return {"stage": stage, "replaced": spec_view(replaced)["ref"], "restored": spec_view(self.active[stage])["ref"]}


@contextmanager
def running(data: FakeData, token: str | None) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(data, token), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None, raw: bytes | None = None) -> tuple[int, Any, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            text = res.read().decode()
            status, hdrs = res.status, dict(res.headers)
    except urllib.error.HTTPError as exc:
        text, status, hdrs = exc.read().decode(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


@pytest.fixture
def data() -> FakeData:
    return FakeData()


@pytest.fixture
def rw(data: FakeData) -> Iterator[str]:
    with running(data, TOKEN) as url:
        yield url


@pytest.fixture
def ro(data: FakeData) -> Iterator[str]:
    with running(data, None) as url:
        yield url


# -- reads ---------------------------------------------------------------------------------------
def test_page_and_vendored_assets_are_served_locally(ro):
    status, html, _ = call(ro + "/")
    assert status == 200 and "/static/app.js" in html and "/static/uPlot.iife.min.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN: the machine may have no internet
    for asset in ("app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css"):
        status, body, _ = call(f"{ro}/static/{asset}")
        assert status == 200 and len(body) > 100, asset
    status, lib, _ = call(ro + "/static/uPlot.iife.min.js")
    assert "MIT License" in lib and "Leon Sorokin" in lib  # the license header stays with the vendored file


def test_overview_has_versions_stats_gates_and_the_mode(ro, rw):
    status, ov, _ = call(ro + "/api/overview")
    assert status == 200 and ov["writable"] is False
    assert call(rw + "/api/overview")[1]["writable"] is True
    classify = next(s for s in ov["stages"] if s["stage"] == "classify")
    assert classify["active"]["ref"] == "tfidf-logreg@1"
    by_ref = {c["ref"]: c for c in classify["candidates"]}
    good, bad = by_ref["tfidf-logreg@2"], by_ref["chaos@1"]
    assert good["stats"]["agreement"] == pytest.approx(298 / 300)
    assert 0 < good["stats"]["agreement_low"] < good["stats"]["agreement"] < good["stats"]["agreement_high"] <= 1
    assert good["stats"]["candidate_p95_ms"] is not None and good["passed"] is True
    assert bad["passed"] is False and "agreement" in bad["failing"]
    assert {g["name"] for g in bad["gates"]} >= {"min_samples", "agreement", "latency", "error_rate", "missing"}


def test_series_buckets_per_minute_with_a_wilson_band(ro):
    status, series, _ = call(ro + "/api/stages/classify/series")
    assert status == 200 and series["bucket_s"] == 60
    (chaos,) = series["candidates"]
    points = chaos["points"]
    assert sum(p["n"] for p in points) == 150 and len(points) == 3  # 150 s of comparisons over 3 minutes
    for p in points:
        assert p["low"] <= p["share"] <= p["high"] and p["share"] == p["agree"] / p["n"]
    assert call(ro + "/api/stages/classify/series?bucket_s=10")[1]["candidates"][0]["points"][0]["n"] <= 10


def test_disagreements_show_both_outputs_and_what_the_agent_sent(ro):
    status, body, _ = call(ro + "/api/stages/classify/disagreements?limit=5")
    assert status == 200 and len(body["rows"]) == 5
    rows = body["rows"]
    assert [r["created_ms"] for r in rows] == sorted((r["created_ms"] for r in rows), reverse=True)
    assert all(r["production_output"]["topic"] == "payments" and r["candidate_output"]["topic"] == "shipping" for r in rows)
    full = call(ro + "/api/stages/classify/disagreements?limit=1000")[1]["rows"]
    assert len(full) == 30
    e5 = next(r for r in full if r["event_id"] == "e5")
    assert e5["agent_sent"] == "Please retry the card." and e5["question"] == "my card was declined"


@pytest.mark.parametrize("path", ["/api/stages/nope/series", "/api/stages/nope/disagreements"])
def test_unknown_stage_is_404(ro, path):
    status, body, _ = call(ro + path)
    assert status == 404 and "unknown stage" in body["error"]


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "bucket_s=-5"])
def test_bad_query_is_400(ro, query):
    path = "/api/stages/classify/series" if "bucket" in query else "/api/stages/classify/disagreements"
    assert call(f"{ro}{path}?{query}")[0] == 400


def test_unreachable_store_is_503_with_the_reason(data, ro):
    data.fail_reads = StoreError("registry: cannot read actives: Connection refused")
    status, body, _ = call(ro + "/api/overview")
    assert status == 503 and "Connection refused" in body["error"]


# -- writes and auth -----------------------------------------------------------------------------
def test_without_a_configured_token_writes_are_forbidden(data, ro):
    for path in ("/api/stages/classify/promote", "/api/stages/classify/rollback"):
        status, body, _ = call(ro + path, "POST", {"candidate": "tfidf-logreg@2"}, token="anything")
        assert status == 403 and "read-only" in body["error"]
    assert data.calls == []


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_missing_or_wrong_token_is_401(data, rw, token):
    status, body, headers = call(rw + "/api/stages/classify/promote", "POST", {"candidate": "tfidf-logreg@2"}, token=token)
    assert status == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
    assert TOKEN not in json.dumps(body)
    assert data.calls == []


def test_refused_promotion_is_409_with_the_failing_gates(data, rw):
    status, body, _ = call(rw + "/api/stages/classify/promote", "POST", {"candidate": "chaos@1"}, token=TOKEN)
    assert status == 409 and "refused" in body["error"]
    assert "agreement" in body["failing"]
    assert any(g["name"] == "agreement" and not g["passed"] for g in body["gates"])
    assert data.active["classify"] == ACTIVE


def test_passing_promotion_is_200_then_rollback_restores(data, rw):
    status, body, _ = call(rw + "/api/stages/classify/promote", "POST",
                           {"candidate": "tfidf-logreg@2", "actor": "ana"}, token=TOKEN)
    assert status == 200 and body["promoted"] == "tfidf-logreg@2" and body["passed"] is True
    assert data.calls[-1] == ("promote", ("classify", "tfidf-logreg@2", False, None, "dashboard:ana"))
    assert call(rw + "/api/overview")[1]["stages"][2]["active"]["ref"] == "tfidf-logreg@2"

    status, body, _ = call(rw + "/api/stages/classify/rollback", "POST", {"reason": "ticket 1"}, token=TOKEN)
    assert status == 200 and (body["replaced"], body["restored"]) == ("tfidf-logreg@2", "tfidf-logreg@1")
    assert data.calls[-1] == ("rollback", ("classify", "ticket 1", "dashboard"))


def test_forced_promotion_needs_a_reason(data, rw):
    url = rw + "/api/stages/classify/promote"
    status, body, _ = call(url, "POST", {"candidate": "chaos@1", "force": True}, token=TOKEN)
    assert status == 400 and "reason" in body["error"] and data.calls == []
    status, body, _ = call(url, "POST", {"candidate": "chaos@1", "force": True, "reason": "hotfix"}, token=TOKEN)
    assert status == 200 and body["forced"] is True and "agreement" in body["explain"]


@pytest.mark.parametrize("raw, needle", [(b"{not json", "not JSON"), (b"[1, 2]", "JSON object"),
                                         (b'{"force": "yes"}', "force must be a bool")])
def test_malformed_body_is_400(rw, raw, needle):
    status, body, _ = call(rw + "/api/stages/classify/promote", "POST", raw=raw, token=TOKEN)
    assert status == 400 and needle in body["error"]


def test_config_errors_from_the_promoter_are_400(rw):
    status, body, _ = call(rw + "/api/stages/classify/promote", "POST", {"candidate": "ghost@9"}, token=TOKEN)
    assert status == 400 and "not a registered candidate" in body["error"]
    status, body, _ = call(rw + "/api/stages/validate/rollback", "POST", {}, token=TOKEN)
    assert status == 400 and "no previous version" in body["error"]


def test_get_on_write_routes_is_405(rw):
    assert call(rw + "/api/stages/classify/promote")[0] == 405


# -- the pure views the live source builds -------------------------------------------------------
def test_event_info_joins_answers_and_feedback_and_redacts():
    t = Topics("x.")
    turn = {"event": {"text": "mail me at ana@example.com"}}
    records = [
        (t.suggestions, {"event_id": "a", "text": "Reply to ana@example.com", "turn": turn}),
        (t.escalations, {"event_id": "b", "turn": {"event": {"text": "help"}}}),
        (t.feedback, {"event_id": "a", "sent_text": "Sent to ana@example.com", "action": "edited"}),
        (t.feedback, {"event_id": None, "sent_text": "orphan", "action": "ignored"}),
    ]
    info = event_info(records, t, redact=lambda s: s.replace("ana@example.com", "[EMAIL]"))
    assert info["a"] == EventInfo("mail me at [EMAIL]", "Reply to [EMAIL]", False, "Sent to [EMAIL]", "edited")
    assert info["b"].escalated and info["b"].answered and info["b"].suggestion is None
    assert set(info) == {"a", "b"}


def test_series_scores_outcomes_like_the_comparator():
    sim = lambda a, b: 1.0 if a == b else 0.0  # noqa: E731
    label = [comparison(1, True, 60_000), comparison(2, False, 61_000), comparison(3, True, 62_000),
             comparison(4, None, 63_000), comparison(5, True, 64_000, status="missing_candidate")]
    info = {"e1": EventInfo("q", "hello", sent="hello"), "e2": EventInfo("q", None, True, sent="hello"),
            "e3": EventInfo("q", "hi")}  # e3: no feedback, so no outcome
    (point,) = agreement_series("classify", label, info, sim)[0]["points"]
    assert (point["n"], point["agree"], point["outcomes"]) == (3, 2, 2)  # errors and missing are not verdicts
    assert point["prod_match_rate"] == 0.5 and point["cand_match_rate"] is None

    draft = lambda text: json.dumps({"text": text})  # noqa: E731
    reply = [{**comparison(1, True, 60_000), "stage": "generate", "production_output": draft("hello"), "candidate_output": draft("bye")}]
    (point,) = agreement_series("generate", reply, {"e1": EventInfo(sent="hello")}, sim)[0]["points"]
    assert (point["prod_match_rate"], point["cand_match_rate"]) == (1.0, 0.0)


# -- the command ---------------------------------------------------------------------------------
def test_taken_port_is_one_config_error():
    import socket

    from shadowline.dashboard.server import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            serve(FakeData(), "127.0.0.1", busy.getsockname()[1], TOKEN)


def test_command_help_names_the_env_var_and_never_shows_the_token(monkeypatch):
    import typer
    from typer.testing import CliRunner

    from shadowline.cli.dashboard_cmd import register

    monkeypatch.setenv("SHADOWLINE_DASHBOARD_TOKEN", TOKEN)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    out = CliRunner().invoke(app, ["dashboard", "--help"]).output
    assert "--token" in out and "SHADOWLINE_DASHBOARD_TOKEN" in out and "8765" in out
    assert TOKEN not in out
