"""The Kafka runtime's book-keeping, with no I/O so it is unit-tested without a broker: which offsets are
safe to commit, which partitions wait on a retry, which periodic calls are due, how big a batch to take.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from streams.routes import retry_delay

TP = tuple[str, int]


class Ledger:
    """Per assigned partition: the next offset to commit, the last committed one, and retry blocks.

    ``consumed`` moves only past messages whose outputs were handed to the producer; the runtime commits
    it after a flush confirmed delivery, so a committed offset never covers an undelivered output.
    """

    def __init__(self) -> None:
        self.consumed: dict[TP, int] = {}  # next offset after the last fully handled message
        self.committed: dict[TP, int] = {}
        self.blocked: dict[TP, tuple[int, float]] = {}  # partition -> (offset to retry, monotonic time to retry at)
        self.failures: dict[TP, int] = {}  # consecutive retryable errors, for the back-off

    def done(self, tp: TP, offset: int) -> None:
        self.done_batch({tp: offset})

    def done_batch(self, last: dict[TP, int]) -> None:
        """``last``: per partition, the last offset handled (in order, so everything before it was too)."""
        for tp, offset in last.items():
            self.consumed[tp] = offset + 1
        if self.failures:
            for tp in last:
                self.failures.pop(tp, None)

    def pending(self) -> dict[TP, int]:
        """Offsets handled since the last commit."""
        return {tp: o for tp, o in self.consumed.items() if self.committed.get(tp) != o}

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        self.committed.update(offsets)

    def block(self, tp: TP, offset: int, now: float) -> float:
        """A retryable error at ``offset``: the partition waits, then resumes at that same offset."""
        n = self.failures[tp] = self.failures.get(tp, 0) + 1
        delay = retry_delay(n)
        self.blocked[tp] = (offset, now + delay)
        return delay

    def due(self, now: float) -> list[TP]:
        """Blocked partitions whose wait is over; they are unblocked (their failure count stays until a success)."""
        ready = [tp for tp, (_, at) in self.blocked.items() if at <= now]
        for tp in ready:
            del self.blocked[tp]
        return ready

    def next_retry_in(self, now: float) -> float:
        return max(0.0, min(at for _, at in self.blocked.values()) - now) if self.blocked else float("inf")

    def rewind(self) -> dict[TP, int]:
        """After a failed delivery: the last commit of each partition this process committed (the others go
        back to the group's committed offset). Handled-but-uncommitted progress is forgotten (at-least-once)."""
        self.consumed = {tp: o for tp, o in self.committed.items() if tp in self.consumed}
        return dict(self.committed)

    def forget(self, tps: list[TP]) -> None:
        """Partitions revoked or lost: their state belongs to the next owner now."""
        for book in (self.consumed, self.committed, self.blocked, self.failures):
            for tp in tps:
                book.pop(tp, None)


class Schedule:
    """Periodic calls run between batches; a late call runs once, not once per missed interval."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._items: list[list[Any]] = []  # [next time, interval, fn]

    def every(self, interval_s: float, fn: Callable[[], Any]) -> None:
        self._items.append([self.clock() + interval_s, interval_s, fn])

    def due(self) -> list[Callable[[], Any]]:
        now = self.clock()
        out = []
        for item in self._items:
            if item[0] <= now:
                out.append(item[2])
                item[0] = now + item[1]
        return out

    def wait_s(self) -> float:
        if not self._items:
            return float("inf")
        return max(0.0, min(item[0] for item in self._items) - self.clock())


class BatchSizer:
    """How many messages one consume call takes: as many as fit in ``budget_s`` at the recent cost per
    message. Fast handlers get big batches (the per-call overhead is amortised); a slow one (an LLM call)
    gets one message at a time, so timers, commits and ``max.poll.interval.ms`` keep their pace."""

    def __init__(self, max_n: int = 500, budget_s: float = 0.5) -> None:
        self.max_n, self.budget_s = max_n, budget_s
        self.n = 1  # until the first measurement: a slow handler must not start with a huge batch
        self.avg_s: float | None = None

    def observe(self, count: int, seconds: float) -> None:
        if count <= 0:
            return
        per = seconds / count
        self.avg_s = per if self.avg_s is None else 0.7 * self.avg_s + 0.3 * per
        self.n = max(1, min(self.max_n, int(self.budget_s / max(self.avg_s, 1e-7))))
