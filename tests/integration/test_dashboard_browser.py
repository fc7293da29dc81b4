"""The dashboard end to end: a real shadow pipeline on Kafka and Redis, the server in its own process,
and Debian's Chromium (headless, driven by Playwright) looking at it the way an ML engineer would.

Production, the classify mirror, the comparator and one candidate (a chaos wrapper that disagrees on
every 4th event) run as separate processes, as in ``test_shadow_kafka.py``. Screenshots are kept in
``test-artifacts/`` (git-ignored). A missing browser fails the test: it is a broken environment.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadow.registry import Registry
from shadow.stats_store import RedisStats
from shadowline.config import REPO_ROOT, get_settings
from shadowline.localinfra import free_port
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import end_offsets, read
from tests.integration.workers import WorkerProcess, worker_env

pytestmark = pytest.mark.timeout(900)

CODEC = SingleObjectCodec()
TOPICS = Topics("dash.")
STAGE, CANDIDATE = "classify", "chaos@1"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SHADOWLINE_CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
TOKEN = "dash-" + uuid.uuid4().hex
QUESTIONS = [r["text"] for r in csv.DictReader(open(get_settings().samples_dir / "training" / "topics.csv"))][::3][:80]
PIPELINE = {"stages": {
    "context": {"active": {"name": "extractive"}},
    "validate": {"active": {"name": "tfidf-logreg"}},
    "classify": {
        "active": {"name": "tfidf-logreg", "version": "1"},
        "candidates": [{"name": "chaos", "version": "1", "config": {"wraps": {"name": "tfidf-logreg"}, "disagree_every": 4}}],
        "mirror_rate": 1.0,
        "gates": {"max_latency_ratio": 3.0},  # min_samples stays 200: 80 questions cannot pass it
    },
    "retrieve": {"active": {"name": "faiss"}},
    "generate": {"active": {"name": "extractive"}},
    "tone": {"active": {"name": "rules"}},
    "guardrail": {"active": {"name": "sliding-window"}},
}}
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_or_fail():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; the browser test needs Debian's chromium: {INSTALL}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]'", pytrace=False)
    return sync_playwright


class Dashboard(WorkerProcess):
    """`shadowline dashboard` in its own process on a free port."""

    def __init__(self, env: dict[str, str], log: Path, token: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in env.items() if k != "SHADOWLINE_DASHBOARD_TOKEN"}
        if token:
            env["SHADOWLINE_DASHBOARD_TOKEN"] = token  # by env, as documented: argv shows in `ps`
        super().__init__(["dashboard", "--port", str(self.port)], env, log)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.alive(), self.output()
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as res:
                    if res.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("dashboard did not start:\n" + self.output())

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=60) as res:
            return json.loads(res.read())


@pytest.fixture(scope="module", autouse=True)
def browser_installed():
    """Checked first, so a machine without Chromium fails at once with the install command."""
    return _browser_or_fail()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap, redis_url, tmp_path_factory):
    """The shadow pipeline with ~80 questions compared and feedback for two thirds of them."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # a clean registry: this module seeds its own pipeline
    home = tmp_path_factory.mktemp("dashboard-home")
    (home / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE))
    ensure_topics(kafka_bootstrap, TOPICS.specs(), partitions=3)
    env = worker_env(kafka_bootstrap, redis_url, home, SHADOWLINE_TOPIC_PREFIX=TOPICS.prefix,
                     SHADOWLINE_PIPELINE_CONFIG=str(home / "pipeline.yaml"))
    procs = {
        "production": WorkerProcess(["worker"], env, home / "production.log"),
        "mirror": WorkerProcess(["shadow", "mirror", STAGE], env, home / "mirror.log"),
        "compare": WorkerProcess(["shadow", "compare", STAGE, "--window-s", "10"], env, home / "compare.log"),
        "candidate": WorkerProcess(["shadow", "run", STAGE, "--candidate", CANDIDATE], env, home / "candidate.log"),
    }
    try:
        tag = uuid.uuid4().hex[:6]
        now = int(time.time() * 1000)
        batch = [ConversationEvent(f"d{tag}-{i}-t0", f"d{tag}-{i}", "customer", q, now + i) for i, q in enumerate(QUESTIONS)]
        ids = {e.event_id for e in batch}
        start = end_offsets(kafka_bootstrap, [TOPICS.suggestions, TOPICS.escalations])
        with Publisher(kafka_bootstrap, CODEC, TOPICS) as pub:
            for e in batch:
                pub.publish_event(e)
        results: dict[str, dict] = {}
        for topic, rec in read(kafka_bootstrap, start, CODEC, TOPICS.record_of, timeout_s=240,
                               stop=lambda: ids <= set(results) or any(not p.alive() for p in procs.values())):
            if rec.get("event_id") in ids:
                results[rec["event_id"]] = {**rec, "_topic": topic}
        for name, p in procs.items():
            assert p.alive(), f"{name} died:\n{p.output()[-3000:]}"
        assert ids <= set(results), f"{len(ids - set(results))} of {len(ids)} events got no production result"

        # The agent's side: accepted (the suggestion itself), edited, or nothing, for each event in turn.
        with Publisher(kafka_bootstrap, CODEC, TOPICS) as pub:
            for i, e in enumerate(batch):
                if i % 3 == 2:
                    continue
                r = results[e.event_id]
                text = r["text"] if r["_topic"] == TOPICS.suggestions and i % 3 == 0 else f"Thanks for asking! Let me check that for you ({i})."
                pub.publish_feedback({
                    "feedback_id": f"fb-{e.event_id}", "conversation_id": e.conversation_id, "event_id": e.event_id,
                    "suggestion_id": None, "sent_text": text, "action": "accepted" if i % 3 == 0 else "edited",
                    "agent_id": "agent-7", "ts_ms": int(time.time() * 1000),
                })

        reached = [eid for eid, r in results.items() if any(run["stage"] == STAGE for run in r["turn"]["trace"])]
        stats = RedisStats(redis_url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = stats.load(STAGE, CANDIDATE)
            if s.samples + s.candidate_errors >= len(reached) and s.prod_total >= len(reached) // 2:
                break
            time.sleep(0.5)
        yield {"env": env, "home": home, "reached": reached, "stats": stats.load(STAGE, CANDIDATE),
               "registry": Registry(redis_url)}
    finally:
        for p in procs.values():
            p.stop()


@pytest.fixture(scope="module")
def dashboard(pipeline):
    d = Dashboard(pipeline["env"], pipeline["home"] / "dashboard.log", TOKEN)
    yield d
    d.stop()
    assert TOKEN not in d.log.read_text(errors="replace"), "the token was printed"


@pytest.fixture(scope="module")
def browser(browser_installed, tmp_path_factory):
    sync_playwright = browser_installed
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=BROWSER_ARGS, viewport={"width": 1440, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def open_page(context, url: str):
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())  # the confirm() before promote / rollback
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return page, errors


def test_pipeline_measured_the_candidate(pipeline):
    s = pipeline["stats"]
    assert len(pipeline["reached"]) >= 60 and s.samples >= len(pipeline["reached"]) - 2
    assert 0.6 <= s.agreement <= 0.85, s.agreement  # every 4th event altered


def test_page_shows_versions_agreement_charts_and_disagreements(pipeline, dashboard, browser):
    page, errors = open_page(browser, dashboard.url)
    section = page.locator(f'section.stage[data-stage="{STAGE}"]')
    section.wait_for(timeout=30_000)
    page.wait_for_selector(f'section.stage[data-stage="{STAGE}"] .chart-agreement canvas', timeout=60_000)
    page.wait_for_selector(f'section.stage[data-stage="{STAGE}"] tr.disagreement', timeout=60_000)

    # Versions and a numeric agreement matching the statistics store.
    assert section.locator(".active-ref").inner_text() == "tfidf-logreg@1"
    row = section.locator(f'tr.candidate[data-ref="{CANDIDATE}"]')
    assert row.locator(".candidate-ref").inner_text() == CANDIDATE
    shown = row.locator(".agreement-value").inner_text()
    assert re.fullmatch(r"\d{1,3}\.\d%", shown), shown
    assert float(shown[:-1]) == pytest.approx(pipeline["stats"].agreement * 100, abs=5)  # may have moved on since
    assert int(row.locator(".samples").inner_text()) >= len(pipeline["reached"]) - 2
    assert row.locator(".gate.fail", has_text="min_samples").count() == 1

    # Charts drawn (uPlot canvases) from the series the page fetched, which has real points.
    for chart in ("chart-agreement", "chart-volume"):
        box = section.locator(f".{chart}")
        assert box.locator("canvas").count() >= 1 and int(box.get_attribute("data-points")) > 0
    series = page.evaluate(f"fetch('/api/stages/{STAGE}/series').then(r => r.json())")
    (cand,) = [c for c in series["candidates"] if c["candidate"] == CANDIDATE]
    assert cand["points"] and sum(p["n"] for p in cand["points"]) >= len(pipeline["reached"]) - 2
    assert all(p["low"] <= p["share"] <= p["high"] for p in cand["points"])
    assert any(p["outcomes"] for p in cand["points"]) and any(p["prod_match_rate"] for p in cand["points"])

    # Disagreements side by side, with what the agent sent where the agent answered.
    rows = section.locator("tr.disagreement")
    assert rows.count() >= 1
    cells = [[c.inner_text() for c in rows.nth(i).locator("td").all()] for i in range(rows.count())]
    for when, ref, asked, prod, cand_out, sent in cells:
        assert ref == CANDIDATE and prod.startswith("topic: ") and cand_out.startswith("topic: ") and prod != cand_out
        assert asked and "not in the recent answers" not in asked
    assert any("no feedback yet" not in sent for *_, sent in cells)
    assert page.locator("#mode").inner_text() == "promotions enabled"
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    assert not errors, errors


def test_without_a_token_the_page_is_read_only(pipeline, browser):
    """Runs before the promotion test, while classify still has its candidate on the page."""
    d = Dashboard(pipeline["env"], pipeline["home"] / "dashboard-ro.log", None)
    try:
        page, errors = open_page(browser, d.url)
        assert page.locator("#mode").inner_text() == "read-only"
        assert page.locator("#auth").is_hidden()
        assert page.locator("button.promote").count() == 0 and page.locator("button.rollback").count() == 0
        status = page.evaluate(f"fetch('/api/stages/{STAGE}/rollback', {{method: 'POST'}}).then(r => r.status)")
        assert status == 403
        page.screenshot(path=str(ARTIFACTS / "dashboard-read-only.png"), full_page=True)
        assert not errors, errors
    finally:
        d.stop()


def test_promote_refused_then_forced_then_rolled_back_from_the_page(pipeline, dashboard, browser):
    registry = pipeline["registry"]
    page, errors = open_page(browser, dashboard.url)
    row = page.locator(f'section.stage[data-stage="{STAGE}"] tr.candidate[data-ref="{CANDIDATE}"]')
    message = page.locator("#message")

    page.fill("#token", "not-the-token")
    row.locator("button.promote").click()
    page.wait_for_function("document.querySelector('#message').textContent.includes('token')", timeout=30_000)
    assert "missing or wrong bearer token" in message.inner_text()

    page.fill("#token", TOKEN)
    row.locator("button.promote").click()
    page.wait_for_function("document.querySelector('#message').textContent.includes('refused')", timeout=120_000)
    text = message.inner_text()
    assert "min_samples" in text and "agreement" in text, text
    assert registry.active(STAGE).name == "tfidf-logreg"
    page.screenshot(path=str(ARTIFACTS / "dashboard-promotion-refused.png"), full_page=True)

    row.locator("input[type=checkbox]").check()
    row.locator("input[type=text]").fill("browser test: forced on purpose")
    row.locator("button.promote").click()
    page.wait_for_function("document.querySelector('#message').textContent.startsWith('promoted')", timeout=120_000)
    assert "forced past failing gates" in message.inner_text()
    assert (registry.active(STAGE).name, registry.active(STAGE).version) == ("chaos", "1")
    rollback = page.locator(f'#actives tr[data-stage="{STAGE}"] button.rollback')
    rollback.wait_for(timeout=30_000)
    assert page.locator(f'#actives tr[data-stage="{STAGE}"] td').nth(1).inner_text() == CANDIDATE
    page.screenshot(path=str(ARTIFACTS / "dashboard-promoted.png"), full_page=True)

    rollback.click()
    page.wait_for_function("document.querySelector('#message').textContent.startsWith('rolled back')", timeout=60_000)
    assert (registry.active(STAGE).name, registry.active(STAGE).version) == ("tfidf-logreg", "1")
    assert "chaos@1 → tfidf-logreg@1" in message.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-rolled-back.png"), full_page=True)
    assert not errors, errors

    # Both went to the audit log, with who and why.
    kafka = pipeline["env"]["SHADOWLINE_KAFKA_BOOTSTRAP"]
    start = {tp: 0 for tp in end_offsets(kafka, [TOPICS.promotions])}
    audit = [r for _, r in read(kafka, start, CODEC, TOPICS.record_of, timeout_s=20, idle_s=3)]
    assert [(r["action"], r["actor"], r["forced"]) for r in audit] == [("promote", "dashboard", True), ("rollback", "dashboard", False)]
    assert audit[0]["reason"] == "browser test: forced on purpose" and {g["name"] for g in audit[0]["gates"]} >= {"min_samples", "agreement"}
