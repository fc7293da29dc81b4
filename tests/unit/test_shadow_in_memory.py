"""Shadow measurement on the sample conversations, in memory: known injected behaviour is measured exactly."""

import re

import pytest

from agents.base import ComponentSpec
from agents.chaos import chosen
from shadow.testing import ShadowHarness
from shadowline.config import get_settings
from shadowline.conversations import items_from_file
from streams.testing import InMemoryPipeline

ITEMS = items_from_file(get_settings().samples_dir / "conversations.jsonl")
PII = [re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"), re.compile(r"4242 4242 4242 4242|4000.?0566.?5566.?5556|5555.?5555.?5555.?4444"),
       re.compile(r"555[ -]?01\d\d")]


PII_CONVS = {i.event.conversation_id for i in ITEMS if any(p.search(i.event.text) for p in PII)}
CLEAN = [i for i in ITEMS if i.event.conversation_id not in PII_CONVS]


def replay(pipe, items=ITEMS, feedback=True):
    for item in items:
        pipe.publish(item.event)
        if feedback and item.feedback:
            pipe.broker.produce(pipe.topics.feedback, item.event.conversation_id.encode(),
                                pipe.codec.encode("AgentFeedback", item.feedback, pipe.topics.feedback))
        pipe.run()


def chaos(stage, **cfg):
    wraps = {"classify": "tfidf-logreg", "validate": "tfidf-logreg", "generate": "extractive", "context": "extractive"}[stage]
    return ComponentSpec(stage, "chaos", "1", {"wraps": {"name": wraps}, **cfg})


def test_injected_disagreement_is_measured_exactly():
    """On conversations without PII the mirror passes inputs unchanged, so only the injection differs."""
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "classify", chaos("classify", disagree_rate=0.2, seed="t1"))
    replay(pipe, CLEAN)
    stats = h.result()
    compared = [c for c in h.comparisons() if c["status"] == "matched"]
    injected = sum(chosen(c["event_id"], 0.2, "t1") for c in compared)
    assert stats.samples == len(compared) > 50
    assert stats.samples - stats.agree == injected  # the identical model otherwise agrees
    assert stats.production == "tfidf-logreg@1" and stats.candidate == "chaos@1"


def test_identical_candidate_agrees_fully_and_outcomes_are_scored():
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "generate", ComponentSpec("generate", "extractive", "2", {}))
    replay(pipe, CLEAN)
    stats = h.result()
    assert stats.samples > 40 and stats.agree == stats.samples
    assert stats.prod_total > 0 and stats.cand_total > 0
    assert stats.prod_match == stats.cand_match  # same text, same outcome
    assert sum(stats.grid.values()) == stats.prod_total


def test_errors_and_timeouts_are_counted_not_compared():
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "classify", chaos("classify", error_rate=0.5, seed="e"), timeout_s=2.0)
    replay(pipe, ITEMS[:20], feedback=False)
    stats = h.result()
    assert stats.candidate_errors > 0 and stats.samples > 0
    errors = [c for c in h.comparisons() if c["candidate_error"]]
    assert errors and all("injected failure" in c["candidate_error"] for c in errors)
    # production did not notice
    assert pipe.metrics.events[("classify", "error")] == 0


def test_hanging_candidate_times_out_per_event():
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "validate", chaos("validate", hang_rate=0.3, seed="h"), timeout_s=0.2)
    replay(pipe, ITEMS[:6], feedback=False)
    comps = h.comparisons()
    assert any("timeout" in (c["candidate_error"] or "") for c in comps)
    assert h.result().samples > 0  # it moved on after each timeout


def test_redaction_noise_is_caught_by_the_replica_and_netted_out():
    """PII redaction changes a candidate's inputs; the replica sees the same redacted inputs, so an
    identical candidate's disagreement equals the noise floor and its net disagreement is zero."""
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "generate", ComponentSpec("generate", "extractive", "2", {}), replica=True)
    replay(pipe, feedback=False)
    stats = h.result()
    assert stats.samples == stats.noise_samples > 50
    assert stats.samples - stats.agree == stats.noise_samples - stats.noise_agree > 0
    assert stats.net_disagreement == 0.0


def test_replica_gives_zero_noise_for_a_deterministic_stage():
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "classify", chaos("classify", disagree_rate=0.2, seed="n"), replica=True)
    replay(pipe, CLEAN[:60], feedback=False)
    stats = h.result()
    assert stats.noise_samples > 0 and stats.noise_disagreement == 0.0
    assert stats.net_disagreement == pytest.approx(stats.disagreement)


def test_no_pii_on_shadow_or_compare_topics():
    pipe = InMemoryPipeline()
    ShadowHarness(pipe, "context", ComponentSpec("context", "extractive", "2", {}))
    ShadowHarness(pipe, "generate", ComponentSpec("generate", "extractive", "2", {}))
    replay(pipe)
    seeded = [i.event.text for i in ITEMS if any(p.search(i.event.text) for p in PII)]
    assert len(seeded) >= 5  # the samples really carry PII ...
    leaked = []
    for topic, log in pipe.broker.logs.items():
        if topic.startswith(("shadow.", "compare.")):
            for _, value in log:
                text = value.decode("utf-8", "replace")
                leaked += [p.pattern for p in PII if p.search(text)]
    assert not leaked  # ... and none of it reaches the shadow side
    assert pipe.broker.logs["shadow.context.in"]  # which did receive traffic


def test_sampling_mirrors_whole_conversations_at_the_configured_rate():
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "context", ComponentSpec("context", "extractive", "2", {}), rate=0.5)
    replay(pipe, feedback=False)
    mirrored = {pipe.codec.decode(v, "ConversationEvent")["conversation_id"] for _, v in pipe.broker.logs["shadow.context.in"]}
    all_convs = {i.event.conversation_id for i in ITEMS}
    assert 0.3 < len(mirrored) / len(all_convs) < 0.7
    per_conv = {c: sum(1 for i in ITEMS if i.event.conversation_id == c) for c in mirrored}
    assert h.mirror.mirrored == sum(per_conv.values())  # every event of a sampled conversation


def test_a_candidate_answering_after_the_window_is_counted_once_as_missing():
    from agents.records import ConversationEvent

    now = [1000.0]
    pipe = InMemoryPipeline()
    h = ShadowHarness(pipe, "classify", ComponentSpec("classify", "tfidf-logreg", "2", {}), window_s=5.0, clock=lambda: now[0])
    candidate = [s for s in pipe.subscribers if s[0].startswith("candidate-")][0]
    pipe.subscribers.remove(candidate)  # the candidate is down ...
    pipe.publish(ConversationEvent("late-1", "late", "customer", "How do I reset my password?", 1))
    pipe.run()
    now[0] += 10.0  # ... past the window
    for out in h.comparator.sweep():
        pipe.broker.produce(out.topic, out.key, out.value)
    pipe.subscribers.append(candidate)  # it comes back and answers late
    pipe.run()
    stats = h.result()
    statuses = [c["status"] for c in h.comparisons()]
    assert statuses == ["missing_candidate"] and stats.missing_candidate == 1 and stats.samples == 0
