"""Guardrail tier 1 (compliance rules, language id, per-embedder threshold) and tier 2 (LLM evaluator via FakeChat)."""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import replace
from io import BytesIO

import pytest
from fastavro import schemaless_writer

from agents.base import ComponentSpec, Resources, build
from agents.compliance import DEFAULT_RULES, ComplianceRules
from agents.guardrail import DEFAULT_THRESHOLD, DEFAULT_THRESHOLDS, SlidingWindowGuardrail, threshold_for
from agents.language import LanguageDetector, base_language, customer_language
from agents.llm import FakeChat, OpenAIChat
from agents.records import Context, ConversationEvent, Generation, Guardrail, Hit, Message, Tone, Turn
from kb_index.articles import load_articles
from kb_index.embedder import HashingEmbedder
from kb_index.index import KbIndex
from schemas.catalog import Catalog
from schemas.codec import MARKER, SingleObjectCodec
from schemas.topics import Topics
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ConfigError, LLMError
from streams.processor import StageProcessor

SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="module")
def index() -> KbIndex:
    return KbIndex.build(load_articles(SAMPLES / "kb"), HashingEmbedder())


@pytest.fixture(scope="module")
def stages(index: KbIndex) -> dict:
    res = Resources(Settings(), embedder=index.embedder, kb_index=index)
    return {s: build(ComponentSpec(s, n), res) for s, n in
            [("retrieve", "faiss"), ("generate", "extractive"), ("tone", "rules"), ("guardrail", "sliding-window")]}


def answered(stages: dict, text: str, locale: str | None = "en", history: tuple[Message, ...] = (),
             summary: str = "") -> Turn:
    """A turn through retrieve -> generate -> tone, as the guardrail receives it."""
    turn = Turn.start(ConversationEvent("ev-1", "conv-1", "customer", text, 1_000, locale=locale), 1_001)
    if history or summary:
        turn = replace(turn, context=Context(summary, history, len(history)))
    for stage in ("retrieve", "generate", "tone"):
        out = stages[stage].process(turn)
        assert not out.rejected, (stage, out.reason)
        turn = replace(turn, **{stage: out.output})
    return turn


def with_body(turn: Turn, body: str) -> Turn:
    return replace(turn, generate=Generation(body, (), "test"), tone=Tone(body, (), ()))


# -- compliance rules ----------------------------------------------------------------------------

@pytest.mark.parametrize("rule, bad, fine", [
    ("refund-promise", "We will refund you the full amount today.", "We won't refund delivery fees for on-time orders."),
    ("refund-promise", "You'll get a full refund by tomorrow.", "Refunds to a card take 5-10 business days."),
    ("guarantee", "Your parcel is guaranteed to arrive tomorrow.", "The new slot can't be guaranteed."),
    ("guarantee", "I'm 100% sure it will be fixed.", "The fee is 2% of the order."),
    ("legal-advice", "You could sue the courier for the damage.", "Please contact a lawyer if you have legal questions."),
    ("legal-advice", "Under consumer law, you are owed a replacement.", "We keep transaction records for 7 years."),
    ("medical-advice", "Try taking an antihistamine if the rash gets worse.", "Allergen details are on the product page."),
    ("medical-advice", "It's safe to eat if it was refrigerated.", "Report damaged items within 48 hours."),
    ("credential-request", "Please send us your password so we can check.", "Parcelpay will never ask for your password."),
    ("credential-request", "Reply with your full card number and expiry date.", "Include the last 4 digits of the card."),
])
def test_each_default_rule_hits_what_it_names_and_spares_the_benign(rule: str, bad: str, fine: str) -> None:
    rules = ComplianceRules()
    hits = rules.check(bad)
    assert [v.rule for v in hits] == [rule], hits
    assert hits[0].sentence == bad and hits[0].matched.lower() in bad.lower()
    assert rules.check(fine) == ()


def test_no_default_rule_fires_on_the_real_agent_replies_in_the_samples() -> None:
    replies = [t["text"] for line in (SAMPLES / "conversations.jsonl").read_text().splitlines()
               for t in json.loads(line)["turns"] if t["role"] == "agent"]
    assert len(replies) >= 100
    rules = ComplianceRules()
    assert [(r, rules.check(r)) for r in replies if rules.check(r)] == []


def test_a_promise_the_retrieved_kb_makes_itself_is_allowed() -> None:
    rules = ComplianceRules()
    answer = "If the store cancels, you get a full refund, including the delivery fee."
    kb = "If a store cancels because items are unavailable or it's closing early, you get a full refund, including the delivery fee."
    assert [v.rule for v in rules.check(answer)] == ["refund-promise"]
    assert rules.check(answer, kb_text=kb) == ()
    # A KB sentence that denies the promise does not license it.
    assert [v.rule for v in rules.check("Delivery in the new slot is guaranteed.",
                                        kb_text="We can ask the courier to adjust, but it isn't guaranteed.")] == ["guarantee"]


