"""The confluent-kafka runtime (streams.kafka_loop) on a real broker and Redis: what at-least-once, clean
shutdown, rebalances and retryable errors promise, checked with real worker processes (the context stage)."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadowline.config import get_settings
from shadowline.localinfra import RedisNode, free_port
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import read
from tests.integration.workers import WorkerProcess, stop_all, worker_env

pytestmark = pytest.mark.integration
CODEC = SingleObjectCodec()


class Stage:
    """A context-stage worker group on topics of its own (a fresh prefix per test)."""

    def __init__(self, kafka: str, redis_url: str, home, **env: str) -> None:
        self.kafka, self.home = kafka, home
        self.topics = Topics(f"rt{uuid.uuid4().hex[:6]}.")
        ensure_topics(kafka, self.topics.specs(), partitions=3)
        self.env = worker_env(kafka, redis_url, home, SHADOWLINE_RUNTIME="kafka", SHADOWLINE_TOPIC_PREFIX=self.topics.prefix, **env)
        self.procs: list[WorkerProcess] = []
        self.start_offsets = {(self.topics.stage_out("context"), p): 0 for p in range(3)}

    def start(self, name: str, **env: str) -> WorkerProcess:
        proc = WorkerProcess(["worker", "context"], {**self.env, **env}, self.home / f"{name}.log")
        self.procs.append(proc)
        return proc

    def publish(self, events: list[ConversationEvent]) -> None:
        with Publisher(self.kafka, CODEC, self.topics) as pub:
            for e in events:
                pub.publish_event(e)

    def outputs(self, want: set[str] | None = None, timeout_s: float = 90.0, idle_s: float | None = None) -> list[str]:
        """Event ids on turns.context from the beginning, in arrival order, duplicates kept."""
        seen: list[str] = []
        stop = (lambda: want <= set(seen)) if want is not None else (lambda: False)
        for _, rec in read(self.kafka, self.start_offsets, CODEC, self.topics.record_of, stop=stop, timeout_s=timeout_s, idle_s=idle_s):
            seen.append(rec["event"]["event_id"])
        return seen


def events(n: int, tag: str, conversations: int = 20) -> list[ConversationEvent]:
    now = int(time.time() * 1000)
    return [ConversationEvent(f"{tag}-{i}", f"{tag}-c{i % conversations}", "customer", f"where is my order number {i}?", now + i)
            for i in range(n)]


@pytest.fixture
def stage(kafka_bootstrap, redis_url, tmp_path):
    s = Stage(kafka_bootstrap, redis_url, tmp_path)
    yield s
    stop_all(s.procs)


def test_a_killed_worker_loses_nothing_on_restart(stage):
    batch = events(3000, "kill")
    stage.publish(batch)
    first = stage.start("first")
    deadline = time.monotonic() + 90
    while not stage.outputs(timeout_s=2, idle_s=1) and time.monotonic() < deadline:
        assert first.alive(), first.output()[-2000:]
    first.proc.kill()  # SIGKILL: no commit, no clean leave
    first.wait_or_kill()
    done_at_kill = len(set(stage.outputs(timeout_s=5, idle_s=2)))
    assert done_at_kill < len(batch), "the worker finished before it was killed: nothing was tested"

    second = stage.start("second")
    seen = stage.outputs({e.event_id for e in batch}, timeout_s=120)
    assert second.alive(), second.output()[-2000:]
    assert set(seen) == {e.event_id for e in batch}  # none lost; redelivery after the crash is allowed


def test_clean_shutdown_and_rebalances_neither_lose_nor_repeat(stage):
    port = free_port()
    one = stage.start("one", SHADOWLINE_METRICS_PORT=str(port))
    first = events(200, "a")
    stage.publish(first)
    assert set(stage.outputs({e.event_id for e in first})) == {e.event_id for e in first}

    two = stage.start("two")  # joins the group: partitions are revoked from `one` (which commits) and shared
    second = events(200, "b")
    stage.publish(second)
    stage.outputs({e.event_id for e in first + second})

    # Metrics: messages handled per route, and the consumer lag of each assigned partition.
    deadline = time.monotonic() + 15
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if "shadowline_consumer_lag{" in text or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert 'shadowline_worker_messages_total{agent="stage-context"}' in text
    assert 'shadowline_consumer_lag{app="shadowline-context"' in text

    one.stop()  # SIGTERM: commits and leaves the group, `two` takes every partition
    assert one.proc.returncode == 0, one.output()[-2000:]
    third = events(200, "c")
    stage.publish(third)
    want = {e.event_id for e in first + second + third}
    seen = stage.outputs(want)
    time.sleep(2)
    seen = stage.outputs(timeout_s=10, idle_s=3)  # and anything that came late
    assert set(seen) == want
    assert len(seen) == len(want), "an event was handled twice across the rebalances and the shutdown"
    assert two.alive()


def test_redis_outage_blocks_the_partition_and_nothing_is_skipped(kafka_bootstrap, tmp_path):
    redis_node = RedisNode(get_settings().home, free_port(), tmp_path / "redis" / "data")
    redis_node.start()
    stage = Stage(kafka_bootstrap, redis_node.url, tmp_path)
    try:
        worker = stage.start("worker")
        before = events(5, "up", conversations=1)
        stage.publish(before)
        assert set(stage.outputs({e.event_id for e in before})) == {e.event_id for e in before}

        redis_node.stop()
        during = events(5, "down", conversations=1)
        stage.publish(during)
        time.sleep(4)
        assert worker.alive(), worker.output()[-2000:]
        ids = {e.event_id for e in during}
        assert not ids & set(stage.outputs(timeout_s=3, idle_s=2))  # blocked: neither handled nor escalated
        assert "partition blocked" in worker.output()

        redis_node.start()
        seen = [i for i in stage.outputs(ids, timeout_s=60) if i in ids]
        assert set(seen) == ids
        assert seen[:5] == [e.event_id for e in during]  # resumed at the failed event, in order
    finally:
        stop_all(stage.procs)
        redis_node.stop()
