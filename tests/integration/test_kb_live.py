"""The living KB on a real broker: changes published to kb.articles reach retrieval within seconds.

Two paths: the follower and retriever exactly as a worker builds them (``build`` -> ``shared_index``),
in this process, to time update-to-retrieval precisely; and a real worker process, with conversation
events going through context, validate, classify and retrieve, changed by `shadowline kb delete` and
`shadowline kb build` like an operator would. Each test has its own topic prefix, so its compacted
kb.articles log is its own.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from agents.base import ComponentSpec, Resources, build
from agents.records import ConversationEvent, Turn
from kb_index.articles import Article
from kb_index.index import KbIndex, current_version
from kb_index.live import ArticleChange, LiveKbIndex
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadowline.config import Settings
from streams.admin import ensure_topics
from streams.messages import now_ms
from streams.publisher import Publisher
from streams.reader import end_offsets, read
from tests.integration.workers import WorkerProcess, worker_env

pytestmark = pytest.mark.integration

CODEC = SingleObjectCodec()
BUDGET_S = 5.0
QUERY = "How long does a refund to my card take?"
NEW_ID = "kb-live-instant-refunds"
VOUCHER_Q = "can I pay with a zorblax gift voucher"
VOUCHER = Article("kb-live-vouchers", "Zorblax gift vouchers", "payments",
                  "## Paying with a voucher\nZorblax gift vouchers can pay for any order at checkout.")


def instant_refunds(minutes: int) -> Article:
    return Article(NEW_ID, "Instant refunds to your card", "refunds",
                   f"## How long a card refund takes\nWith Instant Refunds, a refund to your card takes {minutes} minutes.")


def send(pub: Publisher, topics: Topics, change: ArticleChange) -> None:
    pub.send(topics.kb_articles, "KbArticle", change.to_record(), change.article_id)
    pub.flush()


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"{name}: n={len(ms)} median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms"


def test_follower_serves_published_changes_within_seconds(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(f"kbf-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_bootstrap, [s for s in topics.specs() if s.name == topics.kb_articles], 1)
    with Publisher(kafka_bootstrap, CODEC, topics) as pub:  # before the "worker" starts: it must replay these
        send(pub, topics, ArticleChange.upsert(VOUCHER, now_ms()))
        pub.send_raw(topics.kb_articles, b"junk", b"not an avro record")
    resources = Resources(Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap, topic_prefix=topics.prefix))
    retriever = build(ComponentSpec("retrieve", "faiss"), resources)  # what a worker's retrieve stage builds
    follower = resources.get("kb_follower", lambda: None)
    try:
        assert isinstance(retriever.index, LiveKbIndex) and follower is not None
        assert (follower.applied, follower.bad) == (1, 1)  # replayed before serving; the junk only counted

        def retrieve(text: str) -> Any:
            return retriever.process(Turn.start(ConversationEvent("e", "c", "customer", text, 1), 1)).output

        assert retrieve(VOUCHER_Q).hits[0].article_id == VOUCHER.article_id
        assert retrieve(QUERY).hits[0].article_id != NEW_ID

        def wait(check: Callable[[Any], bool]) -> float:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < BUDGET_S:
                if check(retrieve(QUERY)):
                    return time.perf_counter() - t0
                time.sleep(0.002)
            raise AssertionError(f"not served within {BUDGET_S}s; follower {follower.__dict__}")

        updates, deletes, acked = [], [], []  # seconds from send to served; from send to acknowledged
        with Publisher(kafka_bootstrap, CODEC, topics) as pub:
            for minutes in range(1, 8):
                for change, check, into in (
                    (ArticleChange.upsert(instant_refunds(minutes), now_ms()),
                     lambda r, m=minutes: r.hits[0].article_id == NEW_ID and f"takes {m} minutes" in r.hits[0].text, updates),
                    (ArticleChange(NEW_ID, "delete", now_ms()), lambda r: all(h.article_id != NEW_ID for h in r.hits), deletes),
                ):
                    t0 = time.perf_counter()
                    send(pub, topics, change)
                    acked.append(time.perf_counter() - t0)
                    wait(check)
                    into.append(time.perf_counter() - t0)
        print("\nsend -> served by the retriever: " + summary("upsert", updates) + "; " + summary("delete", deletes)
              + "; " + summary("of which send -> acks=all flush", acked))
        assert max(updates + deletes) < BUDGET_S
        out = retrieve(QUERY)
        assert out.index_version == f"{retriever.index.base.version}+d{follower.position}" and follower.position == 16
        assert (follower.applied, follower.bad) == (15, 1)
    finally:
        follower.stop()


class Probes:
    """Asks the pipeline the same question as new conversations; collects what its retrieve stage served."""

    def __init__(self, bootstrap: str, topics: Topics, worker: WorkerProcess) -> None:
        self.bootstrap, self.topics, self.worker = bootstrap, topics, worker
        self.served: dict[str, tuple[int, dict[str, Any]]] = {}  # event_id -> (retrieve started_ms, Retrieval)
        self._stop = threading.Event()
        start = end_offsets(bootstrap, [topics.stage_out("retrieve"), topics.escalations])
        self._reader = threading.Thread(target=self._read, args=(start,), daemon=True)
        self._reader.start()
        self._pub = Publisher(bootstrap, CODEC, topics)

    def _read(self, start: dict) -> None:
        for topic, rec in read(self.bootstrap, start, CODEC, self.topics.record_of, stop=self._stop.is_set, timeout_s=900):
            turn = rec.get("turn", rec)  # escalations carry the turn; turns.retrieve is the turn
            runs = [r for r in turn.get("trace", ()) if r["stage"] == "retrieve"]
            if runs and turn.get("retrieve") and turn["event"]["conversation_id"].startswith("kbprobe-"):
                self.served[turn["event"]["event_id"]] = (runs[0]["started_ms"], turn["retrieve"])

    def ask(self) -> None:
        cid = f"kbprobe-{uuid.uuid4().hex[:10]}"
        self._pub.publish_event(ConversationEvent(f"{cid}-0", cid, "customer", QUERY, now_ms()))
        self._pub.flush()

    def send_change(self, change: ArticleChange) -> int:
        """Publish a KB change on the warmed-up producer; returns the wall ms just before sending."""
        t0 = now_ms()
        self._pub.send(self.topics.kb_articles, "KbArticle", change.to_record(), change.article_id)
        self._pub.flush()
        return t0

    def first(self, check: Callable[[dict[str, Any]], bool], since_ms: int, timeout_s: float,
              every_s: float = 0.1) -> tuple[int, int, dict[str, Any]]:
        """The earliest retrieval started after ``since_ms`` that passes ``check`` (all later ones must too):
        (start of the last one before it that failed the check, or since_ms; its start; its Retrieval)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.worker.alive(), self.worker.output()[-3000:]
            self.ask()
            time.sleep(every_s)
            after = sorted((s for s in list(self.served.values()) if s[0] >= since_ms), key=lambda s: s[0])
            hit = next((i for i, s in enumerate(after) if check(s[1])), None)
            if hit is not None:
                assert all(check(s[1]) for s in after[hit:]), after[hit:]
                return (after[hit - 1][0] if hit else since_ms), *after[hit]
        raise AssertionError(f"no retrieval passed the check within {timeout_s}s; log:\n{self.worker.output()[-3000:]}")

    def stop(self) -> None:
        self._stop.set()
        self._reader.join(10)
        self._pub.close()