def test_config_overrides_disables_and_adds_rules() -> None:
    rules = ComplianceRules.from_config([
        {"name": "guarantee", "severity": "block"},
        {"name": "medical-advice", "enabled": False},
        {"name": "competitor", "keywords": ["Deliveroo", "Uber Eats"], "severity": "review"},
    ])
    names = {r.name: r for r in rules.rules}
    assert names["guarantee"].severity == "block" and names["guarantee"].pattern == DEFAULT_RULES[1].pattern
    assert "medical-advice" not in names and len(rules.rules) == len(DEFAULT_RULES)
    hits = rules.check("Try taking an antihistamine. Uber Eats is faster. Delivery is guaranteed.")
    assert [(v.rule, v.severity) for v in hits] == [("guarantee", "block"), ("competitor", "review")]
    assert ComplianceRules.from_config(None).rules == DEFAULT_RULES


@pytest.mark.parametrize("entries, message", [
    ({"name": "x"}, "expected a list"),
    ([{"pattern": "x"}], "'name'"),
    ([{"name": "x", "pattern": "(unclosed"}], "invalid regular expression"),
    ([{"name": "x"}], "needs 'pattern' or 'keywords'"),
    ([{"name": "x", "pattern": "a", "severity": "warn"}], "severity must be one of block, review"),
    ([{"name": "x", "pattern": "a", "colour": "red"}], "unknown key(s) colour"),
    ([{"name": "x", "pattern": "a", "allow_in_kb": "yes"}], "allow_in_kb"),
])
def test_bad_rule_config_is_a_config_error(entries, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ComplianceRules.from_config(entries)


def test_guardrail_fails_a_blocked_answer_and_names_the_rule(stages: dict) -> None:
    turn = answered(stages, "how do i cancel plus")
    body = turn.generate.text + " To verify you, please send us your password."
    out = stages["guardrail"].process(with_body(turn, body))
    assert out.rejected and out.output.verdict == "fail" and out.output.check == "compliance:credential-request"
    assert out.reason.startswith("compliance: credential-request (block): 'send us your password'")


def test_review_rule_escalates_without_an_evaluator_and_tier2_decides_with_one(stages: dict, index: KbIndex) -> None:
    turn = answered(stages, "how long does a refund take to reach my card")
    body = turn.generate.text + " I promise it will be quick."
    offline = stages["guardrail"].process(with_body(turn, body))
    assert offline.rejected and offline.output.check == "compliance:guarantee" and offline.output.tier == 1
    assert offline.reason.startswith("compliance: guarantee (review): 'I promise'; ungrounded: 1 of ")
    chat = FakeChat(lambda s, u: json.dumps({"grounded": True, "coherent": True, "compliant": True,
                                             "verdict": "pass", "rationale": "a courtesy, no concrete promise"}))
    tier2 = SlidingWindowGuardrail(index.embedder, chat=chat).process(with_body(turn, body))
    assert not tier2.rejected and tier2.output.tier == 2 and tier2.output.check == ""
    assert "guarantee (review): 'I promise'" in chat.calls[0][1]


# -- language ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, lang", [
    ("Wo ist mein Paket? Ich warte schon seit einer Woche darauf.", "de"),
    ("Mon colis n'est toujours pas arrivé, pouvez-vous vérifier ?", "fr"),
    ("Hola, devolví unas zapatillas hace una semana y todavía no veo el reembolso en mi tarjeta.", "es"),
    ("Il mio ordine è arrivato danneggiato e vorrei un rimborso.", "it"),
    ("Meu cartão foi recusado duas vezes hoje, o que está acontecendo?", "pt"),
    ("Card refunds take 5-10 business days, depending on your bank.", "en"),
])
def test_detects_real_sentences_in_their_language(text: str, lang: str) -> None:
    d = LanguageDetector().detect(text)
    assert d.decided and d.lang == lang and d.confidence >= 0.8 and d.source == "text"


@pytest.mark.parametrize("text", ["Danke!", "Hola", "ok thanks", "Merci beaucoup", "Order #4411-2290-7781!!"])
def test_too_short_texts_are_not_judged(text: str) -> None:
    d = LanguageDetector().detect(text)
    assert not d.decided and d.source == "too-short"


