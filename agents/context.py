"""Context stage: the conversation window plus a one-line statement of what the customer wants.

Later stages (validate, classify, retrieve) look at ``turn.query``, which is this summary. A follow-up
like "how long will that take?" means nothing alone, so the summary puts the customer's earlier issue
in front of it; a new, self-contained question replaces the old issue, and small talk ("thanks!")
stays small talk so that validate can route it. Only customer text goes into the summary: the agent's
words are history, not the customer's problem.
"""

from __future__ import annotations

import re
from typing import ClassVar

from agents.base import ComponentSpec, Prior, Resources, register
from agents.llm import ChatModel, chat_model
from agents.records import Context, Message, Outcome, Turn, ok
from shadowline.errors import LLMError

__all__ = [
    "ExtractiveSummary",
    "LLMSummary",
    "is_chitchat",
    "is_follow_up",
    "summarize",
]

CUSTOMER = "customer"

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Words that, alone, make small talk: greetings, thanks, acknowledgements, goodbyes.
_CHITCHAT_WORDS = frozenset(
    """hi hello hey hiya yo good morning afternoon evening day night thanks thank you thx ty cheers
    ok okay k kk great perfect awesome cool nice fine sure alright all right got it appreciate appreciated
    that that's thats it's is was has been helpful very so much lot a the for your help you're wonderful
    bye goodbye see later have take care again yes yeah yep no nope nah lol haha oh ah wow excellent
    amazing lovely brilliant sounds good understood noted welcome there much hope well how how's are
    doing going i'm im i am many np worries trying fair makes sense hm hmm ugh gotcha will do
    hola buenas gracias perfecto vale bueno merci adios""".split()
)
# Leading acknowledgements to look past: in "ok. and the fee?" the request starts at "and".
_ACK = re.compile(
    r"^(?:(?:ok|okay|oh|ah|yes|yeah|yep|no|nope|done|fine|hm+|ugh|alright|sure|right|got it|i see|"
    r"thanks|thank you|thx|checked)\b[\s,.!:;-]*)+",
    re.IGNORECASE,
)
# Words that point back at something said before.
_ANAPHORS = frozenset("it its it's that that's this these those they them one ones same".split())
_OPENERS = ("and ", "also ", "what about ", "how about ", "but ", "so ", "then ", "what if ", "same for ",
            "or ", "y ")
_DUMMY_IT = re.compile(r"\b(is it|it is|it's) (possible|ok|okay|true|safe|normal|free)\b")
FOLLOW_UP_MAX_WORDS = 8


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def is_chitchat(text: str) -> bool:
    """Greetings, thanks and acknowledgements with no request in them ("cool, thanks!")."""
    words = _words(text)
    return 0 < len(words) <= 12 and all(w in _CHITCHAT_WORDS for w in words)


def _request(text: str) -> str:
    """The message without its small-talk sentences ("Thanks! And the fee?" -> "And the fee?")."""
    return " ".join(s for s in _sentences(text) if not is_chitchat(s))


def _core(text: str) -> str:
    """What a follow-up test looks at: also without leading acknowledgements ("ok so ...")."""
    return _ACK.sub("", _request(text)).strip()


def is_follow_up(text: str) -> bool:
    """A message that leans on what came before: "and the fee?", "how long will that take?".

    Short (under 8 words) with a pronoun or ellipsis, or opening with "and"/"what about", or
    a pronoun in its first words ("can you switch it to the wallet?").
    """
    if is_chitchat(text):
        return False
    core = _core(text)
    words = _words(core)
    if not words:
        return False
    joined = " ".join(words) + " "
    if joined.startswith(_OPENERS) and len(words) < 2 * FOLLOW_UP_MAX_WORDS:
        return True
    anaphors = [w for w in words if w in _ANAPHORS]
    if anaphors == ["it"] and _DUMMY_IT.search(joined):
        anaphors = []
    if len(words) < FOLLOW_UP_MAX_WORDS and (anaphors or len(words) <= 4):
        return True
    # "can you put them back?": the pronoun comes before anything it could refer to in this message.
    return len(words) < 14 and any(w in _ANAPHORS for w in words[:4]) and bool(anaphors)


def _condense(text: str, budget: int) -> str:
    """Drop small-talk sentences ("Hi there!"), keep the rest in order, cut at a word within budget."""
    kept = [s for s in _sentences(text) if not is_chitchat(s)] or [text.strip()]
    out = ""
    for sentence in kept:
        candidate = f"{out} {sentence}".strip()
        if len(candidate) > budget:
            break
        out = candidate
    if out:
        return out
    return _cut(kept[0], budget)


