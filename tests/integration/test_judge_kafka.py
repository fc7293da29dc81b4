"""The judge worker on a real broker and Redis: suggestions in, Judgment records on quality.judgments out,
exactly the deterministic sample, with the sampled ones queued for human review."""

from __future__ import annotations

import copy
import uuid

import pytest

from agents.judge import ASPECTS, sampled
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadow.review import ReviewQueue
from streams.admin import ensure_topics
from streams.publisher import Publisher
from streams.reader import end_offsets, read
from streams.testing import InMemoryPipeline
from tests.integration.workers import WorkerProcess, worker_env

pytestmark = pytest.mark.integration

CODEC = SingleObjectCodec()
RATE = 0.5


@pytest.fixture(scope="module")
def suggestion() -> dict:
    """One real suggestion record, from the pipeline run in memory."""
    pipe = InMemoryPipeline()
    pipe.converse("conv-judge", [("customer", "How long does a refund take to reach my card?")])
    [record] = pipe.suggestions
    return record


def copies(record: dict, tag: str, n: int) -> list[dict]:
    """``n`` suggestions of one conversation (one partition, so in order); the last one is in the sample,
    so once its judgment arrives every earlier one has been decided."""
    ids = [f"{tag}-{i}" for i in range(200)]
    chosen = ids[:n - 1] + [next(i for i in ids[n - 1:] if sampled(i, RATE))]
    out = []
    for event_id in chosen:
        r = copy.deepcopy(record)
        r.update(event_id=event_id, suggestion_id=f"sug-{event_id}", conversation_id=f"conv-{tag}")
        r["turn"]["event"].update(event_id=event_id, conversation_id=f"conv-{tag}")
        out.append(r)
    return out


def test_judge_worker_turns_sampled_suggestions_into_judgments(kafka_bootstrap, redis_url, redis_client,
                                                                 tmp_path, suggestion) -> None:
    prefix = f"jt{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    ensure_topics(kafka_bootstrap, topics.specs(), partitions=2)
    tag = uuid.uuid4().hex[:6]
    batch = copies(suggestion, tag, 10)
    expected = {r["event_id"] for r in batch if sampled(r["event_id"], RATE)}
    assert 1 < len(expected) < len(batch)

    env = worker_env(kafka_bootstrap, redis_url, tmp_path / "home", SHADOWLINE_TOPIC_PREFIX=prefix)
    worker = WorkerProcess(["judge", "run", "--rate", str(RATE), "--review-rate", "1"], env, tmp_path / "judge.log")
    try:
        start = end_offsets(kafka_bootstrap, [topics.judgments, topics.deadletter])
        with Publisher(kafka_bootstrap, CODEC, topics) as pub:
            pub.send_raw(topics.suggestions, f"conv-{tag}".encode(), b"\x00 not a suggestion")
            for r in batch:
                pub.send(topics.suggestions, "Suggestion", r, r["conversation_id"])
        judgments, dead = {}, []
        last = batch[-1]["event_id"]
        for topic, rec in read(kafka_bootstrap, start, CODEC, topics.record_of,
                               stop=lambda: last in judgments and dead or not worker.alive(), timeout_s=180):
            if topic == topics.deadletter:
                dead.append(rec)
            elif topic == topics.judgments:
                judgments[rec["event_id"]] = rec
        assert worker.alive(), worker.output()[-3000:]
    finally:
        worker.stop()

    assert set(judgments) == expected, worker.output()[-2000:]
    for event_id, j in judgments.items():
        assert j["judge"] == "rules@1" and j["suggestion_id"] == f"sug-{event_id}"
        assert set(j["scores"]) == set(ASPECTS) and all(0.0 <= v <= 1.0 for v in j["scores"].values())
        assert j["scores"]["accuracy"] == pytest.approx(suggestion["turn"]["guardrail"]["support"], abs=1e-4)
    assert [(d["reason"], d["stage"]) for d in dead] == [("malformed", "judge")]

    queued = ReviewQueue(redis_url).next(50)
    assert {i.event_id for i in queued} == expected  # review rate 1: every judged turn waits for a human
    assert all(i.answer == suggestion["text"] and i.hits and i.scores for i in queued)
