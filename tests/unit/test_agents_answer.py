"""retrieve -> generate -> tone -> guardrail on the demo KB, offline; LLM variants through FakeChat."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from agents.base import ComponentSpec, Resources, build
from agents.generate import ExtractiveAnswer, LLMAnswer, hit_sentences
from agents.guardrail import SlidingWindowGuardrail
from agents.llm import FakeChat
from agents.records import Classification, Context, ConversationEvent, Generation, Hit, Message, Retrieval, Tone, Turn
from agents.retrieve import FaissRetriever
from agents.tone import RuleTone, is_frustrated
from kb_index.articles import load_articles
from kb_index.embedder import HashingEmbedder
from kb_index.index import KbIndex
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ConfigError, LLMError

KB_DIR = REPO_ROOT / "samples" / "kb"


@pytest.fixture(scope="module")
def index() -> KbIndex:
    return KbIndex.build(load_articles(KB_DIR), HashingEmbedder())


@pytest.fixture()
def resources(index: KbIndex) -> Resources:
    return Resources(Settings(), embedder=index.embedder, kb_index=index)


@pytest.fixture()
def stages(resources: Resources) -> dict:
    return {s: build(ComponentSpec(s, n), resources) for s, n in
            [("retrieve", "faiss"), ("generate", "extractive"), ("tone", "rules"), ("guardrail", "sliding-window")]}


def make_turn(text: str, summary: str = "", history: tuple[Message, ...] = ()) -> Turn:
    turn = Turn.start(ConversationEvent("ev-1", "conv-1", "customer", text, 1_000), 1_001)
    return replace(turn, context=Context(summary, history, len(history))) if summary or history else turn


def run(stages: dict, turn: Turn, upto: str = "guardrail") -> Turn:
    for stage in ("retrieve", "generate", "tone", "guardrail"):
        outcome = stages[stage].process(turn)
        assert not outcome.rejected, (stage, outcome.reason)
        turn = replace(turn, **{stage: outcome.output})
        if stage == upto:
            break
    return turn


def with_answer(turn: Turn, body: str, added: tuple[str, ...] = ()) -> Turn:
    return replace(turn, generate=Generation(body, (), "test"), tone=Tone(body, (), added))


# -- retrieve ----------------------------------------------------------------------------------

def test_retriever_finds_refund_timing_and_shares_resources(stages: dict, resources: Resources, index: KbIndex) -> None:
    retriever = stages["retrieve"]
    assert isinstance(retriever, FaissRetriever) and retriever.stage == "retrieve" and retriever.index is index
    out = retriever.process(make_turn("hello, I returned a lamp", summary="how long does a refund take to show up"))
    assert not out.rejected
    r = out.output
    assert r.query == "how long does a refund take to show up"  # the summary, not the raw text
    assert r.index_version == index.version and 1 <= len(r.hits) <= 4
    assert r.hits[0].article_id == "kb-refunds-001" and all(h.score >= 0.15 for h in r.hits)


def test_retriever_rejects_when_nothing_matches(stages: dict) -> None:
    out = stages["retrieve"].process(make_turn("zxqv blorft wibble"))
    assert out.rejected and out.reason.startswith("no KB article matches (best score 0.")
    assert out.reason.endswith("< 0.15)")
    assert out.output.hits and all(h.score < 0.15 for h in out.output.hits)  # near misses kept for escalation
    strict = build(ComponentSpec("retrieve", "faiss", config={"min_score": 0.99, "k": 2}), Resources(
        Settings(), embedder=stages["retrieve"].index.embedder, kb_index=stages["retrieve"].index))
    assert strict.process(make_turn("how do i cancel plus")).rejected
    assert stages["retrieve"].process(make_turn("   ")).reason == "empty query"


def test_retriever_topic_prefix(index: KbIndex) -> None:
    turn = replace(make_turn("it never arrived"), classify=Classification("delivery", 0.9))
    assert FaissRetriever(index, topic_prefix=True).query_for(turn) == "delivery: it never arrived"
    assert FaissRetriever(index).query_for(turn) == "it never arrived"
    with pytest.raises(ConfigError):
        build(ComponentSpec("retrieve", "faiss", config={"k": "many"}), Resources(Settings(), kb_index=index,
                                                                                  embedder=index.embedder))


# -- generate ----------------------------------------------------------------------------------

def test_extractive_answer_quotes_and_cites_the_right_article(stages: dict, index: KbIndex) -> None:
    turn = run(stages, make_turn("how long does it take to withdraw to my bank"), upto="generate")
    gen = turn.generate
    assert gen.model == "extractive@1" and gen.sources[0] == "kb-payments-004"
    assert set(gen.sources) <= {h.article_id for h in turn.retrieve.hits} and len(gen.sources) <= 2
    kb_text = " ".join(s for h in turn.retrieve.hits for s in hit_sentences(h))
    # Every sentence is KB text (list items may be merged under their shared lead-in).
    for part in gen.text.replace("; ", ". ").split(". "):
        assert part.rstrip(".").split(": ")[-1] in kb_text


def test_extractive_answer_picks_the_card_timing_sentence(stages: dict) -> None:
    turn = run(stages, make_turn("how many business days does a card refund take?"), upto="generate")
    assert "kb-refunds-001" in turn.generate.sources
    assert "Credit or debit card: 5-10 business days" in turn.generate.text


def test_extractive_answer_rejects_without_hits(stages: dict) -> None:
    empty = replace(make_turn("refund?"), retrieve=Retrieval("refund?", (), "v1"))
    assert stages["generate"].process(empty).rejected
    assert stages["generate"].process(make_turn("refund?")).reason == "no retrieved KB articles to answer from"


# -- tone --------------------------------------------------------------------------------------

def test_rule_tone_adds_greeting_and_closing_and_softens(stages: dict) -> None:
    turn = replace(make_turn("how do I change my email?"),
                   generate=Generation("You must verify your email first. We can't change it by chat.", (), "x"))
    out = stages["tone"].process(turn)
    assert not out.rejected and isinstance(stages["tone"], RuleTone)
    tone = out.output
    assert tone.text.startswith("Hi there") and tone.text.endswith("Is there anything else I can help you with?")
    assert "Please verify your email first." in tone.text and "We aren't able to change it by chat." in tone.text
    assert tone.edits == ("greeting", "soften-must", "soften-cant", "closing")
    assert len(tone.added) == 2 and all(a in tone.text for a in tone.added)
    conditional = replace(turn, generate=Generation("If you need to change it, tap Edit.", (), "x"))
    assert "If you need to change it, tap Edit." in stages["tone"].process(conditional).output.text


def test_rule_tone_adds_empathy_for_frustrated_customers(stages: dict) -> None:
    gen = Generation("Refunds to a card take 5-10 business days.", ("kb-refunds-001",), "x")
    angry = stages["tone"].process(replace(make_turn("I am still waiting for my refund!! This is TERRIBLE"),
                                           generate=gen)).output
    calm = stages["tone"].process(replace(make_turn("when will my refund arrive?"), generate=gen)).output
    assert "empathy" in angry.edits and "empathy" not in calm.edits
    assert len(angry.added) == len(calm.added) + 1
    empathy = [a for a in angry.added if a not in calm.added][0]
    assert "sorry" in empathy and empathy in angry.text
    assert is_frustrated("WHERE is my parcel") == (True, False)
    assert is_frustrated("Can I pay with my PIN via SMS?") == (False, False)
    assert stages["tone"].process(make_turn("hi")).rejected


# -- guardrail ---------------------------------------------------------------------------------

@pytest.mark.parametrize("question", [
    "how long does a refund take to reach my card",
    "my card keeps getting declined when I try to pay!!",
    "how do i cancel plus",
    "do you take paypal",
    "I typed the wrong street number on my order, can I change the address?",
    "my grocery order was missing the chicken and a bag of rice",
])
def test_guardrail_passes_grounded_pipeline_answers(stages: dict, question: str) -> None:
    turn = run(stages, make_turn(question))
    g = turn.guardrail
    assert g.verdict == "pass" and g.tier == 1 and g.unsupported == ()
    assert g.support >= stages["guardrail"].threshold


def test_guardrail_accepts_the_tone_rules_rewording(stages: dict) -> None:
    turn = run(stages, make_turn("can my refund go to a different card?"))
    assert "We can't send a card refund" in turn.generate.text
    assert "soften-cant" in turn.tone.edits and "We aren't able to send a card refund" in turn.tone.text
    assert turn.guardrail.verdict == "pass"


def test_guardrail_fails_sentences_from_an_unrelated_article(stages: dict, index: KbIndex) -> None:
    turn = run(stages, make_turn("how long does a refund take to reach my card"), upto="retrieve")
    as_hits = [Hit(c.chunk_id, c.article_id, c.title, c.text, 1.0) for c in index.chunks
               if c.article_id == "kb-security-001"]  # two-factor authentication
    body = " ".join(next(s for s in map(hit_sentences, as_hits) if len(s) >= 2))
    out = stages["guardrail"].process(with_answer(turn, body))
    assert out.rejected and out.reason.startswith("ungrounded: ")
    assert out.reason.endswith(" windows below threshold")
    assert out.output.verdict == "fail" and out.output.tier == 1 and out.output.support < 0.5
    assert out.output.unsupported


def test_guardrail_fails_invented_claims_next_to_grounded_ones(stages: dict) -> None:
    turn = run(stages, make_turn("how long does a refund take to reach my card"), upto="generate")
    grounded = turn.generate.text
    assert not stages["guardrail"].process(with_answer(turn, grounded)).rejected
    money = stages["guardrail"].process(with_answer(turn, grounded + " We will refund you $500 today."))
    assert money.rejected and "500" in money.output.rationale
    assert any("$500" in w for w in money.output.unsupported)
    promise = stages["guardrail"].process(
        with_answer(turn, grounded + " We will send a replacement item by courier tonight at no cost."))
    assert promise.rejected and promise.output.verdict == "fail"
    n = len(promise.output.unsupported)
    assert re.fullmatch(rf"ungrounded: {n} of \d+ windows below threshold", promise.reason)
    assert any("courier tonight" in w for w in promise.output.unsupported)


def test_guardrail_skips_sentences_the_tone_stage_added(stages: dict) -> None:
    turn = run(stages, make_turn("how do i cancel plus"), upto="generate")
    courtesy = "Our team loves helping customers like you every single day."
    body = f"{courtesy} {turn.generate.text}"
    assert stages["guardrail"].process(with_answer(turn, body)).rejected  # as a claim it is unsupported
    passed = stages["guardrail"].process(with_answer(turn, body, added=(courtesy,)))
    assert not passed.rejected and passed.output.verdict == "pass"


def judge(verdict: str, rationale: str = "checked") -> FakeChat:
    return FakeChat(lambda system, user: json.dumps(
        {"grounded": verdict == "pass", "coherent": True, "compliant": True, "verdict": verdict,
         "rationale": rationale}), model="judge")


def test_guardrail_tier2_decides_flagged_answers(index: KbIndex, stages: dict) -> None:
    turn = run(stages, make_turn("how many business days does a card refund take?"), upto="generate")
    flagged = with_answer(turn, turn.generate.text + " We will refund you $500 today.")
    chat = judge("pass", "the amount is the order total")
    res = Resources(Settings(), embedder=index.embedder, kb_index=index, chat=chat)
    tier2 = build(ComponentSpec("guardrail", "sliding-window", config={"evaluator": "openai"}), res)
    out = tier2.process(flagged)
    assert not out.rejected and out.output.verdict == "pass" and out.output.tier == 2
    assert out.output.rationale.startswith("the amount is the order total") and out.output.unsupported
    system, user = chat.calls[0]
    assert "JSON" in system and "$500" in user and "5-10 business days" in user
    tier2.process(with_answer(turn, turn.generate.text))  # tier 1 passes: the LLM is not asked
    assert len(chat.calls) == 1
    failing = SlidingWindowGuardrail(index.embedder, chat=judge("fail", "invents a $500 refund"))
    out = failing.process(flagged)
    assert out.rejected and out.output.verdict == "fail" and out.output.tier == 2 and "$500" in out.reason
    broken = SlidingWindowGuardrail(index.embedder, chat=FakeChat(lambda s, u: '{"verdict": "maybe"}'))
    with pytest.raises(LLMError, match="pass or fail"):
        broken.process(flagged)
    with pytest.raises(ConfigError):
        build(ComponentSpec("guardrail", "sliding-window", config={"evaluator": "gpt"}), res)


# -- LLM variants ------------------------------------------------------------------------------

def test_llm_answer_prompt_holds_history_summary_and_numbered_hits(stages: dict) -> None:
    history = (Message("customer", "I returned a lamp last week", 1), Message("agent", "Thanks, we got it.", 2),
               Message("customer", "so when do I get my money?", 3))
    turn = make_turn("so when do I get my money?", summary="refund timing to a card for a returned lamp",
                     history=history)
    turn = run(stages, turn, upto="retrieve")
    chat = FakeChat(lambda s, u: "Card refunds take 5-10 business days [1]. The wallet is instant [1, 2].",
                    model="gpt-test")
    answer = LLMAnswer(chat, history_turns=6)
    out = answer.process(turn)
    system, user = chat.calls[0]
    assert "ONLY" in system and "NO_ANSWER" in system
    assert "customer: I returned a lamp last week" in user and "agent: Thanks, we got it." in user
    assert "refund timing to a card for a returned lamp" in user
    assert user.count("so when do I get my money?") == 1  # the latest message once, not also as history
    for n, hit in enumerate(turn.retrieve.hits, 1):
        assert f"[{n}] {hit.title} ({hit.article_id})" in user
        assert hit_sentences(hit)[0].split(": ")[-1] in user
    gen = out.output
    assert gen.text == "Card refunds take 5-10 business days. The wallet is instant."
    cited = {turn.retrieve.hits[0].article_id, turn.retrieve.hits[1].article_id}
    assert set(gen.sources) == cited and gen.model == "openai:gpt-test"


def test_llm_answer_no_answer_rejects_and_registry_uses_shared_chat(stages: dict, index: KbIndex) -> None:
    chat = FakeChat(lambda s, u: "NO_ANSWER")
    res = Resources(Settings(), embedder=index.embedder, kb_index=index, chat=chat)
    llm = build(ComponentSpec("generate", "openai", "2"), res)
    assert isinstance(llm, LLMAnswer) and llm.chat is chat and llm.version == "2"
    turn = run(stages, make_turn("how do i cancel plus"), upto="retrieve")
    out = llm.process(turn)
    assert out.rejected and "no answer" in out.reason
    assert llm.process(make_turn("x")).rejected and len(chat.calls) == 1  # no hits: no call


def test_llm_tone_reports_added_sentences(index: KbIndex) -> None:
    reply = {"text": "Hi! Refunds take 5-10 business days. Anything else?", "added": ["Hi!", "Anything else?"]}
    chat = FakeChat(lambda s, u: f"```json\n{json.dumps(reply)}\n```")
    tone = build(ComponentSpec("tone", "openai"), Resources(Settings(), chat=chat))
    turn = replace(make_turn("refund??"), generate=Generation("Refunds take 5-10 business days.", (), "x"))
    out = tone.process(turn)
    assert out.output == Tone(reply["text"], ("llm-rewrite",), ("Hi!", "Anything else?"))
    assert "Refunds take 5-10 business days." in chat.calls[0][1]
    bad = build(ComponentSpec("tone", "openai"), Resources(Settings(), chat=FakeChat(lambda s, u: "sure!")))
    with pytest.raises(LLMError):
        bad.process(turn)


def test_components_are_registered_under_their_stage_names(resources: Resources) -> None:
    for ref, cls in [("retrieve:faiss", FaissRetriever), ("generate:extractive", ExtractiveAnswer),
                     ("tone:rules", RuleTone), ("guardrail:sliding-window", SlidingWindowGuardrail)]:
        comp = build(ComponentSpec.parse(ref + "@3"), resources)
        assert isinstance(comp, cls) and f"{comp.stage}:{comp.name}@{comp.version}" == ref + "@3"
