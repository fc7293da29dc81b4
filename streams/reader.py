"""Read records from topics between offsets, without joining a consumer group (assign, not subscribe)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from schemas.codec import Codec
from shadowline.errors import DecodeError, TransportError

Offsets = dict[tuple[str, int], int]


def end_offsets(bootstrap: str, topics: list[str], timeout_s: float = 10.0) -> Offsets:
    """High watermark of every partition of ``topics``: where new records will start."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadowline-reader", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=timeout_s)
        out: Offsets = {}
        for topic in topics:
            if topic not in meta.topics:
                raise TransportError(f"topic {topic} does not exist (run `shadowline topics create`)")
            for p in meta.topics[topic].partitions:
                out[(topic, p)] = _high_watermark(consumer, TopicPartition(topic, p), timeout_s)
        return out
    except KafkaException as exc:
        raise TransportError(f"kafka at {bootstrap} unreachable: {exc}") from exc
    finally:
        consumer.close()


def _high_watermark(consumer: Any, tp: Any, timeout_s: float) -> int:
    """Retry retriable errors: a just-created partition's leader may not serve for a moment."""
    from confluent_kafka import KafkaError, KafkaException

    transient = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in transient) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read(
    bootstrap: str,
    start: Offsets,
    codec: Codec,
    record_of: Callable[[str], str],
    *,
    stop: Callable[[], bool] = lambda: False,
    timeout_s: float = 60.0,
    idle_s: float | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (topic, record) from ``start`` until ``stop()`` is true, ``timeout_s`` passes, or nothing
    arrives for ``idle_s``. Undecodable records are yielded as ("!" + topic, {"error": ...})."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadowline-reader", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while not stop() and time.monotonic() < deadline:
            if idle_s is not None and time.monotonic() - last > idle_s:
                return
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                continue  # partition EOF and transient errors: keep polling until the deadline
            last = time.monotonic()
            topic = msg.topic()
            try:
                yield topic, codec.decode(msg.value(), record_of(topic), topic)
            except DecodeError as exc:
                yield "!" + topic, {"error": str(exc), "offset": msg.offset()}
    except KafkaException as exc:
        raise TransportError(f"reading {sorted({t for t, _ in start})}: {exc}") from exc
    finally:
        consumer.close()
