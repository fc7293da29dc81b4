"""The quality judge: deterministic sampling, rule scores, the LLM judge via FakeChat, the I/O-free worker handler."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from agents.base import ComponentSpec, Resources, build
from agents.judge import ASPECTS, CALIBRATION, Judgment, LLMJudge, RuleJudge, grammar_score, sampled
from agents.llm import FakeChat
from agents.records import Classification, Context, ConversationEvent, Generation, Hit, Message, Tone, Turn
from kb_index.articles import load_articles
from kb_index.embedder import HashingEmbedder
from kb_index.index import KbIndex
from schemas.codec import SingleObjectCodec
from schemas.topics import Topics
from shadow.review import item_from
from shadowline.analytics import JUDGMENT_ASPECTS, judgment_row
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ConfigError, LLMError
from streams.judging import JudgeHandler
from streams.messages import Inbound
from streams.routing import suggestion_record

TOPICS = Topics()
CODEC = SingleObjectCodec()


@pytest.fixture(scope="module")
def index() -> KbIndex:
    return KbIndex.build(load_articles(REPO_ROOT / "samples" / "kb"), HashingEmbedder())


@pytest.fixture(scope="module")
def resources(index: KbIndex) -> Resources:
    return Resources(Settings(), embedder=index.embedder, kb_index=index)


@pytest.fixture(scope="module")
def stages(resources: Resources) -> dict:
    return {s: build(ComponentSpec(s, n), resources) for s, n in
            [("classify", "tfidf-logreg"), ("retrieve", "faiss"), ("generate", "extractive"), ("tone", "rules"),
             ("guardrail", "sliding-window")]}


@pytest.fixture(scope="module")
def rules(resources: Resources) -> RuleJudge:
    return build(ComponentSpec("judge", "rules"), resources)


def suggested(stages: dict, text: str, event_id: str = "ev-1", conversation: str = "conv-1",
              history: tuple[Message, ...] = (), summary: str = "") -> Turn:
    """A turn as it reaches support.suggestions: every stage ok."""
    turn = Turn.start(ConversationEvent(event_id, conversation, "customer", text, 1_000, locale="en"), 1_001)
    turn = replace(turn, context=Context(summary or text, history, len(history)))
    for stage in ("classify", "retrieve", "generate", "tone", "guardrail"):
        out = stages[stage].process(turn)
        assert not out.rejected, (stage, out.reason)
        turn = replace(turn, **{stage: out.output})
    return turn


# -- sampling ------------------------------------------------------------------------------------

def test_sampling_is_deterministic_proportional_and_salted() -> None:
    keys = [f"ev-{i}" for i in range(20_000)]
    first = [sampled(k, 0.2) for k in keys]
    assert first == [sampled(k, 0.2) for k in keys]
    share = sum(first) / len(keys)
    assert abs(share - 0.2) < 3 * np.sqrt(0.2 * 0.8 / len(keys))  # within 3 sigma of a binomial
    review = [sampled(k, 0.2, salt="review") for k in keys]
    both = sum(a and b for a, b in zip(first, review)) / len(keys)
    assert abs(both - 0.04) < 0.01  # independent samples overlap by rate * rate
    assert all(sampled(k, 1.0) for k in keys[:50]) and not any(sampled(k, 0.0) for k in keys[:50])
    assert [k for k in keys[:200] if sampled(k, 0.1)] == [k for k in keys[:200] if sampled(k, 0.1)]
    assert set(k for k in keys[:500] if sampled(k, 0.1)) <= set(k for k in keys[:500] if sampled(k, 0.3))


# -- rule judge ----------------------------------------------------------------------------------

def test_a_grounded_on_topic_answer_scores_well_on_every_aspect(stages: dict, rules: RuleJudge) -> None:
    turn = suggested(stages, "how long does a refund take to reach my card")
    scores = rules.process(turn).output
    assert set(scores.values) == set(ASPECTS)
    assert all(0.0 <= v <= 1.0 for v in scores.values.values())
    assert all(scores.values[a] >= 0.5 for a in ASPECTS), scores
    assert scores.values["accuracy"] == pytest.approx(turn.guardrail.support, abs=1e-4)
    assert "topic refunds vs refunds" in scores.rationale and "language: en" in scores.rationale


def test_retrieval_score_falls_with_topic_mismatch_and_without_hits(stages: dict, rules: RuleJudge) -> None:
    turn = suggested(stages, "how long does a refund take to reach my card")
    good = rules.process(turn).output.values["retrieval"]
    wrong_topic = rules.process(replace(turn, classify=Classification("security", 0.9))).output.values["retrieval"]
    assert wrong_topic <= good - 0.5
    assert rules.process(replace(turn, retrieve=replace(turn.retrieve, hits=()))).output.values["retrieval"] == 0.0


def test_an_unrelated_answer_loses_coherence_and_relevance(stages: dict, rules: RuleJudge) -> None:
    turn = suggested(stages, "how do i cancel plus")
    other = suggested(stages, "my card keeps getting declined when I try to pay")
    good = rules.process(turn).output.values
    swapped = rules.process(replace(turn, generate=other.generate, tone=other.tone)).output.values
    assert good["relevance"] >= 0.5 and good["coherence"] >= 0.5
    assert swapped["relevance"] < 0.5 and swapped["coherence"] < 0.5


def test_language_score_is_zero_for_another_language_and_grammar_counts(stages: dict, rules: RuleJudge) -> None:
    turn = suggested(stages, "how long does a refund take to reach my card")
    spanish = replace(turn, event=replace(turn.event, locale="es"))
    assert rules.process(spanish).output.values["language"] == 0.0
    sloppy = "card refunds take 5-10 business days days depending on your bank . the wallet is instant"
    sloppy_turn = replace(turn, generate=Generation(sloppy, (), "x"), tone=Tone(sloppy, (), ()))
    assert rules.process(sloppy_turn).output.values["language"] < 0.5


def test_grammar_heuristics() -> None:
    assert grammar_score("Card refunds take 5-10 business days. The wallet is instant!") == (1.0, [])
    score, problems = grammar_score("Refunds take the the usual time. Maybe i can help. Fine (mostly.")
    assert score == 0.0 and len(problems) == 3
    assert "doubled word 'the'" in problems[0] and "lowercase 'i'" in problems[1] and "unbalanced" in problems[2]
    assert grammar_score("Call 555 555 0100 now.")[0] == 1.0  # repeated digits are not a doubled word
    assert grammar_score("")[0] == 0.0


def test_judge_needs_a_calibration_for_its_embedder(index: KbIndex) -> None:
    other = HashingEmbedder()
    other.name = "minilm"
    with pytest.raises(ConfigError, match="no calibration for embedder 'minilm'"):
        RuleJudge(other)
    res = Resources(Settings(), embedder=other, kb_index=index)
    with pytest.raises(ConfigError, match="both"):
        build(ComponentSpec("judge", "rules", config={"similarity": [0.1, 0.5]}), res)
    judge = build(ComponentSpec("judge", "rules", config={"hit_score": [0.2, 0.6], "similarity": [0.1, 0.5]}), res)
    assert judge.calibration.similarity == (0.1, 0.5)
    with pytest.raises(ConfigError):
        build(ComponentSpec("judge", "rules", config={"hit_score": [0.6, 0.2], "similarity": [0.1, 0.5]}), res)
    assert "hashing-v1" in CALIBRATION


# -- LLM judge -----------------------------------------------------------------------------------

def llm_reply(**overrides) -> FakeChat:
    reply = {"retrieval": 1, "accuracy": 0.9, "language": 1.0, "coherence": 0.8, "relevance": 0.7,
             "rationale": "cites the refund article"} | overrides
    return FakeChat(lambda s, u: f"```json\n{json.dumps(reply)}\n```", model="judge-model")


def test_llm_judge_scores_five_aspects_from_the_conversation(stages: dict, resources: Resources) -> None:
    history = (Message("customer", "I returned a lamp last week", 1), Message("agent", "Thanks, we got it.", 2))
    turn = suggested(stages, "when do I get my money back on my card?", history=history,
                     summary="refund timing to a card for a returned lamp")
    chat = llm_reply()
    judge = build(ComponentSpec("judge", "openai", "2"), Resources(Settings(), chat=chat))
    scores = judge.process(turn).output
    assert scores.values == {"retrieval": 1.0, "accuracy": 0.9, "language": 1.0, "coherence": 0.8, "relevance": 0.7}
    assert scores.rationale == "cites the refund article"
    system, user = chat.calls[0]
    assert all(a in system for a in ASPECTS) and "JSON" in system
    assert "customer: I returned a lamp last week" in user and "refund timing to a card" in user
    assert f"Classified topic: {turn.classify.topic}" in user and turn.retrieve.hits[0].title in user
    assert turn.tone.text in user


@pytest.mark.parametrize("bad", [{"accuracy": 1.5}, {"language": "high"}, {"coherence": True}, {"relevance": None}])
def test_llm_judge_rejects_out_of_range_or_missing_scores(stages: dict, bad: dict) -> None:
    turn = suggested(stages, "how do i cancel plus")
    with pytest.raises(LLMError, match=f"judge score '{next(iter(bad))}'"):
        LLMJudge(llm_reply(**bad)).process(turn)
    with pytest.raises(LLMError, match="expected a JSON object"):
        LLMJudge(FakeChat(lambda s, u: "all good")).process(turn)
    assert LLMJudge(llm_reply()).process(replace(turn, generate=None, tone=None)).rejected


# -- the worker's handler ------------------------------------------------------------------------

def message(turn: Turn, offset: int = 0) -> Inbound:
    value = CODEC.encode("Suggestion", suggestion_record(turn, 2_000), TOPICS.suggestions)
    return Inbound(TOPICS.suggestions, 0, offset, turn.event.conversation_id.encode(), value)


def test_handler_turns_sampled_suggestions_into_judgment_records(stages: dict, rules: RuleJudge) -> None:
    base = suggested(stages, "how long does a refund take to reach my card")
    turns = [replace(base, event=replace(base.event, event_id=f"ev-{i}")) for i in range(30)]
    handler = JudgeHandler(rules, CODEC, TOPICS, rate=0.3)
    judged = {}
    for i, t in enumerate(turns):
        for out in handler.handle(message(t, i)):
            assert out.topic == TOPICS.judgments and out.key == b"conv-1"
            record = CODEC.decode(out.value, "Judgment", out.topic)
            judged[record["event_id"]] = record
    assert set(judged) == {t.event.event_id for t in turns if sampled(t.event.event_id, 0.3)}
    assert 0 < len(judged) < len(turns) and handler.judged == len(judged) and handler.skipped == 30 - len(judged)
    record = next(iter(judged.values()))
    assert record["judge"] == "rules@1" and record["suggestion_id"] == f"sug-{record['event_id']}"
    assert record["judgment_id"] == f"jdg-{record['event_id']}-rules-1" and set(record["scores"]) == set(ASPECTS)
    assert record["rationale"] and record["created_ms"] > 0
    assert Judgment.from_record(record).to_record() == record
    row = judgment_row(record)  # the `shadowline query` judgments table reads it
    assert row["score_accuracy"] == record["scores"]["accuracy"] and tuple(ASPECTS) == JUDGMENT_ASPECTS


def test_handler_samples_whole_conversations_when_asked(stages: dict, rules: RuleJudge) -> None:
    base = suggested(stages, "how do i cancel plus")
    turns = [replace(base, event=replace(base.event, event_id=f"e{c}-{i}", conversation_id=f"c{c}"))
             for c in range(12) for i in range(3)]
    handler = JudgeHandler(rules, CODEC, TOPICS, rate=0.5, sample_by="conversation")
    judged = {CODEC.decode(o.value, "Judgment", o.topic)["event_id"] for t in turns for o in handler.handle(message(t))}
    want = {t.event.event_id for t in turns if sampled(t.event.conversation_id, 0.5)}
    assert judged == want and len(want) % 3 == 0


def test_handler_dead_letters_judge_errors_and_undecodable_messages(stages: dict) -> None:
    turn = suggested(stages, "how do i cancel plus")
    handler = JudgeHandler(LLMJudge(FakeChat(lambda s, u: "no json here")), CODEC, TOPICS, rate=1.0)
    [out] = handler.handle(message(turn, 7))
    dead = CODEC.decode(out.value, "DeadLetter", out.topic)
    assert out.topic == TOPICS.deadletter and dead["reason"] == "judge_error" and dead["stage"] == "judge"
    assert "LLMError" in dead["detail"] and dead["offset"] == 7 and dead["payload"] == message(turn).value
    [bad] = handler.handle(Inbound(TOPICS.suggestions, 0, 8, b"k", b"\x00 not avro"))
    assert CODEC.decode(bad.value, "DeadLetter", bad.topic)["reason"] == "malformed"
    assert handler.metrics.deadletters[("judge", "judge_error")] == 1
    with pytest.raises(ConfigError):
        JudgeHandler(handler.judge, CODEC, TOPICS, rate=1.5)
    with pytest.raises(ConfigError):
        JudgeHandler(handler.judge, CODEC, TOPICS, sample_by="customer")


def test_review_item_carries_what_a_reviewer_needs(stages: dict, rules: RuleJudge) -> None:
    turn = suggested(stages, "how long does a refund take to reach my card")
    scores = rules.process(turn).output
    judgment = Judgment("jdg-ev-1-rules-1", "ev-1", "sug-ev-1", "rules@1", dict(scores.values), scores.rationale, 5)
    item = item_from(turn, judgment, "conv-1")
    assert item.item_id == "rev-ev-1-rules-1" and item.question == turn.event.text and item.answer == turn.tone.text
    assert [h["article_id"] for h in item.hits] == [h.article_id for h in turn.retrieve.hits]
    assert all(len(h["text"]) <= 600 for h in item.hits) and item.scores == scores.values
    assert type(item).from_json(item.to_json()) == item


def test_hits_without_topics_fall_back_to_the_score(stages: dict, index: KbIndex) -> None:
    turn = suggested(stages, "how long does a refund take to reach my card")
    bare = RuleJudge(index.embedder)  # no article topics known
    odd = replace(turn, retrieve=replace(turn.retrieve, hits=(Hit("x", "kb-x", "X", "text", 0.30),)))
    assert bare.process(odd).output.values["retrieval"] == 1.0
