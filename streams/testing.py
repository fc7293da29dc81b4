"""Run the pipeline in memory, over the real codec and processors, without Kafka.

Like bytewax's TestingSource/TestingSink: a tiny broker of lists, so tests of the whole chain take
milliseconds. The only difference from production is the transport.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from agents.base import Resources
from agents.records import ConversationEvent
from schemas.codec import Codec, SingleObjectCodec
from schemas.topics import Topics
from shadowline.config import Settings, get_settings
from streams.history import MemoryStore
from streams.messages import Inbound
from streams.metrics import Metrics
from streams.pipeline import PipelineConfig, build_processors, load_pipeline
from streams.messages import now_ms
from streams.processor import StageProcessor


@dataclass
class MemoryBroker:
    """Topics as append-only lists of (key, value)."""

    logs: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=lambda: defaultdict(list))

    def produce(self, topic: str, key: bytes | None, value: bytes) -> int:
        self.logs[topic].append((key, value))
        return len(self.logs[topic]) - 1

    def records(self, codec: Codec, topic: str, record: str) -> list[dict[str, Any]]:
        return [codec.decode(v, record, topic) for _, v in self.logs.get(topic, [])]


class InMemoryPipeline:
    def __init__(
        self,
        pipeline: PipelineConfig | None = None,
        settings: Settings | None = None,
        resources: Resources | None = None,
        codec: Codec | None = None,
    ) -> None:
        # In memory there is no kb.articles to follow: the KB index stays the saved one (deterministic tests).
        self.settings = (settings or get_settings()).model_copy(update={"kb_follow": False})
        self.codec = codec or SingleObjectCodec()
        self.topics = Topics(self.settings.topic_prefix)
        self.store = MemoryStore(self.settings.history_turns)
        self.metrics = Metrics()
        self.broker = MemoryBroker()
        self.resources = resources or Resources(self.settings)
        cfg = pipeline or load_pipeline(self.settings.pipeline_config)
        self.processors: dict[str, StageProcessor] = build_processors(
            cfg, list(cfg.active), self.settings, self.codec, self.store, self.resources, self.metrics
        )
        # Every subscriber has its own offsets, like a consumer group: (name, topics, handler).
        self.subscribers: list[tuple[str, tuple[str, ...], Any]] = [
            (f"stage-{p.stage}", (p.input_topic,), p) for p in self.processors.values()
        ]
        self._offsets: dict[tuple[str, str], int] = defaultdict(int)

    def subscribe(self, name: str, topics: Iterable[str], handler: Any) -> None:
        """Add a handler (``handle(Inbound) -> list[Outbound]``), e.g. a shadow mirror or comparator."""
        self.subscribers.append((name, tuple(topics), handler))

    def publish(self, event: ConversationEvent) -> None:
        value = self.codec.encode("ConversationEvent", event.to_record(), self.topics.events)
        self.publish_raw(event.conversation_id.encode(), value)

    def publish_raw(self, key: bytes | None, value: bytes, topic: str | None = None) -> None:
        self.broker.produce(topic or self.topics.events, key, value)

    def run(self) -> None:
        """Deliver every pending message to every subscriber until nothing is left."""
        progressed = True
        while progressed:
            progressed = False
            for name, topics, handler in self.subscribers:
                for topic in topics:
                    log = self.broker.logs.get(topic, [])
                    while self._offsets[(name, topic)] < len(log):
                        offset = self._offsets[(name, topic)]
                        key, value = log[offset]
                        self._offsets[(name, topic)] += 1
                        for out in handler.handle(Inbound(topic, 0, offset, key, value, now_ms())):
                            self.broker.produce(out.topic, out.key, out.value)
                        progressed = True

    def converse(self, conversation_id: str, turns: Iterable[tuple[str, str]]) -> None:
        """Publish a conversation's (role, text) turns and run the pipeline after each one."""
        for i, (role, text) in enumerate(turns):
            self.publish(ConversationEvent(f"{conversation_id}-{i}-{uuid.uuid4().hex[:6]}", conversation_id, role, text, now_ms()))
            self.run()

    @property
    def suggestions(self) -> list[dict[str, Any]]:
        return self.broker.records(self.codec, self.topics.suggestions, "Suggestion")

    @property
    def escalations(self) -> list[dict[str, Any]]:
        return self.broker.records(self.codec, self.topics.escalations, "Escalation")

    @property
    def deadletters(self) -> list[dict[str, Any]]:
        return self.broker.records(self.codec, self.topics.deadletter, "DeadLetter")
