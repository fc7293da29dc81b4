"""The upstream side: chat systems publish conversation events and agent feedback with this.

Idempotent producer (no duplicates on retry), acks=all, key = conversation id so a conversation stays
ordered in one partition. Delivery failures are collected and raised from ``flush``, never dropped.
"""

from __future__ import annotations

from typing import Any

from agents.records import ConversationEvent
from schemas.codec import Codec, make_codec
from schemas.topics import Topics
from shadowline.errors import PublishError, TransportError


class Publisher:
    def __init__(self, bootstrap: str, codec: Codec | None = None, topics: Topics | None = None, **config: Any) -> None:
        from confluent_kafka import KafkaException, Producer

        self.codec = codec or make_codec()
        self.topics = topics or Topics()
        self._kafka_exception = KafkaException
        conf = {
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "lz4", "message.timeout.ms": 30000,
            # librdkafka logs retries it recovers from ("coordinator load in progress") at warning level;
            # real failures reach the caller through delivery reports instead.
            "log_level": 3,
        }
        conf.update(config)
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise TransportError(f"cannot create producer: {exc}") from exc
        self.failures: list[str] = []
        self.delivered = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}: {err.str()}")
        else:
            self.delivered += 1

    def send(self, topic: str, record_name: str, record: dict[str, Any], key: str | None) -> None:
        value = self.codec.encode(record_name, record, topic)
        self.send_raw(topic, key.encode() if key is not None else None, value)

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: serve callbacks, then retry
            except self._kafka_exception as exc:
                raise TransportError(f"cannot produce to {topic}: {exc}") from exc
        self._producer.poll(0)

    def publish_event(self, event: ConversationEvent) -> None:
        self.send(self.topics.events, "ConversationEvent", event.to_record(), event.conversation_id)

    def publish_feedback(self, feedback: dict[str, Any]) -> None:
        self.send(self.topics.feedback, "AgentFeedback", feedback, feedback["conversation_id"])

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every message; raise PublishError naming what was not acknowledged."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise PublishError(f"{remaining} message(s) not delivered within {timeout_s:.0f}s")
        if self.failures:
            first, n = self.failures[0], len(self.failures)
            self.failures = []
            raise PublishError(f"{n} message(s) failed, first: {first}")

    def __enter__(self) -> Publisher:
        return self

    def close(self) -> None:
        """Flush, then drop the client so its connections close now rather than at garbage collection."""
        try:
            self.flush()
        finally:
            self._producer = None

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._producer = None
