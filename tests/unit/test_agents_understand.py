"""Context, validate and classify components: offline models on the sample data, LLM variants on FakeChat."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from agents import base
from agents.base import ComponentSpec, Prior, Resources
from agents.classify import LLMTopicClassifier, TfidfTopicClassifier
from agents.context import ExtractiveSummary, LLMSummary, is_chitchat, is_follow_up
from agents.llm import FakeChat
from agents.records import Classification, Context, ConversationEvent, Message, Turn, Validation
from agents.textmodels import Prediction, TextModel, load_dataset, train_cached
from agents.validate import LABELS, LLMValidator, TfidfValidator
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ComponentError, LLMError

SAMPLES = REPO_ROOT / "samples"
VALIDATION_CSV = SAMPLES / "training" / "validation.csv"
TOPICS_CSV = SAMPLES / "training" / "topics.csv"
TOPICS = ("payments", "refunds", "delivery", "orders", "account", "subscriptions", "security", "promotions")


def event(text: str, role: str = "customer", n: int = 0, conv: str = "c1") -> ConversationEvent:
    return ConversationEvent(f"{conv}-{n}", conv, role, text, 1_700_000_000_000 + n)


def turn(text: str, summary: str | None = None, role: str = "customer") -> Turn:
    t = Turn.start(event(text, role), 0)
    if summary is not None:
        t = replace(t, context=Context(summary, (), 0))
    return t


def run_conversation(component, texts: list[tuple[str, str]]) -> list[Context]:
    """Feed (role, text) pairs through a context component the way the stream layer does."""
    prior, out = Prior(), []
    for i, (role, text) in enumerate(texts):
        ctx = component.process(Turn.start(event(text, role, i), 0), prior).output
        out.append(ctx)
        prior = Prior(ctx.history, ctx.summary, prior.turns + 1)
    return out


@pytest.fixture(scope="module")
def validator() -> TfidfValidator:
    return TfidfValidator(train_cached(VALIDATION_CSV, "label"))


@pytest.fixture(scope="module")
def classifier() -> TfidfTopicClassifier:
    return TfidfTopicClassifier(train_cached(TOPICS_CSV, "topic"))


@pytest.fixture(scope="module")
def resources() -> Resources:
    return Resources(Settings(samples_dir=SAMPLES, history_turns=12))


# ---------------------------------------------------------------- textmodels


def test_dataset_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,chitchat\n,answerable\n")
    with pytest.raises(ComponentError, match=r"bad\.csv:3: empty text"):
        load_dataset(bad)
    bad.write_text("text,label\nhello,chitchat\nwhere is my refund\n")
    with pytest.raises(ComponentError, match=r"bad\.csv:3: empty label"):
        load_dataset(bad)
    bad.write_text("words,label\nhello,chitchat\n")
    with pytest.raises(ComponentError, match=r"bad\.csv:1: .*'text'"):
        load_dataset(bad)
    bad.write_text("text,label\nhi,a,extra\n")
    with pytest.raises(ComponentError, match=r"bad\.csv:2: too many fields"):
        load_dataset(bad)
    with pytest.raises(ComponentError, match="missing.csv"):
        load_dataset(tmp_path / "missing.csv")


def test_sample_csvs_load() -> None:
    topics, labels = load_dataset(TOPICS_CSV), load_dataset(VALIDATION_CSV)
    assert set(topics.labels) == set(TOPICS)
    assert set(labels.labels) == set(LABELS)
    assert len(topics.texts) >= 200 and len(labels.texts) >= 200


def test_training_is_cached_and_described() -> None:
    a, b = train_cached(TOPICS_CSV), train_cached(TOPICS_CSV, "topic")
    assert a is b
    meta = a.meta
    assert meta["labels"] == sorted(TOPICS)
    assert meta["rows"] == len(load_dataset(TOPICS_CSV).texts)
    assert len(meta["data_sha256"]) == 64 and meta["sklearn_version"]
    assert meta["metrics"]["cv_folds"] == 5 and 0 < meta["metrics"]["cv_accuracy"] <= 1
    assert meta["train_seconds"] < 10  # well under 1 s on an idle core; generous for busy CI


def test_artifact_round_trip(tmp_path: Path) -> None:
    model = train_cached(VALIDATION_CSV)
    model.save(tmp_path / "v1")
    loaded = TextModel.load(tmp_path / "v1")
    probes = ["where is my refund", "hello!", "tell me a joke", "I want a manager", "asdf"]
    assert loaded.predict_many(probes) == model.predict_many(probes)
    assert loaded.labels == model.labels and loaded.version == model.version
    saved = json.loads((tmp_path / "v1" / "meta.json").read_text())
    assert saved["data_sha256"] == model.meta["data_sha256"] and saved["format"] == 1

    shutil.copytree(tmp_path / "v1", tmp_path / "stale")
    meta = json.loads((tmp_path / "stale" / "meta.json").read_text())
    (tmp_path / "stale" / "meta.json").write_text(json.dumps(dict(meta, sklearn_version="0.1")))
    with pytest.raises(ComponentError, match="scikit-learn 0.1"):
        TextModel.load(tmp_path / "stale")
    (tmp_path / "v1" / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ComponentError, match="sha256"):
        TextModel.load(tmp_path / "v1")
    with pytest.raises(ComponentError, match="not a model artifact"):
        TextModel.load(tmp_path / "nowhere")


def test_factories_train_once_or_load_model_dir(tmp_path: Path, resources: Resources) -> None:
    v1 = base.build(ComponentSpec("validate", "tfidf-logreg"), resources)
    v2 = base.build(ComponentSpec("validate", "tfidf-logreg", "2"), resources)
    assert v1.model is v2.model and v2.version == "2"
    v1.model.save(tmp_path / "art")
    spec = ComponentSpec("validate", "tfidf-logreg", "3", {"model_dir": str(tmp_path / "art"), "min_confidence": 0.5})
    v3 = base.build(spec, resources)
    assert v3.model is not v1.model and v3.min_confidence == 0.5
    t = turn("how long does a refund to my card take?")
    assert v3.process(t).output == v1.process(t).output
    c = base.build(ComponentSpec("classify", "tfidf-logreg"), resources)
    assert set(c.topics) == set(TOPICS)
    ctx = base.build(ComponentSpec("context", "extractive"), resources)
    assert ctx.max_turns == 12


# ---------------------------------------------------------------- context


@pytest.mark.parametrize("text", ["how long will that take?", "and what about the fee?", "Ah, fair. And the delivery fee?",
                                  "can you put them back?", "why?", "is it free?"])
def test_follow_ups(text: str) -> None:
    assert is_follow_up(text)


@pytest.mark.parametrize("text", ["How do I reset my password?", "Is it possible to pay with PayPal at checkout?",
                                  "My parcel says delivered but there is nothing at my door", "thanks!"])
def test_not_follow_ups(text: str) -> None:
    assert not is_follow_up(text)


@pytest.mark.parametrize("text", ["thanks!", "ok cool, thank you so much", "hello there", "Perfecto, gracias."])
def test_chitchat(text: str) -> None:
    assert is_chitchat(text)


def test_follow_up_summary_carries_the_issue() -> None:
    ctxs = run_conversation(ExtractiveSummary(), [
        ("customer", "Hi! I returned a pair of boots last week and I still haven't received my refund."),
        ("agent", "Sorry about that. Card refunds take 5-10 business days once approved."),
        ("customer", "how long will that take?"),
        ("agent", "Usually about a week."),
        ("customer", "and what about the fee?"),
    ])
    first, follow, fee = ctxs[0].summary, ctxs[2].summary, ctxs[4].summary
    assert first == "I returned a pair of boots last week and I still haven't received my refund."  # greeting dropped
    assert follow == first + " how long will that take?"
    assert fee.startswith("I returned a pair of boots") and fee.endswith("and what about the fee?")
    assert "business days" not in follow + fee  # agent text is history, never summary
    assert ctxs[1].summary == first  # agent turn keeps the customer's issue
    assert [c.turn_index for c in ctxs] == [0, 1, 2, 3, 4]
    assert ctxs[4].history[-1] == Message("customer", "and what about the fee?", ctxs[4].history[-1].ts_ms)
    assert [m.role for m in ctxs[4].history] == ["customer", "agent", "customer", "agent", "customer"]


def test_chitchat_and_new_question() -> None:
    ctxs = run_conversation(ExtractiveSummary(), [
        ("customer", "My refund for order 48213 hasn't arrived after two weeks."),
        ("agent", "It was sent on Monday; card refunds take 5-10 business days."),
        ("customer", "thanks!"),
        ("customer", "Separately, how do I change the email address on my account?"),
    ])
    assert ctxs[2].summary == "thanks!"
    assert ctxs[3].summary == "Separately, how do I change the email address on my account?"


def test_history_window_and_length_cap() -> None:
    comp = ExtractiveSummary(max_turns=3, max_chars=120)
    long_issue = "My order 5521 arrived with a cracked screen. " * 6 + "I want it replaced quickly."
    ctxs = run_conversation(comp, [("customer", long_issue), ("agent", "Sorry!"), ("customer", "ok"),
                                   ("customer", "and how long does that take?")])
    assert len(ctxs[-1].history) == 3 and ctxs[-1].history[0].text == "Sorry!"
    assert len(ctxs[0].summary) <= 120
    last = ctxs[-1].summary
    assert len(last) <= 120 and last.endswith("and how long does that take?") and last.startswith("My order 5521")


def test_agent_event_returns_context(resources: Resources) -> None:
    prior = Prior((Message("customer", "where is my parcel?", 1),), "where is my parcel?", 1)
    out = ExtractiveSummary().process(turn("It is out for delivery.", role="agent"), prior)
    assert not out.rejected and out.output.summary == "where is my parcel?"
    assert out.output.turn_index == 1 and out.output.history[-1].role == "agent"


def test_sample_conversations_summaries() -> None:
    """Every customer turn of the demo conversations gets a bounded summary built from customer text."""
    comp = ExtractiveSummary(max_chars=400)
    lines = (SAMPLES / "conversations.jsonl").read_text().splitlines()
    assert len(lines) >= 20
    for line in lines:
        conv = json.loads(line)
        turns = [(t["role"], t["text"]) for t in conv["turns"]]
        ctxs = run_conversation(comp, turns)
        customer_text = " ".join(text for role, text in turns if role == "customer")
        for (role, text), ctx in zip(turns, ctxs, strict=True):
            assert ctx.history[-1].text == text
            if role != "customer":
                continue
            assert 0 < len(ctx.summary) <= 400, conv["conversation_id"]
            for sentence in re.split(r"(?<=[.!?])\s+", ctx.summary.rstrip("\u2026")):
                assert sentence[:20].rstrip(".!?") in customer_text, (conv["conversation_id"], sentence)


def test_llm_summary_with_fake_chat() -> None:
    chat = FakeChat(lambda system, user: "Customer wants to know when the boots refund arrives.\n")
    prior = Prior((Message("customer", "I returned boots, no refund yet", 1), Message("agent", "Checking.", 2)), "", 2)
    out = LLMSummary(chat).process(turn("when will it arrive?"), prior)
    assert out.output.summary == "Customer wants to know when the boots refund arrives."
    assert "customer: I returned boots" in chat.calls[0][1] and "agent: Checking." in chat.calls[0][1]
    assert len(out.output.history) == 3 and out.output.turn_index == 2
    LLMSummary(chat).process(turn("Refund sent.", role="agent"), prior)
    assert len(chat.calls) == 1  # agent turns need no model call
    with pytest.raises(LLMError):
        LLMSummary(FakeChat(lambda s, u: "  ")).process(turn("hi"), Prior())


# ---------------------------------------------------------------- validate

# Written for this test: none of these is in validation.csv.
HELD_OUT_VALIDATION = {
    "answerable": ["How long does a refund take to reach my card?",
                   "Can I change the delivery address on an order I placed this morning?",
                   "How do I turn on two-factor authentication?", "how much does parcelpay plus cost per month",
                   "why was my payment declined at checkout", "where can I find my promo codes"],
    "chitchat": ["hello!", "thanks a lot, bye", "thank you so much", "hey, good morning to you", "lovely, cheers"],
    "out_of_scope": ["what's the population of Canada", "write me a song about dogs", "who painted the Mona Lisa",
                     "what's the weather in Berlin today", "recommend a pizza place near me"],
    "needs_human": ["I want to speak with a supervisor immediately", "I'm contacting my lawyer about this charge",
                    "the courier attacked my dog", "my mother died and I need to close her account",
                    "I'm going to take legal action against you"],
}


def test_validator_labels_held_out_examples(validator: TfidfValidator) -> None:
    misses = []
    for label, texts in HELD_OUT_VALIDATION.items():
        for text in texts:
            out = validator.process(turn(text))
            if out.output.label != label:
                misses.append((text, label, out.output.label, out.output.confidence))
            assert out.rejected == (out.output.label != "answerable" or not out.output.answerable)
    assert len(misses) <= 1, misses


def test_validator_rejects_with_reason(validator: TfidfValidator) -> None:
    out = validator.process(turn("what's the capital of Peru?"))
    assert out.rejected and isinstance(out.output, Validation)
    assert re.fullmatch(r"not answerable: out_of_scope \(p=0\.\d\d\)", out.reason)
    assert set(out.output.scores) == set(LABELS) and abs(sum(out.output.scores.values()) - 1) < 1e-3
    # Thanks after a refund question is small talk, whatever the summary says.
    thanks = validator.process(turn("thanks!", summary="I returned boots and the refund has not arrived."))
    assert thanks.rejected and thanks.output.label == "chitchat"
    ok = validator.process(turn("How long does a refund take to reach my card?"))
    assert not ok.rejected and ok.output.answerable and ok.reason is None
    strict = TfidfValidator(validator.model, min_confidence=0.9999)
    low = strict.process(turn("How long does a refund take to reach my card?"))
    assert low.rejected and low.reason.startswith("low confidence: answerable (p=")


class StubModel:
    """A TextModel stand-in with fixed answers per text: the follow-up rule without training noise."""

    labels = ("answerable", "chitchat", "needs_human", "out_of_scope")

    def __init__(self, answers: dict[str, tuple[str, float]]) -> None:
        self.answers = answers

    def predict(self, text: str) -> Prediction:
        label, p = self.answers[text]
        rest = (1 - p) / 3
        return Prediction(label, p, {k: (p if k == label else rest) for k in self.labels})


def test_validator_short_follow_up_uses_summary() -> None:
    summary = "I returned boots and the refund has not arrived. how long will that take?"
    model = StubModel({"how long will that take?": ("out_of_scope", 0.45), summary: ("answerable", 0.8),
                       "tell me about that movie": ("out_of_scope", 0.95)})
    v = TfidfValidator(model)
    out = v.process(turn("how long will that take?", summary=summary))
    assert not out.rejected and out.output.label == "answerable" and out.output.confidence == 0.8
    alone = v.process(turn("how long will that take?"))  # no context: the message decides
    assert alone.rejected and alone.output.label == "out_of_scope"
    sure = v.process(turn("tell me about that movie", summary=summary))  # confident: no override
    assert sure.rejected and sure.output.label == "out_of_scope"


def test_llm_validator_with_fake_chat() -> None:
    reply = {"label": "needs_human", "confidence": 0.9, "reason": "legal threat"}
    chat = FakeChat(lambda system, user: "Sure! ```json\n" + json.dumps(reply) + "\n```")
    v = LLMValidator(chat, company="Parcelpay")
    out = v.process(turn("I'll sue you", summary="Customer threatens legal action"))
    system, user = chat.calls[0]
    assert all(label in system for label in LABELS) and "Parcelpay" in system
    assert "I'll sue you" in user and "Customer threatens legal action" in user
    assert out.rejected and out.reason == "not answerable: needs_human (p=0.90): legal threat"
    assert out.output == Validation("needs_human", False, 0.9, {"needs_human": 0.9})

    reply = {"label": "answerable", "confidence": "0.8", "reason": ""}
    assert not v.process(turn("where is my refund")).rejected
    reply = {"label": "answerable", "confidence": 0.3}
    assert v.process(turn("where is my refund")).reason == "low confidence: answerable (p=0.30 < 0.50)"
    reply = {"label": "maybe", "confidence": 0.9}
    unknown = v.process(turn("where is my refund"))
    assert unknown.rejected and "unknown label" in unknown.reason and unknown.output is None
    reply = {"label": "answerable", "confidence": "high"}
    with pytest.raises(LLMError):
        v.process(turn("where is my refund"))
    with pytest.raises(LLMError):
        LLMValidator(FakeChat(lambda s, u: "I think it's answerable")).process(turn("x"))


# ---------------------------------------------------------------- classify

# Written for this test: none of these is in topics.csv.
HELD_OUT_TOPICS = {
    "payments": ["my visa got declined twice at checkout", "can I pay using apple pay"],
    "refunds": ["how long until my refund shows up on my card", "I returned the shoes, where is my money"],
    "delivery": ["my parcel is late and the courier isn't answering", "do you deliver on sundays"],
    "orders": ["how do I cancel an order I just placed", "an item was missing from my order"],
    "account": ["how do I change the email on my profile", "I want to delete my account"],
    "subscriptions": ["how do I cancel my plus membership", "when will I be billed for plus"],
    "security": ["someone logged into my account without permission", "I think my password was stolen"],
    "promotions": ["my discount code is not working", "how does the refer a friend bonus work"],
}


def test_classifier_topics_held_out(classifier: TfidfTopicClassifier) -> None:
    misses = []
    for topic, texts in HELD_OUT_TOPICS.items():
        for text in texts:
            out = classifier.process(turn(text))
            assert set(out.output.scores) == set(TOPICS)
            if out.rejected or out.output.topic != topic:
                misses.append((text, topic, out.output.topic, out.output.confidence))
    assert len(misses) <= 1, misses


def test_classifier_reads_the_summary(classifier: TfidfTopicClassifier) -> None:
    summary = "I returned the shoes and want my money back. how long will that take?"
    t = turn("how long will that take?", summary=summary)
    out = classifier.process(t)
    assert not out.rejected and out.output.topic == "refunds"


@pytest.mark.parametrize("text", ["asdf qwer zxcv", "xkcd blorp fnord", "lorem ipsum dolor sit amet", "qwertyuiop"])
def test_classifier_rejects_gibberish(classifier: TfidfTopicClassifier, text: str) -> None:
    out = classifier.process(turn(text))
    assert out.rejected and isinstance(out.output, Classification)
    assert re.fullmatch(r"low topic confidence: [a-z]+ 0\.\d\d < 0\.30", out.reason)


def test_llm_classifier_with_fake_chat(resources: Resources) -> None:
    answer = {"topic": "refunds", "confidence": 0.85}
    chat = FakeChat(lambda system, user: json.dumps(answer))
    spec = ComponentSpec("classify", "openai")
    c = base.build(spec, Resources(resources.settings, chat=chat))
    assert isinstance(c, LLMTopicClassifier) and set(c.topics) == set(TOPICS)
    out = c.process(turn("where is my money", summary="I returned shoes; where is my refund?"))
    assert out.output == Classification("refunds", 0.85, {"refunds": 0.85}) and not out.rejected
    system, user = chat.calls[0]
    assert all(t in system for t in TOPICS) and "where is my refund?" in user
    answer = {"topic": "weather", "confidence": 0.99}
    bad = c.process(turn("x"))
    assert bad.rejected and bad.reason.startswith("unknown topic from model: 'weather'")
    answer = {"topic": "delivery", "confidence": 0.1}
    assert c.process(turn("x")).reason == "low topic confidence: delivery 0.10 < 0.30"
    with pytest.raises(LLMError):
        LLMTopicClassifier(FakeChat(lambda s, u: "{not json"), TOPICS).process(turn("x"))
