"""The Kafka runtime's book-keeping (streams.loop_state): commits, retry blocks, timers, batch sizes."""

from __future__ import annotations

import pytest

from shadowline.config import Settings
from streams.loop_state import BatchSizer, Ledger, Schedule
from streams.routes import MAX_RETRY_S, retry_delay

A, B = ("turns.validate", 0), ("turns.validate", 1)


def test_only_handled_offsets_are_pending_and_a_commit_clears_them():
    led = Ledger()
    led.done(A, 10)
    led.done(A, 11)
    led.done(B, 3)
    assert led.pending() == {A: 12, B: 4}  # the next offset to read, as Kafka stores it
    led.mark_committed({A: 12})
    assert led.pending() == {B: 4}
    led.done(A, 12)
    assert led.pending() == {A: 13, B: 4}


def test_a_retryable_error_blocks_the_partition_at_that_offset_with_growing_back_off():
    led = Ledger()
    assert led.block(A, 5, now=100.0) == pytest.approx(0.2)
    assert led.blocked == {A: (5, 100.2)}
    assert led.due(100.1) == [] and led.next_retry_in(100.1) == pytest.approx(0.1)
    assert led.due(100.2) == [A] and not led.blocked
    assert led.block(A, 5, now=101.0) == pytest.approx(0.4)  # failed again: twice the wait
    led.due(200.0)
    led.done(A, 5)  # the retry succeeded: the next error starts from the short wait again
    assert led.block(A, 6, now=300.0) == pytest.approx(0.2)
    assert led.pending() == {A: 6}  # the blocked message is not counted as handled


def test_back_off_is_capped():
    assert [retry_delay(n) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])
    assert retry_delay(50) == MAX_RETRY_S


def test_rewind_forgets_uncommitted_progress():
    led = Ledger()
    for off in range(5):
        led.done(A, off)
    led.mark_committed({A: 3})
    led.done_batch({B: 41})
    assert led.rewind() == {A: 3}  # B was never committed here: the runtime asks the group for it
    assert led.pending() == {}  # uncommitted progress is forgotten: those messages are handled again


def test_revoked_partitions_leave_no_state_behind():
    led = Ledger()
    led.done(A, 0)
    led.mark_committed({A: 1})
    led.block(B, 7, now=0.0)
    led.forget([A, B])
    assert (led.consumed, led.committed, led.blocked, led.failures) == ({}, {}, {}, {})
    assert led.next_retry_in(0.0) == float("inf")


def test_schedule_runs_each_call_when_due_and_once_after_a_long_stall():
    now = [0.0]
    sched = Schedule(clock=lambda: now[0])
    sched.every(1.0, "commit")
    sched.every(5.0, "lag")
    assert sched.due() == [] and sched.wait_s() == 1.0
    now[0] = 1.0
    assert sched.due() == ["commit"] and sched.wait_s() == 1.0
    now[0] = 30.0  # the loop was busy for a long batch
    assert sched.due() == ["commit", "lag"]  # not 29 commits
    assert sched.wait_s() == 1.0
    assert Schedule().wait_s() == float("inf")


def test_batch_size_follows_the_handler_cost():
    sizer = BatchSizer(max_n=500, budget_s=0.5)
    assert sizer.n == 1  # no measurement yet: a slow handler must not start with 500 messages
    sizer.observe(1, 0.00005)
    assert sizer.n == 500  # 50 µs per message: the whole batch fits the budget many times
    slow = BatchSizer(max_n=500, budget_s=0.5)
    slow.observe(1, 2.0)  # an LLM call
    assert slow.n == 1
    slow.observe(0, 0.0)  # an empty batch says nothing
    assert slow.n == 1


def test_runtime_setting_selects_the_worker_runtime(monkeypatch):
    monkeypatch.delenv("SHADOWLINE_RUNTIME", raising=False)
    assert Settings().runtime == "kafka"
    monkeypatch.setenv("SHADOWLINE_RUNTIME", "faust")
    assert Settings().runtime == "faust"
    monkeypatch.setenv("SHADOWLINE_RUNTIME", "spark")
    with pytest.raises(ValueError):
        Settings()
