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


def offsets_at(bootstrap: str, topics: list[str], ts_ms: int | None, timeout_s: float = 10.0) -> Offsets:
    """Per partition, the first offset whose timestamp is >= ``ts_ms``; the high watermark where there is
    none, or for every partition when ``ts_ms`` is None (now). Topics that do not exist are left out, so
    a reader of history sees them as empty rather than failing."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadowline-reader", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=timeout_s)
        tps = [TopicPartition(t, p) for t in topics if t in meta.topics for p in meta.topics[t].partitions]
        out: Offsets = {(tp.topic, tp.partition): _high_watermark(consumer, tp, timeout_s) for tp in tps}
        if ts_ms is not None and tps:
            found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, ts_ms) for tp in tps], timeout=timeout_s)
            for tp in found:
                if tp.error is not None:
                    raise TransportError(f"offsets for {tp.topic}[{tp.partition}] at {ts_ms}: {tp.error}")
                if tp.offset >= 0:  # -1: no message at or after ts_ms, so the end
                    out[(tp.topic, tp.partition)] = tp.offset
        return out
    except KafkaException as exc:
        raise TransportError(f"kafka at {bootstrap}: {exc}") from exc
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


def read_range(
    bootstrap: str,
    start: Offsets,
    end: Offsets,
    codec: Codec,
    record_of: Callable[[str], str],
    *,
    timeout_s: float = 120.0,
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Yield (topic, record, timestamp_ms) of every record in [start, end) per partition, then stop.

    ``end`` is fixed by the caller (e.g. the high watermark when a query starts), so a busy topic cannot
    keep the reader going. Undecodable records are yielded as ("!" + topic, {"error": ...}, ts).
    Raises TransportError if the range is not read within ``timeout_s``.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    todo = {tp: o for tp, o in start.items() if o < end.get(tp, o)}
    if not todo:
        return
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadowline-reader", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in todo.items()])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                left = sum(end[tp] - o for tp, o in todo.items())
                raise TransportError(f"read timed out after {timeout_s:.0f}s with {left} record(s) left in {sorted({t for t, _ in todo})}")
            for msg in consumer.consume(500, 0.2):
                if msg.error():
                    if msg.error().fatal():
                        raise TransportError(f"reading {msg.topic()}: {msg.error()}")
                    continue  # partition EOF and transient errors: retried until the deadline
                tp, topic = (msg.topic(), msg.partition()), msg.topic()
                if tp not in todo or msg.offset() >= end[tp]:
                    continue
                todo[tp] = msg.offset() + 1
                if todo[tp] >= end[tp]:
                    del todo[tp]
                ts = msg.timestamp()[1]
                if msg.value() is None:
                    continue  # a tombstone: nothing to read
                try:
                    yield topic, codec.decode(msg.value(), record_of(topic), topic), ts
                except DecodeError as exc:
                    yield "!" + topic, {"error": str(exc), "offset": msg.offset()}, ts
            # Offsets below end may be missing for good (compaction, transaction markers): the
            # consumer's position past them means the partition is done.
            if todo:
                for pos in consumer.position([TopicPartition(t, p) for t, p in todo]):
                    key = (pos.topic, pos.partition)
                    if key in todo and pos.offset >= end[key]:
                        del todo[key]
    except KafkaException as exc:
        raise TransportError(f"reading {sorted({t for t, _ in start})}: {exc}") from exc
    finally:
        consumer.close()
