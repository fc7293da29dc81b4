"""Follows ``kb.articles`` into a LiveKbIndex from a daemon thread: the Kafka adapter of the live KB.

The topic is compacted by article id, so read from the beginning it is the full change log: the
follower assigns every partition from offset 0 and never joins a consumer group or commits (each
worker needs every change, and a restarted one replays them all). After a lost connection it resumes
where it stopped rather than replaying, so no article ever goes back to an older text.

A record that cannot be decoded or applied is logged and counted, never raised: retrieval keeps serving
what it has. confluent-kafka errors become ``TransportError`` here and the thread retries.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kb_index.embedder import Embedder
from kb_index.live import ArticleChange, LiveKbIndex, base_index
from schemas.codec import Codec, make_codec
from schemas.topics import Topics
from shadowline.errors import ComponentError, DecodeError, ShadowlineError, TransportError

__all__ = ["KbFollower", "start_live_index"]

log = logging.getLogger("shadowline.kb.follower")

RECORD = "KbArticle"
# A worker waits this long at start for the change log to be replayed, so it does not serve stale
# articles for its first seconds; past it, it serves the base and catches up in the background.
CATCH_UP_S = 10.0


class KbFollower:
    """One daemon thread per worker; its counters say how the live KB is doing."""

    def __init__(self, live: LiveKbIndex, bootstrap: str, topic: str, codec: Codec, *, poll_s: float = 0.5,
                 retry_s: float = 2.0) -> None:
        self.live, self.bootstrap, self.topic, self.codec = live, bootstrap, topic, codec
        self.poll_s, self.retry_s = poll_s, retry_s
        self.applied = 0  # changes served on top of the base
        self.superseded = 0  # changes an operator's build of the base overrules: kept, not served
        self.bad = self.errors = 0
        self.last_error = ""
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one record (no Kafka needed: unit-testable) ------------------------------------------
    def handle(self, key: bytes | None, value: bytes | None, ts_ms: int, position: int | None = None) -> bool:
        """Decode one kb.articles record and apply it; a bad one is counted and logged, never raised."""
        try:
            change = self._decode(key, value, ts_ms)
            live = self.live.apply(change, position)
        except (ShadowlineError, KeyError, TypeError, ValueError) as exc:
            self.bad += 1
            log.warning("kb.articles record skipped (%d bad so far): %s", self.bad, exc)
            return False
        if live:
            self.applied += 1
        else:
            self.superseded += 1
        return True

    def _decode(self, key: bytes | None, value: bytes | None, ts_ms: int) -> ArticleChange:
        if value is None:  # a Kafka tombstone: the key's article is gone
            if not key:
                raise ComponentError("tombstone without a key")
            return ArticleChange(key.decode("utf-8"), "delete", ts_ms)
        try:
            change = ArticleChange.from_record(self.codec.decode(value, RECORD, self.topic))
        except DecodeError as exc:
            raise ComponentError(f"undecodable: {exc}") from exc
        if key is not None and key != change.article_id.encode():
            # Compaction keeps the latest record per key: a key that is not the article id breaks it.
            raise ComponentError(f"key {key!r} is not the article id {change.article_id!r}")
        return change

    # -- the thread ---------------------------------------------------------------------------
    def start(self) -> KbFollower:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kb-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.live.close()

    def wait_caught_up(self, timeout_s: float) -> bool:
        """True once every partition was read to its end (or the topic does not exist yet)."""
        return self._caught_up.wait(timeout_s)

    @property
    def position(self) -> int:
        """Records read so far over all partitions: the change log position the live version names."""
        return sum(self._next.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except TransportError as exc:
                self._failed(str(exc))
            except Exception as exc:  # last line of defence: the follower must never take retrieval down
                log.exception("kb follower")
                self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
        log.warning("kb follower: %s; retrying in %.0fs", reason, self.retry_s)
        self._stop.wait(self.retry_s)

    def _consume(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

        try:
            consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": "shadowline-kb-follower",
                "enable.auto.commit": False, "enable.auto.offset.store": False, "enable.partition.eof": True,
                "auto.offset.reset": "earliest", "log_level": 3,
            })
        except KafkaException as exc:
            raise TransportError(f"cannot create the kb.articles consumer: {exc}") from exc
        try:
            partitions = self._partitions(consumer)
            while not partitions and not self._stop.wait(self.retry_s):
                partitions = self._partitions(consumer)
            if not partitions:
                return  # stopped
            consumer.assign([TopicPartition(self.topic, p, self._next.get(p, OFFSET_BEGINNING)) for p in partitions])
            at_end: set[int] = set()
            while not self._stop.is_set():
                msg = consumer.poll(self.poll_s)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        if at_end >= set(partitions):
                            self._caught_up.set()
                        continue
                    if err.fatal():
                        raise TransportError(f"reading {self.topic}: {err.str()}")
                    log.info("kb follower: %s", err.str())  # transient: librdkafka retries
                    continue
                self._next[msg.partition()] = msg.offset() + 1
                self.handle(msg.key(), msg.value(), msg.timestamp()[1], self.position)
        except KafkaException as exc:
            raise TransportError(f"reading {self.topic} at {self.bootstrap}: {exc}") from exc
        finally:
            consumer.close()

    def _partitions(self, consumer: Any) -> list[int]:
        """The topic's partitions; none while it does not exist (then nothing to replay: caught up)."""
        from confluent_kafka import KafkaException

        try:
            meta = consumer.list_topics(self.topic, timeout=10)
        except KafkaException as exc:
            raise TransportError(f"kafka at {self.bootstrap} unreachable: {exc}") from exc
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            if not self._caught_up.is_set():
                log.warning("topic %s does not exist yet; serving the KB index without live updates", self.topic)
            self._caught_up.set()
            return []
        return sorted(topic.partitions)


def start_live_index(settings: Any, embedder: Embedder, *, catch_up_s: float = CATCH_UP_S) -> KbFollower:
    """A worker's live KB: base index, ``CURRENT`` watcher and kb.articles follower, replayed up to now."""
    live = LiveKbIndex(base_index(settings, embedder), Path(settings.home) / "kb")
    live.watch()
    follower = KbFollower(live, settings.kafka_bootstrap, Topics(settings.topic_prefix).kb_articles,
                          make_codec(settings.schema_registry_url)).start()
    if not follower.wait_caught_up(catch_up_s):
        log.warning("kb.articles not replayed within %.0fs (%s); serving %s and catching up in the background",
                    catch_up_s, follower.last_error or "still reading", live.version)
    return follower
