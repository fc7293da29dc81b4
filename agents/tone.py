"""Tone stage: make the drafted answer sound like a person who cares, without changing its facts.

Every sentence the tone stage adds (greeting, empathy, closing) is listed in ``Tone.added`` so the
guardrail checks only the sentences that claim something against the KB. ``RuleTone`` is
deterministic and explains itself through rule names in ``edits``; ``LLMTone`` rewrites freely and
is told to report what it added.
"""

from __future__ import annotations

import re
from typing import Callable, ClassVar

from agents.base import ComponentSpec, Resources, register
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Outcome, Tone, Turn, ok, reject
from agents.retrieve import typed_options
from shadowline.errors import LLMError

__all__ = ["RuleTone", "LLMTone", "is_frustrated", "soften"]

GREETING = "Hi there, thanks for reaching out."
EMPATHY = "I'm sorry for the trouble, and I understand how frustrating this is."
EMPATHY_REPEAT = "I'm sorry this is still not sorted out, and I understand how frustrating that is."
CLOSING = "Is there anything else I can help you with?"

_FRUSTRATED = frozenset(
    """angry furious terrible awful horrible ridiculous unacceptable frustrated frustrating annoyed
    annoying upset worst useless scam disappointed disappointing outrageous joke fed""".split()
)
_REPEATED = frozenset({"still", "again", "already", "nobody"})  # a repeat contact
# Shouting is an all-caps word; these are just how people write codes and currencies.
_ACRONYMS = frozenset("""PIN OTP SMS USD EUR GBP FAQ API URL PDF UPS DHL IBAN VAT CVV ATM KYC SEPA ACH
USPS FEDEX TNT DPD GLS ASAP ETA""".split())
_WORD = re.compile(r"[A-Za-z']+")


def is_frustrated(text: str) -> tuple[bool, bool]:
    """(frustrated, repeated contact): a tiny lexicon, "!!", and shouted words."""
    words = _WORD.findall(text)
    lower = {w.lower() for w in words}
    shouting = any(len(w) >= 3 and w.isupper() and w not in _ACRONYMS for w in words)
    repeated = bool(lower & _REPEATED)
    return bool(lower & _FRUSTRATED) or "!!" in text or shouting or repeated, repeated


def _keep_case(replacement: str) -> Callable[[re.Match[str]], str]:
    def sub(m: re.Match[str]) -> str:
        out = m.expand(replacement)
        return out[:1].upper() + out[1:] if m.group(0)[:1].isupper() else out

    return sub


# Not after "if/when/unless/do/whether": "If you need to change it" is no order to soften.
_NOT_CONDITIONAL = r"(?<!\bif )(?<!\bwhen )(?<!\bunless )(?<!\bdo )(?<!\bwhether )"

# (rule name, pattern, replacement): blunt phrasing -> polite phrasing, meaning unchanged.
RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("soften-must", re.compile(_NOT_CONDITIONAL + r"\byou (?:must|have to|need to) not\b", re.I), "please don't"),
    ("soften-must", re.compile(_NOT_CONDITIONAL + r"\byou (?:must|have to|need to)\b", re.I), "please"),
    ("soften-cant", re.compile(r"\b(you|we) (?:can't|can’t|cannot|can not)\b", re.I), r"\1 aren't able to"),
    ("soften-wont", re.compile(r"\bwe (?:won't|won’t|will not)\b", re.I), "we aren't able to"),
    ("drop-minimizer", re.compile(r"\b(?:simply|obviously|clearly|of course),?\s+", re.I), ""),
)


def soften(text: str) -> tuple[str, list[str]]:
    """Apply RULES; returns the new text and the names of the rules that changed it."""
    rules: list[str] = []
    for rule, pattern, replacement in RULES:
        text, n = pattern.subn(_keep_case(replacement), text)
        if n and rule not in rules:
            rules.append(rule)
    if "drop-minimizer" in rules:  # "Simply open..." lost its capital
        text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text, rules


class RuleTone:
    """Greeting, empathy when the customer is frustrated, softened phrasing, closing line.

    ``greeting`` / ``closing`` set to "" leave them out.
    """

    stage: ClassVar[str] = "tone"

    def __init__(self, name: str = "rules", version: str = "1", *, greeting: str = GREETING,
                 closing: str = CLOSING, empathy: bool = True) -> None:
        self.name, self.version = name, version
        self.greeting, self.closing, self.empathy = greeting, closing, empathy

    def process(self, turn: Turn) -> Outcome[Tone]:
        if turn.generate is None or not turn.generate.text.strip():
            return reject("no draft answer to adjust")
        body, rules = soften(turn.generate.text.strip())
        frustrated, repeated = is_frustrated(turn.event.text)
        empathy = (EMPATHY_REPEAT if repeated else EMPATHY) if self.empathy and frustrated else ""
        before = [s for s in (self.greeting, empathy) if s]
        after = [self.closing] if self.closing else []
        edits = [name for name, used in (("greeting", self.greeting), ("empathy", empathy)) if used] \
            + rules + (["closing"] if after else [])
        return ok(Tone(" ".join(before + [body] + after), tuple(edits), tuple(before + after)))


@register("tone", "rules")
def _build_rules(spec: ComponentSpec, resources: Resources) -> RuleTone:
    """config: greeting, closing ("" to leave out), empathy (true)."""
    opts = typed_options(spec.config, {"greeting": GREETING, "closing": CLOSING, "empathy": True})
    return RuleTone(spec.name, spec.version, **opts)


SYSTEM_TONE = (
    "You edit customer-support replies for Parcelpay. Rewrite the draft so it is warm, clear and concise. "
    "Keep every fact, number, date and instruction exactly; never add a new fact, promise or policy. You may "
    "add a greeting, one empathy sentence if the customer is upset, and a closing line. Reply with JSON: "
    '{"text": "<the rewritten reply>", "added": ["<each sentence you added that is not from the draft>"]}'
)


class LLMTone:
    """An LLM rewrite; it must list the sentences it added so the guardrail can skip them."""

    stage: ClassVar[str] = "tone"

    def __init__(self, chat: ChatModel, name: str = "openai", version: str = "1", *, max_tokens: int = 400) -> None:
        self.chat = chat
        self.name, self.version = name, version
        self.max_tokens = max_tokens

    def process(self, turn: Turn) -> Outcome[Tone]:
        if turn.generate is None or not turn.generate.text.strip():
            return reject("no draft answer to adjust")
        user = f"Customer's message: {turn.event.text}\n\nDraft reply:\n{turn.generate.text}"
        data = parse_json_reply(self.chat.complete(SYSTEM_TONE, user, max_tokens=self.max_tokens, json_mode=True))
        text, added = data.get("text"), data.get("added", [])
        if not isinstance(text, str) or not text.strip():
            raise LLMError(f"{self.chat.model}: tone reply has no 'text'")
        if not isinstance(added, list) or not all(isinstance(a, str) for a in added):
            raise LLMError(f"{self.chat.model}: tone reply 'added' is not a list of strings")
        return ok(Tone(text.strip(), ("llm-rewrite",), tuple(a.strip() for a in added if a.strip())))


@register("tone", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMTone:
    """config: model (settings.openai_model), max_tokens (400)."""
    opts = typed_options(spec.config, {"max_tokens": 400})
    return LLMTone(chat_model(resources, spec.config), spec.name, spec.version, **opts)