def test_unsure_and_configured_detectors() -> None:
    assert LanguageDetector(min_chars=1).detect("Merci beaucoup").source == "unsure"  # p=0.48: too ambiguous
    restricted = LanguageDetector(languages=["en", "es"])
    assert restricted.detect("Mon colis n'est toujours pas arrivé, pouvez-vous vérifier ?").lang in ("en", "es", None)
    with pytest.raises(ConfigError, match="xx"):
        LanguageDetector(languages=["en", "xx"])
    with pytest.raises(ConfigError):
        LanguageDetector.from_config({"languages": "en"})
    with pytest.raises(ConfigError):
        LanguageDetector(min_confidence=1.5)
    assert [base_language(x) for x in ("es-MX", "pt_BR", "EN", "", None)] == ["es", "pt", "en", None, None]


def test_customer_language_prefers_the_locale_then_their_own_messages() -> None:
    detector = LanguageDetector()
    event = ConversationEvent("e", "c", "customer", "Hola", 1, locale="es-ES")
    assert customer_language(Turn.start(event, 1), detector).lang == "es"
    bare = Turn.start(replace(event, locale=None), 1)
    assert not customer_language(bare, detector).decided  # "Hola" alone is too short
    history = (Message("customer", "Mi pedido no ha llegado y ya pasaron dos horas desde la hora prevista.", 1),
               Message("customer", "Hola", 2))
    assert customer_language(replace(bare, context=Context("", history, 1)), detector).lang == "es"


def test_guardrail_fails_an_answer_in_another_language(stages: dict) -> None:
    english = answered(stages, "I returned some sneakers a week ago and still don't see the refund on my card.")
    spanish = "Hola, devolví unas zapatillas hace una semana y todavía no veo el reembolso en mi tarjeta."
    turn = replace(english, event=replace(english.event, text=spanish, locale="es"))
    out = stages["guardrail"].process(turn)
    assert out.rejected and out.output.check == "language" and out.output.tier == 1
    assert out.reason.startswith("language: the answer is in en") and "customer's language is es (from the locale)" in out.reason
    unchecked = SlidingWindowGuardrail(stages["guardrail"].embedder, check_language=False).process(turn)
    assert not unchecked.rejected  # the same answer is grounded: language was the only problem
    assert not stages["guardrail"].process(replace(turn, event=replace(turn.event, locale=None, text="Hola"))).rejected


# -- tier 2 --------------------------------------------------------------------------------------

def evaluator(reply: dict | str) -> FakeChat:
    return FakeChat(lambda s, u: reply if isinstance(reply, str) else json.dumps(reply), model="judge")


def flagged(stages: dict) -> Turn:
    history = (Message("customer", "I returned a lamp last week", 1), Message("agent", "Thanks, we got it.", 2),
               Message("customer", "so when do I get my money back on my card?", 3))
    turn = answered(stages, "so when do I get my money back on my card?", history=history,
                    summary="refund timing to a card for a returned lamp")
    return with_body(turn, turn.generate.text + " We will also send you a voucher for a free lamp by courier.")


def test_tier2_sees_the_conversation_and_passes(stages: dict, index: KbIndex) -> None:
    chat = evaluator({"grounded": True, "coherent": True, "compliant": True, "verdict": "pass", "rationale": "ok"})
    out = SlidingWindowGuardrail(index.embedder, chat=chat).process(flagged(stages))
    assert not out.rejected and out.output.verdict == "pass" and out.output.tier == 2 and out.output.unsupported
    system, user = chat.calls[0]
    assert "coherent" in system and "legal or medical advice" in system
    assert "customer: I returned a lamp last week" in user and "agent: Thanks, we got it." in user
    assert "Summary of the customer's issue: refund timing to a card for a returned lamp" in user
    assert user.count("so when do I get my money back on my card?") == 1
    assert "voucher for a free lamp" in user.split("Passages a similarity check could not match")[1]


def test_tier2_fail_and_self_contradiction_name_the_failed_aspects(stages: dict, index: KbIndex) -> None:
    fail = evaluator({"grounded": False, "coherent": True, "compliant": False, "verdict": "fail",
                      "rationale": "invents a voucher"})
    out = SlidingWindowGuardrail(index.embedder, chat=fail).process(flagged(stages))
    assert out.rejected and out.output.check == "llm:grounded,compliant" and "invents a voucher" in out.reason
    contradiction = evaluator({"grounded": False, "verdict": "pass", "rationale": "fine"})
    out = SlidingWindowGuardrail(index.embedder, chat=contradiction).process(flagged(stages))
    assert out.rejected and out.output.verdict == "fail" and out.output.check == "llm:grounded"


