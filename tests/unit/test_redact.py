"""PII redaction: seeded examples, negatives, and every sample conversation checked by independent detectors."""

import json
import re
from pathlib import Path

import pytest

from agents.records import (
    Context, ConversationEvent, Generation, Guardrail, Hit, Message, Retrieval, StageRun, Tone, Turn,
)
from shadow.redact import redact_record, redact_text, redact_turn

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "conversations.jsonl"


@pytest.mark.parametrize("text, expected", [
    ("write to priya.raman88@example.com please", "write to [EMAIL] please"),
    ("Tom <tbecker.work@example.org>, cc r.okafor.law@example.com.", "Tom <[EMAIL]>, cc [EMAIL]."),
    ("card 4242 4242 4242 4242 exp 09/28", "card [CARD] exp 09/28"),
    ("Card 4000-0566-5566-5556, exp 09/28.", "Card [CARD], exp 09/28."),
    ("it's 5555555555554444", "it's [CARD]"),
    ("Charged twice for order 88213. Card 4000 0566 5566 5556", "Charged twice for order 88213. Card [CARD]"),
    ("order 88213 4000 0566 5566 5556", "order 88213 [CARD]"),
    ("call me on +1 415 555 0134.", "call me on [PHONE]."),
    ("my number is (312) 555-0178.", "my number is [PHONE]."),
    ("415-555-0134, evenings", "[PHONE], evenings"),
    ("London office +44 20 7946 0958", "London office [PHONE]"),
    ("Mi teléfono es +1 (305) 555-0198 por si", "Mi teléfono es [PHONE] por si"),
    ("toll free 1-800-555-0199", "toll free [PHONE]"),
    ("+14155550134", "[PHONE]"),
])
def test_redacts(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "It costs $9.99 (or 9,99 EUR), $2,000 max, $10,000.",
    "Delivered on 2026-10-02 at 7:00, or 23:00 at the latest.",
    "Refunds take 5 business days, 3-5 or 5-10 business days.",
    "Your order ORD-48213 and ticket CR-20417 are linked.",
    "Order 1234567812345678 shipped.",  # 16 digits, fails Luhn
    "Order 1234 5678 1234 5678 shipped.",
    "It's 418 not 481; budget around 800; call 911; 24/7; 1.5% fee; code SPRING15.",
    "pi is 3.14159265358979",
    "",
])
def test_leaves_non_pii(text):
    assert redact_text(text) == text


def test_card_runs_before_phone():
    # Grouped like a phone number, but a Luhn-valid card: it must come out as a card.
    assert redact_text("4242 4242 4242 4242") == "[CARD]"
    assert redact_text("+44 20 7946 0958 and 4242-4242-4242-4242") == "[PHONE] and [CARD]"


# --- independent detectors for the property test ---------------------------------------------------

def _has_email(text: str) -> bool:
    return any("." in tail for tail in re.findall(r"\S@(\S+)", text))


def _luhn(digits: str) -> bool:
    s = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        s += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
    return s % 10 == 0


def _has_card(text: str) -> bool:
    # Every contiguous slice of digits (ignoring single spaces/dashes) of length 13-19.
    for run in re.findall(r"\d(?:[ -]?\d)*", text):
        digits = re.sub(r"\D", "", run)
        for i in range(len(digits)):
            for j in range(i + 13, min(i + 19, len(digits)) + 1):
                if _luhn(digits[i:j]):
                    return True
    return False


def _has_phone(text: str) -> bool:
    if re.search(r"\+\s?\d(?:[\s().-]*\d){6,}", text):
        return True
    if re.search(r"\(\d{3}\)\s?\d{3}", text):
        return True
    return bool(re.search(r"(?<![\d-])\d{3}[\s.-]\d{3}[\s.-]\d{4}(?!\d)", text))


def _texts():
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        if line.strip():
            for turn in json.loads(line)["turns"]:
                yield turn["text"]


def test_detectors_see_the_seeded_pii():
    raw = " ".join(_texts())
    assert _has_email(raw) and _has_card(raw) and _has_phone(raw)


def test_no_pii_left_in_any_sample_conversation():
    texts = list(_texts())
    assert len(texts) > 100
    for text in texts:
        out = redact_text(text)
        assert not _has_email(out), out
        assert not _has_card(out), out
        assert not _has_phone(out), out
        assert redact_text(out) == out  # idempotent


def test_samples_keep_prices_and_dates():
    out = " ".join(redact_text(t) for t in _texts())
    for kept in ("$9.99", "$25.50", "09/28", "3-5", "SPRING15", "CR-20417", "88213", "418 not 481"):
        assert kept in out


# --- turns and records ---------------------------------------------------------------------------

def _turn() -> Turn:
    pii = "mail a@b.co or call 415-555-0134, card 4242 4242 4242 4242"
    event = ConversationEvent("e1", "c1", "customer", pii, 1, metadata={"note": pii, "tier": "gold"})
    return Turn(
        event=event, received_ms=2,
        context=Context(pii, (Message("customer", pii, 1), Message("agent", "hello", 2)), 1),
        retrieve=Retrieval(pii, (Hit("k1", "a1", "Cards", "call 415-555-0134 for cards", 0.9),), "v1"),
        generate=Generation(pii, ("a1",), "m"),
        tone=Tone(pii, ("greeting",), (pii,)),
        guardrail=Guardrail("fail", 0.2, (pii,), 1, pii),
        trace=(StageRun("context", "x", "1", "ok", None, 1.0, 1), StageRun("guardrail", "g", "1", "rejected", pii, 1.0, 1)),
    )


def test_redact_turn_covers_free_text():
    turn = _turn()
    red = redact_turn(turn)
    clean = "mail [EMAIL] or call [PHONE], card [CARD]"
    assert red.event.text == clean and red.event.metadata == {"note": clean, "tier": "gold"}
    assert red.context.summary == clean and red.context.history[0].text == clean
    assert red.context.history[1].text == "hello"
    assert red.retrieve.query == clean
    assert red.retrieve.hits[0].text == "call 415-555-0134 for cards"  # company content stays
    assert red.generate.text == clean and red.tone.text == clean and red.tone.added == (clean,)
    assert red.guardrail.unsupported == (clean,) and red.guardrail.rationale == clean
    assert red.trace[0].reason is None and red.trace[1].reason == clean
    assert turn.event.text != clean  # original untouched
    assert Turn.from_record(red.to_record()) == red


def test_redact_turn_with_only_an_event():
    turn = Turn.start(ConversationEvent("e1", "c1", "customer", "x@y.org", 1), 1)
    assert redact_turn(turn).event.text == "[EMAIL]"


def test_redact_record_recurses():
    rec = {"text": "x@y.org", "n": 3, "items": ["4242424242424242", {"k": "(312) 555-0178"}], "t": ("a",), "none": None}
    assert redact_record(rec) == {"text": "[EMAIL]", "n": 3, "items": ["[CARD]", {"k": "[PHONE]"}], "t": ("a",), "none": None}
