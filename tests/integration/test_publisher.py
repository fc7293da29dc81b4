"""The Publisher against a real broker: ordering by key, and delivery failures surfaced, not dropped."""

import uuid

import pytest

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadowline.errors import PublishError
from shadowline.localinfra import free_port
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import end_offsets, read

CODEC = SingleObjectCodec()


def test_events_of_a_conversation_stay_ordered_in_one_partition(kafka_bootstrap):
    topics = Topics(prefix=f"pub{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_bootstrap, topics.specs(), partitions=3)
    start = end_offsets(kafka_bootstrap, [topics.events])
    with Publisher(kafka_bootstrap, CODEC, topics) as pub:
        for i in range(30):
            pub.publish_event(ConversationEvent(f"e{i}", f"conv-{i % 3}", "customer", f"m{i}", i))
    assert pub.delivered == 30
    seen: dict[str, list[int]] = {}
    got = []
    for _, rec in read(kafka_bootstrap, start, CODEC, lambda t: "ConversationEvent", stop=lambda: len(got) >= 30, timeout_s=30):
        got.append(rec)
        seen.setdefault(rec["conversation_id"], []).append(rec["ts_ms"])
    assert len(got) == 30
    for ts in seen.values():
        assert ts == sorted(ts)


def test_undeliverable_messages_raise_publish_error():
    dead_port = free_port()  # nothing listens here
    pub = Publisher(f"127.0.0.1:{dead_port}", CODEC, Topics(), **{"message.timeout.ms": 1500, "log_level": 0})
    pub.publish_event(ConversationEvent("e1", "c1", "customer", "hello", 1))
    with pytest.raises(PublishError, match="failed|not delivered"):
        pub.flush(timeout_s=10)