@pytest.mark.parametrize("reply, message", [
    ("I think it is fine", "expected a JSON object"),
    ('{"verdict": "pass", "grounded": "yes"}', "true or false"),
    ('{"verdict": "pass",, }', "invalid JSON"),
])
def test_malformed_evaluator_replies_are_llm_errors_and_escalations_as_data(stages: dict, index: KbIndex, reply, message) -> None:
    guardrail = SlidingWindowGuardrail(index.embedder, chat=evaluator(reply))
    turn = flagged(stages)
    with pytest.raises(LLMError, match=message):
        guardrail.process(turn)
    # In the stream the error becomes data: an escalation, never an exception.
    proc = StageProcessor("guardrail", guardrail, SingleObjectCodec(), Topics())
    after, outcome = proc.run(turn)
    assert outcome.rejected and outcome.reason.startswith("error: ") and after.trace[-1].status == "error"
    outs = proc.router(proc, after, outcome)
    assert [o.topic for o in outs] == [Topics().escalations]


def test_without_an_evaluator_a_flagged_answer_goes_to_a_human(stages: dict) -> None:
    out = stages["guardrail"].process(flagged(stages))
    assert out.rejected and out.output.tier == 1 and out.output.check == "grounding"
    assert out.reason.startswith("ungrounded: ")


def test_openai_adapter_maps_server_errors_to_llm_error() -> None:
    """A real HTTP server on loopback: a 500 and a 200 that is not JSON (a proxy's error page)."""
    reply = {"status": 500, "body": b'{"error": {"message": "overloaded"}}'}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(reply["status"])
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chat = OpenAIChat("m", f"http://127.0.0.1:{server.server_port}/v1", None, timeout_s=5)
        with pytest.raises(LLMError, match="InternalServerError"):
            chat.complete("s", "u", json_mode=True)
        reply.update(status=200, body=b"<html>gateway</html>")
        with pytest.raises(LLMError, match="JSONDecodeError"):
            chat.complete("s", "u", json_mode=True)
    finally:
        server.shutdown()


# -- thresholds and records ----------------------------------------------------------------------

class _OtherEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.name = "uncalibrated-embedder"


def test_threshold_is_per_embedder_and_unknown_embedders_need_one(index: KbIndex) -> None:
    assert threshold_for(index.embedder) == DEFAULT_THRESHOLD == SlidingWindowGuardrail(index.embedder).threshold
    other = _OtherEmbedder()
    assert DEFAULT_THRESHOLDS["minilm"] == 0.43  # calibrated on DSTC11 (docs/dstc11.md)
    with pytest.raises(ConfigError, match="no calibrated threshold for embedder 'uncalibrated-embedder'"):
        SlidingWindowGuardrail(other)
    assert SlidingWindowGuardrail(other, threshold=0.6).threshold == 0.6
    res = Resources(Settings(), embedder=other, kb_index=index)
    with pytest.raises(ConfigError, match="set 'threshold'"):
        build(ComponentSpec("guardrail", "sliding-window"), res)
    assert build(ComponentSpec("guardrail", "sliding-window", config={"threshold": "0.55"}), res).threshold == 0.55
    with pytest.raises(ConfigError):
        threshold_for(other, 1.5)


def test_turns_written_before_the_check_field_still_decode() -> None:
    codec = SingleObjectCodec(Catalog())
    old = next(v for v in codec.catalog.versions("TurnState")
               if v.fingerprint != codec.catalog.current("TurnState").fingerprint)
    turn = Turn(ConversationEvent("e", "c", "customer", "hi", 1), 2,
                guardrail=Guardrail("fail", 0.4, ("x",), 1, "why"))
    record = turn.to_record()
    record["guardrail"].pop("check")
    bio = BytesIO()
    bio.write(MARKER + old.fingerprint)
    schemaless_writer(bio, old.parsed, record)
    decoded = Turn.from_record(codec.decode(bio.getvalue(), "TurnState"))
    assert decoded.guardrail == Guardrail("fail", 0.4, ("x",), 1, "why", "")
    new = replace(turn, guardrail=replace(turn.guardrail, check="language"))
    assert Turn.from_record(codec.decode(codec.encode("TurnState", new.to_record()), "TurnState")) == new


def test_hits_text_feeds_the_kb_exemption(stages: dict) -> None:
    """The KB exemption reads the retrieved hits: the same promise passes with them, fails without."""
    turn = answered(stages, "the store cancelled my order because items were unavailable, do I get my money back?")
    body = "If a store cancels because items are unavailable or it's closing early, you get a full refund, including the delivery fee."
    kb_hit = Hit("c1", "kb-orders-001", "Cancelling an order", body, 0.9)
    with_kb = replace(with_body(turn, body), retrieve=replace(turn.retrieve, hits=(kb_hit,)))
    assert not stages["guardrail"].process(with_kb).rejected
    without = replace(with_kb, retrieve=replace(turn.retrieve, hits=()))
    out = stages["guardrail"].process(without)
    assert out.rejected and "refund-promise" in out.reason