def test_retrieve_stage_of_a_worker_follows_kb_changes_and_new_builds(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    topics = Topics(f"kbw-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_bootstrap, topics.specs(), 1)
    home = tmp_path / "home"
    env = worker_env(kafka_bootstrap, redis_url, home, SHADOWLINE_TOPIC_PREFIX=topics.prefix)
    worker = WorkerProcess(["worker", "context", "validate", "classify", "retrieve"], env, home / "worker.log")
    probes = Probes(kafka_bootstrap, topics, worker)
    try:
        _, _, first = probes.first(lambda r: True, 0, timeout_s=240, every_s=2.0)  # the worker is up
        base = first["index_version"]
        assert "+d" not in base and first["hits"][0]["article_id"] != NEW_ID

        sent = probes.send_change(ArticleChange.upsert(instant_refunds(3), now_ms()))
        stale, fresh, served = probes.first(lambda r: r["hits"][0]["article_id"] == NEW_ID, sent, BUDGET_S + 5)
        assert "takes 3 minutes" in served["hits"][0]["text"] and served["index_version"] == f"{base}+d1"
        assert fresh - sent < BUDGET_S * 1000
        upsert = f"upsert served between {stale - sent} and {fresh - sent} ms after it was sent"

        started = now_ms()
        cli = subprocess.run([sys.executable, "-m", "shadowline", "kb", "delete", NEW_ID], env=env,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        done = now_ms()
        _, fresh, served = probes.first(lambda r: all(h["article_id"] != NEW_ID for h in r["hits"]), started, BUDGET_S + 5)
        assert served["index_version"] == f"{base}+d2" and fresh - done < BUDGET_S * 1000
        delete = f"`kb delete` served by {fresh - started} ms after the CLI started ({done - started} ms to run it)"

        cli = subprocess.run([sys.executable, "-m", "shadowline", "kb", "build", "--max-words", "60"], env=env,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        built = now_ms()
        new = current_version(home / "kb")
        assert new and new != base
        _, swapped, served = probes.first(lambda r: r["index_version"].split("+")[0] == new, built, 20)
        chunks = {c.chunk_id: c.text for c in KbIndex.load(home / "kb", new).chunks}
        assert all(chunks[h["chunk_id"]] == h["text"] for h in served["hits"])  # served from the new build
        print(f"\nworker retrieve stage: {upsert}; {delete}; new `kb build` served {swapped - built} ms after it returned")
    finally:
        probes.stop()
        worker.stop()
