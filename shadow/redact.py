"""PII redaction for everything that leaves production on ``shadow.*`` and ``compare.*`` topics.

Shadow topics are read by candidate workers, analysts and dashboards with wider access than the
production pipeline, so e-mail addresses, payment card numbers and phone numbers are replaced by
placeholders before a record is mirrored or compared. Redaction is deliberately conservative about
what it touches: prices, dates, times, quantities and order ids must survive, or comparisons of the
redacted text would drift from what production actually saw.

Order matters: e-mails first (they may hold digits), then cards (a card split in groups looks like a
phone number), then phones. Placeholders hold no digits, so a later pass never re-matches them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from agents.records import Context, ConversationEvent, Guardrail, Message, Turn

__all__ = ["CARD", "EMAIL", "PHONE", "luhn_valid", "redact_record", "redact_text", "redact_turn"]

EMAIL = "[EMAIL]"
CARD = "[CARD]"
PHONE = "[PHONE]"

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)

# A run of digit groups joined by one space or dash: the raw material cards are cut from.
# Not glued to a word or a decimal point, so "ORD48213..." and "3.14159..." are left alone.
_DIGIT_RUN_RE = re.compile(r"(?<![\w.])\d+(?:[ -]\d+)*(?![\w])")
_GROUP_RE = re.compile(r"\d+")
_CARD_MIN, _CARD_MAX = 13, 19

_SEP = r"[ .\-]?"
_PHONE_RE = re.compile(
    "|".join((
        # International: +CC then up to five groups, an area code may sit in parentheses.
        rf"\+\d{{1,3}}(?:{_SEP}(?:\(\d{{1,4}}\)|\d{{1,5}})){{1,5}}",
        # National with the area code in parentheses: (312) 555-0178.
        r"(?<![\w)])\(\d{2,4}\)[ .\-]?\d{3,4}[ .\-]?\d{3,4}",
        # North American written plain: 415-555-0134, 415.555.0134, 1-800-555-0199.
        r"(?<![\w.,$\-+])(?:1[ .\-])?\d{3}[ .\-]\d{3}[ .\-]\d{4}",
    ))
    + r"(?![\w])"
)
_PHONE_MIN_DIGITS = 7


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries; order numbers almost never pass it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards_in_run(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of ``text[start:end]`` that are whole digit groups holding a Luhn-valid 13-19 digit number.

    Cut on group boundaries so "order 88213 4000 0566 5566 5556" still finds the card after the
    order number, and prefer the longest card at the leftmost start.
    """
    groups = [m.span() for m in _GROUP_RE.finditer(text, start, end)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        if text[groups[i][0] - 1: groups[i][0]] == "+":  # "+44 ..." is a phone, never a card
            i += 1
            continue
        best = None
        digits = ""
        for j in range(i, len(groups)):
            digits += text[groups[j][0]:groups[j][1]]
            if len(digits) > _CARD_MAX:
                break
            if len(digits) >= _CARD_MIN and luhn_valid(digits):
                best = j
        if best is None:
            i += 1
        else:
            spans.append((groups[i][0], groups[best][1]))
            i = best + 1
    return spans


def _redact_cards(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for m in _DIGIT_RUN_RE.finditer(text):
        if sum(c.isdigit() for c in m.group()) >= _CARD_MIN:
            spans.extend(_cards_in_run(text, m.start(), m.end()))
    for s, e in reversed(spans):
        text = text[:s] + CARD + text[e:]
    return text


def _phone_sub(m: re.Match[str]) -> str:
    return PHONE if sum(c.isdigit() for c in m.group()) >= _PHONE_MIN_DIGITS else m.group()


def redact_text(text: str) -> str:
    """``text`` with e-mail addresses, Luhn-valid card numbers and phone numbers replaced."""
    if not text:
        return text
    text = _EMAIL_RE.sub(EMAIL, text)
    if any(c.isdigit() for c in text):
        text = _redact_cards(text)
        text = _PHONE_RE.sub(_phone_sub, text)
    return text


def _opt(text: str | None) -> str | None:
    return redact_text(text) if text else text


def _message(m: Message) -> Message:
    return replace(m, text=redact_text(m.text))


def _event(e: ConversationEvent) -> ConversationEvent:
    return replace(e, text=redact_text(e.text), metadata={k: redact_text(v) for k, v in e.metadata.items()})


def _context(c: Context) -> Context:
    return replace(c, summary=redact_text(c.summary), history=tuple(_message(m) for m in c.history))


def _guardrail(g: Guardrail) -> Guardrail:
    return replace(g, unsupported=tuple(redact_text(u) for u in g.unsupported), rationale=redact_text(g.rationale))


def redact_turn(turn: Turn) -> Turn:
    """A copy of ``turn`` with every free-text field redacted.

    KB hit texts stay: they are company content, and the candidate needs them verbatim to be
    compared fairly. Labels, scores, ids and tone rule names carry no free text.
    """
    return replace(
        turn,
        event=_event(turn.event),
        context=_context(turn.context) if turn.context else None,
        retrieve=replace(turn.retrieve, query=redact_text(turn.retrieve.query)) if turn.retrieve else None,
        generate=replace(turn.generate, text=redact_text(turn.generate.text)) if turn.generate else None,
        tone=replace(turn.tone, text=redact_text(turn.tone.text),
                     added=tuple(redact_text(a) for a in turn.tone.added)) if turn.tone else None,
        guardrail=_guardrail(turn.guardrail) if turn.guardrail else None,
        trace=tuple(replace(r, reason=_opt(r.reason)) for r in turn.trace),
    )


def redact_record(obj: Any) -> Any:
    """``obj`` with every string inside dicts, lists and tuples redacted (dict keys kept as they are).

    For JSON outputs put on ``compare.*``: the stage output is serialised from this, so the
    comparator never has to know which fields are free text.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact_record(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_record(v) for v in obj)
    return obj
