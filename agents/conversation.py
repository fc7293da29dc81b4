"""How a turn's conversation is shown to an LLM evaluator (guardrail tier 2, the LLM judge).

Both judge an answer *in context*: whether it is coherent with what was said before needs the recent
messages and the summary, not only the latest message.
"""

from __future__ import annotations

from agents.generate import hit_sentences
from agents.records import Hit, Turn

__all__ = ["conversation_text", "excerpts_text"]


def conversation_text(turn: Turn, history_turns: int = 6) -> str:
    """Recent messages (the latest one on its own line), then the context stage's summary."""
    earlier = list(turn.context.history) if turn.context else []
    if earlier and earlier[-1].text == turn.event.text:
        earlier = earlier[:-1]  # the context stage appends the current message to the history
    lines = [f"{m.role}: {m.text}" for m in earlier[-history_turns:]] if history_turns > 0 else []
    out = ("Earlier messages:\n" + "\n".join(lines) + "\n\n") if lines else ""
    out += f"Customer's latest message: {turn.event.text}"
    if turn.context and turn.context.summary:
        out += f"\nSummary of the customer's issue: {turn.context.summary}"
    return out


def excerpts_text(hits: tuple[Hit, ...] | list[Hit]) -> str:
    """Numbered KB excerpts, each as its sentences read on their own."""
    return "\n\n".join(f"[{n}] {h.title}\n{' '.join(hit_sentences(h))}" for n, h in enumerate(hits, 1)) or "(none)"
