"""The confluent-kafka runtime: the same Routes and timers as the Faust runtime, on one thread and librdkafka.

Each turn of the loop consumes a batch (librdkafka prefetches in its own threads), hands every message to
its routes' handlers, produces the outputs (idempotent, acks=all, lz4, a short linger), then runs what is
due: timers (hot-swap poll, comparator sweep), retries, the consumer-lag report and the commit. A commit
first flushes the producer and only then commits the offsets handled so far, so an offset is never
committed ahead of its outputs (at-least-once); it runs every second, before partitions are revoked and at
shutdown. A retryable error (Redis, Kafka) blocks only its message's partition: paused, sought back to that
message and resumed after a back-off, never skipped, while the other partitions keep flowing.

Why a second runtime: Faust spends ~340 CPU-µs per message in asyncio machinery around a handler that
needs ~50; this loop spends a few (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from shadowline.config import Settings
from shadowline.errors import TransportError
from streams.loop_state import TP, BatchSizer, Ledger, Schedule
from streams.messages import Inbound, Outbound
from streams.metrics import Metrics
from streams.routes import RETRYABLE, Route

log = logging.getLogger("shadowline.runtime")
MAX_WAIT_S = 0.5  # longest a consume call blocks, so a stop request is seen quickly
FLUSH_TIMEOUT_S = 30.0


class KafkaLoop:
    """A worker: one consumer group (``app_id``), one producer, one thread. ``run()`` blocks until SIGTERM,
    SIGINT or ``stop()``, then commits what was handled and leaves the group."""

    def __init__(
        self,
        app_id: str,
        settings: Settings,
        routes: list[Route],
        timers: Iterable[tuple[float, Callable[[], Any]]] = (),
        metrics: Metrics | None = None,
        *,
        max_batch: int = 500,
        commit_interval_s: float = 1.0,
        lag_interval_s: float = 5.0,
        linger_ms: float = 1.0,
    ) -> None:
        self.app_id = app_id
        self.metrics = metrics or Metrics()
        self.shadowline_metrics = self.metrics  # the attribute the Faust app carries too
        self.by_topic: dict[str, list[Route]] = {}
        for route in routes:
            for topic in route.topics:
                self.by_topic.setdefault(topic, []).append(route)
        self.ledger = Ledger()
        self.batch = BatchSizer(max_batch)
        self.schedule = Schedule()
        for interval, fn in timers:
            self.schedule.every(interval, self._timer(fn))
        self.schedule.every(commit_interval_s, self.commit)
        self.schedule.every(lag_interval_s, self.report_lag)
        common = {"bootstrap.servers": settings.kafka_bootstrap, "error_cb": self._on_error,
                  "log_level": 3}  # recovered retries ("coordinator load in progress") are not worth a warning
        self.consumer_config = {
            **common, "group.id": app_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            # librdkafka heartbeats from its own thread, so a long batch never looks dead; a crashed worker's
            # partitions move after 10 s instead of the default 45.
            "session.timeout.ms": 10000,
        }
        self.producer_config = {
            **common, "enable.idempotence": True, "acks": "all", "compression.type": "lz4",
            "linger.ms": linger_ms,  # per hop: a pipeline pays it once per stage
            "partitioner": "murmur2_random",  # the Java client's (and Faust's) choice: a key lands where it did before
            "delivery.report.only.error": True, "on_delivery": self._on_delivery,
        }
        self.consumer: Any = None
        self.producer: Any = None
        self.running = False
        self.failed_deliveries: list[str] = []
        self.fatal: KafkaError | None = None
        self._warned_topics: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.consumer = Consumer(self.consumer_config)
            self.producer = Producer(self.producer_config)
        except KafkaException as exc:
            raise TransportError(f"cannot create Kafka clients for {self.app_id}: {exc}") from exc
        self.consumer.subscribe(sorted(self.by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        self.running = True

    def run(self) -> None:
        self.open()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        try:
            while self.running:
                self.step()
        finally:
            self.close()

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        """Commit what was handled, then leave the group at once (the partitions move now, not after a
        session timeout)."""
        if self.consumer is None:
            return
        try:
            self.commit()
        finally:
            self.consumer.close()  # revokes: the callback commits again, with nothing left to commit
            self.producer.flush(FLUSH_TIMEOUT_S)
            self.consumer = self.producer = None

    # -- one turn of the loop ------------------------------------------------------------------
    def step(self) -> None:
        now = time.monotonic()
        wait = min(self.schedule.wait_s(), self.ledger.next_retry_in(now), MAX_WAIT_S)
        # One message with a timeout, then whatever else is ready: the first call returns as soon as a
        # message arrives, whichever way the client version waits for a full batch.
        msgs = self.consumer.consume(1, wait)
        if msgs and self.batch.n > 1:
            msgs += self.consumer.consume(self.batch.n - 1, 0)
        if msgs:
            t0 = time.perf_counter()
            self.handle_batch(msgs)
            self.batch.observe(len(msgs), time.perf_counter() - t0)
        self.producer.poll(0)  # delivery failures and errors are reported here
        if self.fatal is not None:
            raise TransportError(f"{self.app_id}: fatal Kafka error: {self.fatal.str()}")
        if self.ledger.blocked:
            for topic, partition in self.ledger.due(time.monotonic()):
                self.consumer.resume([TopicPartition(topic, partition)])
        for fn in self.schedule.due():
            fn()

    def handle_batch(self, msgs: list[Any]) -> None:
        """The hot path: per message only C accessors, the handler and ``produce``; book-keeping per batch."""
        ledger, by_topic, produce, handled = self.ledger, self.by_topic, self.producer.produce, self.metrics.handled
        blocked = ledger.blocked
        done: dict[TP, int] = {}  # per partition, the last message handled in this batch
        for m in msgs:
            if m.error() is not None:
                self._consume_error(m.error(), m)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            if blocked and (topic, partition) in blocked:
                continue  # read again from the failed message once its back-off is over
            ts = m.timestamp()[1]
            msg = Inbound(topic, partition, offset, m.key(), m.value(), ts if ts >= 0 else None)
            headers = m.headers()  # forwarded: trace context and producer timestamps reach the end topics
            try:
                for route in by_topic[topic]:
                    outs = route.handler.handle(msg)
                    for out in outs:
                        try:
                            produce(out.topic, out.value, out.key, headers=headers)
                        except BufferError:
                            self.produce(out, headers)  # queue full: the slow path waits for room
                        except KafkaException as exc:
                            raise TransportError(f"cannot produce to {out.topic}: {exc}") from exc
                    handled(route.name, [out.topic for out in outs])
            except RETRYABLE as exc:
                self._block((topic, partition), offset, exc)
                continue
            done[(topic, partition)] = offset
        if done:
            ledger.done_batch(done)

    def produce(self, out: Outbound, headers: Any = None) -> None:
        while True:
            try:
                self.producer.produce(out.topic, out.value, out.key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise TransportError(f"cannot produce to {out.topic}: {exc}") from exc

    def _block(self, tp: TP, offset: int, exc: Exception) -> None:
        delay = self.ledger.block(tp, offset, time.monotonic())
        part = TopicPartition(tp[0], tp[1], offset)
        self.consumer.pause([part])
        self.consumer.seek(part)
        log.warning("%s[%d]@%d: %s; partition blocked, retrying in %.1fs", tp[0], tp[1], offset, exc, delay)

    def _consume_error(self, err: KafkaError, m: Any) -> None:
        if err.fatal():
            self.fatal = err
        elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            if m.topic() not in self._warned_topics:  # until someone creates it: once, not every poll
                self._warned_topics.add(m.topic())
                log.warning("%s: topic %s does not exist (yet)", self.app_id, m.topic())
        elif err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consume error: %s", self.app_id, err.str())

    # -- commits -------------------------------------------------------------------------------
    def commit(self) -> None:
        """Flush, then commit what was handled: a committed offset never covers an undelivered output."""
        pending = self.ledger.pending()
        if not pending and not self.failed_deliveries:
            return
        left = self.producer.flush(FLUSH_TIMEOUT_S)
        if left:
            log.warning("%s: %d output(s) not delivered after %.0fs; commit deferred", self.app_id, left, FLUSH_TIMEOUT_S)
            return
        if self.failed_deliveries:
            self._rewind()
            return
        try:
            result = self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in pending.items()], asynchronous=False)
        except KafkaException as exc:  # e.g. mid-rebalance: the next owner re-reads from the last commit
            log.warning("%s: commit failed: %s", self.app_id, exc)
            return
        self.ledger.mark_committed({(r.topic, r.partition): r.offset for r in result or () if r.error is None})

    def _rewind(self) -> None:
        """After a failed delivery: every assigned partition is read again from its last commit (the group's
        committed offset where this process has not committed yet, else the beginning, as auto.offset.reset)."""
        failed, self.failed_deliveries = self.failed_deliveries, []
        log.error("%s: %d output(s) failed delivery (first: %s); reading again from the last commit", self.app_id, len(failed), failed[0])
        known = self.ledger.rewind()
        try:
            assigned = self.consumer.assignment()
            unknown = [p for p in assigned if (p.topic, p.partition) not in known]
            group = {(p.topic, p.partition): p.offset for p in (self.consumer.committed(unknown, timeout=10) if unknown else ())}
            for part in assigned:
                tp = (part.topic, part.partition)
                offset = known.get(tp, group.get(tp, OFFSET_BEGINNING))
                self.consumer.seek(TopicPartition(part.topic, part.partition, offset if offset >= 0 else OFFSET_BEGINNING))
        except KafkaException as exc:  # mid-rebalance: the next owner reads from the last commit anyway
            log.warning("%s: cannot seek back: %s", self.app_id, exc)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed_deliveries.append(f"{msg.topic()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
        else:  # librdkafka reconnects by itself; this says why things are slow meanwhile
            log.warning("%s: kafka: %s", self.app_id, err.str())

    # -- rebalances ----------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.ledger.forget([(p.topic, p.partition) for p in partitions])  # no stale state from an earlier assignment

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self.commit()
        self.ledger.forget([(p.topic, p.partition) for p in partitions])

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self.ledger.forget([(p.topic, p.partition) for p in partitions])  # another member owns them: no commit

    # -- timers and metrics --------------------------------------------------------------------
    def _timer(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """A periodic call; Outbound messages it returns (e.g. expired joins) are produced."""
        name = getattr(fn, "__name__", repr(fn))

        def tick() -> None:
            try:
                outs = fn()
            except RETRYABLE as exc:  # the next tick tries again
                log.warning("timer %s: %s", name, exc)
                return
            for out in outs or ():
                if isinstance(out, Outbound):
                    self.produce(out)

        return tick

    def report_lag(self) -> None:
        """Per assigned partition: high watermark minus the committed offset (else the handled position, else
        the group's committed offset). The high watermark is librdkafka's, cached from the last fetch; only a
        partition not fetched yet since its assignment costs a request."""
        lag: dict[TP, int] = {}
        try:
            for part in self.consumer.assignment():
                tp = (part.topic, part.partition)
                high = self.consumer.get_watermark_offsets(part, cached=True)[1]
                if high < 0:
                    high = self.consumer.get_watermark_offsets(part, timeout=2.0)[1]
                done = self.ledger.committed.get(tp, self.ledger.consumed.get(tp))
                if done is None:
                    done = self.consumer.committed([part], timeout=2.0)[0].offset
                if high >= 0 and done >= 0:
                    lag[tp] = max(0, high - done)
        except KafkaException as exc:  # mid-rebalance there is nothing to measure
            log.debug("consumer lag: %s", exc)
            return
        self.metrics.consumer_lag(self.app_id, lag)
