"""The production pipeline end to end on a real broker: workers, Redis history, dead letters.

Every test here runs under both worker runtimes (the confluent-kafka loop, the default, and faust-streaming);
the other integration modules use the runtime SHADOWLINE_RUNTIME names (kafka by default)."""

from __future__ import annotations

import time
import uuid

import pytest

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import STAGES, Topics
from shadowline.config import Settings
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import end_offsets, read
from tests.integration.workers import WorkerProcess, worker_env

TOPICS = Topics()
CODEC = SingleObjectCodec()


@pytest.fixture(scope="module", params=["kafka", "faust"])
def pipeline(request, kafka_bootstrap, redis_url, tmp_path_factory):
    """All seven stages in one worker process (the demo runs one process per stage), on each runtime."""
    home = tmp_path_factory.mktemp(f"pipeline-home-{request.param}")
    ensure_topics(kafka_bootstrap, TOPICS.specs(), partitions=3)
    env = worker_env(kafka_bootstrap, redis_url, home, SHADOWLINE_RUNTIME=request.param)
    worker = WorkerProcess(["worker"], env, home / "worker.log")
    yield worker
    worker.stop()


def _event(cid: str, i: int, text: str, role: str = "customer") -> ConversationEvent:
    return ConversationEvent(f"{cid}-t{i}", cid, role, text, int(time.time() * 1000), locale="en")


def _collect(bootstrap, start, want_ids, worker, timeout_s=120.0, deadletters=0):
    got, dead = {}, []

    def done():
        return (want_ids <= set(got) and len(dead) >= deadletters) or not worker.alive()

    for topic, rec in read(bootstrap, start, CODEC, TOPICS.record_of, stop=done, timeout_s=timeout_s):
        if topic == TOPICS.deadletter:
            dead.append(rec)
        elif rec.get("event_id") in want_ids:
            got[rec["event_id"]] = (topic, rec)
    assert worker.alive(), worker.output()[-3000:]
    return got, dead


def test_event_arrives_as_suggestion_with_every_stage_in_order(pipeline, kafka_bootstrap, redis_client):
    cid = f"it-{uuid.uuid4().hex[:8]}"
    watch = [TOPICS.suggestions, TOPICS.escalations, TOPICS.deadletter]
    start = end_offsets(kafka_bootstrap, watch)
    events = [
        _event(cid, 0, "Hi, I was charged for an order I cancelled. How long does a refund to my card take?"),
        _event(cid, 1, "Sorry to hear that, let me check.", role="agent"),
        _event(cid, 2, "and will the delivery fee be refunded too?"),
    ]
    with Publisher(kafka_bootstrap, CODEC, TOPICS) as pub:
        for e in events:
            pub.publish_event(e)
    got, _ = _collect(kafka_bootstrap, start, {f"{cid}-t0", f"{cid}-t2"}, pipeline)

    topic, first = got[f"{cid}-t0"]
    assert topic == TOPICS.suggestions, first.get("reason")
    turn = first["turn"]
    assert [r["stage"] for r in turn["trace"]] == list(STAGES)
    assert all(r["status"] == "ok" and r["latency_ms"] >= 0 for r in turn["trace"])
    assert turn["classify"]["topic"] in {"refunds", "payments", "orders"} and turn["classify"]["confidence"] > 0
    assert first["sources"] and first["text"]
    assert turn["received_ms"] <= first["created_ms"]

    # The follow-up saw the earlier turns through Redis, and its summary carries the original issue.
    follow = got[f"{cid}-t2"][1]["turn"]
    assert [m["text"] for m in follow["context"]["history"]] == [e.text for e in events]
    assert follow["context"]["turn_index"] == 2
    assert "refund" in follow["context"]["summary"].lower()
    keys = {k.decode() for k in redis_client.scan_iter(f"sl:conv:{cid}:*")}
    assert keys == {f"sl:conv:{cid}:msgs", f"sl:conv:{cid}:summary", f"sl:conv:{cid}:turns"}
    assert 0 < redis_client.ttl(f"sl:conv:{cid}:msgs") <= Settings().history_ttl_s


def test_not_answerable_turn_is_escalated_with_reason(pipeline, kafka_bootstrap):
    cid = f"it-{uuid.uuid4().hex[:8]}"
    start = end_offsets(kafka_bootstrap, [TOPICS.suggestions, TOPICS.escalations])
    with Publisher(kafka_bootstrap, CODEC, TOPICS) as pub:
        pub.publish_event(_event(cid, 0, "What's the weather going to be like in Paris tomorrow?"))
    got, _ = _collect(kafka_bootstrap, start, {f"{cid}-t0"}, pipeline)
    topic, esc = got[f"{cid}-t0"]
    assert topic == TOPICS.escalations
    assert esc["stage"] == "validate" and "out_of_scope" in esc["reason"]


def test_malformed_event_is_deadlettered_and_next_event_still_flows(pipeline, kafka_bootstrap):
    cid = f"it-{uuid.uuid4().hex[:8]}"
    start = end_offsets(kafka_bootstrap, [TOPICS.suggestions, TOPICS.escalations, TOPICS.deadletter])
    garbage = b"\x00\x01 definitely not avro"
    with Publisher(kafka_bootstrap, CODEC, TOPICS) as pub:
        pub.send_raw(TOPICS.events, cid.encode(), garbage)
        pub.publish_event(_event(cid, 0, "How do I reset my password?"))
    got, dead = _collect(kafka_bootstrap, start, {f"{cid}-t0"}, pipeline, deadletters=1)
    mine = [d for d in dead if d["payload"] == garbage]
    assert mine, dead
    assert mine[0]["reason"] == "malformed" and mine[0]["topic"] == TOPICS.events and mine[0]["stage"] == "context"
    assert mine[0]["key"] == cid.encode() and mine[0]["offset"] >= 0
    assert f"{cid}-t0" in got