def _cut(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    if budget <= 1:
        return text[:budget]
    head = text[: budget - 1]
    space = head.rfind(" ")
    return (head[:space] if space > budget // 2 else head).rstrip(" ,;:") + "\u2026"


def _earlier_issue(history: tuple[Message, ...], prior_summary: str) -> str:
    """The most recent self-contained customer message, else what the previous summary said."""
    for msg in reversed(history):
        if msg.role == CUSTOMER and not is_chitchat(msg.text) and not is_follow_up(msg.text):
            return msg.text
    if prior_summary and not is_chitchat(prior_summary):
        return prior_summary
    # Only short messages so far ("refund?"): they are the issue.
    return " ".join(m.text for m in history if m.role == CUSTOMER and not is_chitchat(m.text))


def _join(issue: str, follow: str) -> str:
    sep = " " if issue.endswith((".", "!", "?", "\u2026")) else ". "
    return f"{issue}{sep}{follow}"


def summarize(text: str, history: tuple[Message, ...], prior_summary: str = "", max_chars: int = 400) -> str:
    """The customer's issue as of ``text``; ``history`` holds earlier messages (any role).

    Small talk stays as it is; a follow-up goes after the earlier issue, which is cut first when
    space runs out; a self-contained message stands alone, without its greetings.
    """
    text = text.strip()
    if is_chitchat(text):
        return _cut(text, max_chars)
    if is_follow_up(text):
        issue = _earlier_issue(history, prior_summary)
        follow = _cut(_request(text) or text, max_chars)
        budget = max_chars - len(follow) - 2
        if issue and issue.strip() != text and budget >= 20:
            return _join(_condense(issue, budget), follow)
    return _condense(text, max_chars)


class ExtractiveSummary:
    """Rule-based summary: no model, deterministic, about 50 microseconds. The offline default."""

    stage: ClassVar[str] = "context"

    def __init__(self, name: str = "extractive", version: str = "1", *, max_turns: int = 12,
                 max_chars: int = 400) -> None:
        self.name = name
        self.version = version
        self.max_turns = max_turns
        self.max_chars = max_chars

    def process(self, turn: Turn, prior: Prior) -> Outcome[Context]:
        history, unchanged = window(turn, prior, self.max_turns)
        if unchanged is not None:
            return unchanged
        summary = summarize(turn.event.text, prior.history, prior.summary, self.max_chars)
        return ok(Context(summary, history, prior.turns))


def window(turn: Turn, prior: Prior, max_turns: int) -> tuple[tuple[Message, ...], Outcome[Context] | None]:
    """The recent-history window with this message; for a non-customer message, the finished outcome:
    agent messages join the window but leave the customer's issue (the summary) unchanged."""
    history = (prior.history + (turn.event.as_message(),))[-max_turns:]
    if turn.event.role != CUSTOMER:
        return history, ok(Context(prior.summary, history, prior.turns))
    return history, None


@register("context", "extractive")
def _build_extractive(spec: ComponentSpec, resources: Resources) -> ExtractiveSummary:
    cfg = spec.config
    return ExtractiveSummary(
        spec.name, spec.version,
        max_turns=int(cfg.get("max_turns", resources.settings.history_turns)),
        max_chars=int(cfg.get("max_chars", 400)),
    )


SUMMARY_SYSTEM = (
    "You summarise customer-support conversations for a support agent. Write what the CUSTOMER currently "
    "wants, in at most two sentences and {max_chars} characters, in the customer's terms. If the latest "
    "customer message is a follow-up, include the earlier issue it refers to. If it is only small talk "
    "(thanks, greetings), repeat it as is. Ignore what the agent said except to resolve references. "
    "Reply with the summary only."
)


class LLMSummary:
    """An LLM summary, for shadow comparison with the extractive one. LLM failures propagate."""

    stage: ClassVar[str] = "context"

    def __init__(self, chat: ChatModel, name: str = "openai", version: str = "1", *, max_turns: int = 12,
                 max_chars: int = 400) -> None:
        self.chat = chat
        self.name = name
        self.version = version
        self.max_turns = max_turns
        self.max_chars = max_chars

    def process(self, turn: Turn, prior: Prior) -> Outcome[Context]:
        history, unchanged = window(turn, prior, self.max_turns)
        if unchanged is not None:
            return unchanged
        transcript = "\n".join(f"{m.role}: {m.text}" for m in history)
        user = f"Previous summary: {prior.summary or '(none)'}\n\nConversation:\n{transcript}\n\nSummary:"
        reply = self.chat.complete(SUMMARY_SYSTEM.format(max_chars=self.max_chars), user, max_tokens=200)
        summary = reply.strip().strip('"').strip()
        if not summary:
            raise LLMError(f"{self.chat.model}: empty summary")
        return ok(Context(_cut(summary, self.max_chars), history, prior.turns))


@register("context", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMSummary:
    cfg = spec.config
    return LLMSummary(
        chat_model(resources, cfg), spec.name, spec.version,
        max_turns=int(cfg.get("max_turns", resources.settings.history_turns)),
        max_chars=int(cfg.get("max_chars", 400)),
    )
