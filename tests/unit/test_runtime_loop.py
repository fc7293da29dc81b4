"""The runtime switch and the contracts the Kafka runtime relies on, without a broker (the loop itself runs
against a real one in tests/integration/test_runtime_kafka.py)."""

from __future__ import annotations

import pytest

from agents.records import ConversationEvent
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadowline.config import Settings
from shadowline.errors import StoreError
from streams.history import MemoryStore
from streams.kafka_loop import KafkaLoop
from streams.messages import Inbound, Outbound
from streams.processor import StageProcessor
from streams.routes import RETRYABLE
from streams.worker import Route, make_app

CODEC = SingleObjectCodec()
TOPICS = Topics()


class Echo:
    def __init__(self, out: str) -> None:
        self.out = out

    def handle(self, msg: Inbound) -> list[Outbound]:
        return [Outbound(self.out, msg.key, msg.value)]


def test_make_app_builds_the_kafka_runtime_by_default_without_touching_the_network(tmp_path):
    def sweep() -> list[Outbound]:
        return []

    routes = [Route("a", ("in.1", "in.2"), Echo("out")), Route("b", ("in.2",), Echo("out"))]
    app = make_app("shadowline-test", Settings(home=tmp_path), routes, timers=[(1.0, sweep)])
    assert isinstance(app, KafkaLoop)
    assert app.consumer is None and app.producer is None  # clients are created by run(), not here
    assert {t: [r.name for r in rs] for t, rs in app.by_topic.items()} == {"in.1": ["a"], "in.2": ["a", "b"]}
    assert app.consumer_config["group.id"] == "shadowline-test" and app.consumer_config["enable.auto.commit"] is False
    assert app.producer_config["enable.idempotence"] is True and app.producer_config["acks"] == "all"
    assert app.producer_config["compression.type"] == "lz4"
    assert len(app.schedule._items) == 3  # the sweep, the commit and the lag report


def test_make_app_still_builds_a_faust_app_when_asked(tmp_path):
    pytest.importorskip("faust")
    app = make_app("shadowline-test-faust", Settings(home=tmp_path, runtime="faust"), [Route("a", ("in.1",), Echo("out"))])
    assert not isinstance(app, KafkaLoop)
    assert "a" in app.agents and app.shadowline_metrics is not None
    assert (tmp_path / "faust").is_dir()  # Faust's data folders live under the home, not the working directory


class BrokenStore(MemoryStore):
    def load(self, conversation_id: str, exclude_event: str):
        raise StoreError("redis unreachable: connection refused")


class Context:
    stage, name, version = "context", "echo", "1"

    def process(self, turn, prior):
        raise AssertionError("the component must not run without its history")


def test_a_store_outage_reaches_the_runtime_as_retryable_instead_of_an_escalation():
    proc = StageProcessor("context", Context(), CODEC, TOPICS, store=BrokenStore())
    event = ConversationEvent("e1", "c1", "customer", "where is my order?", 0)
    msg = Inbound(TOPICS.events, 0, 7, b"c1", CODEC.encode("ConversationEvent", event.to_record()))
    with pytest.raises(RETRYABLE):
        proc.handle(msg)
