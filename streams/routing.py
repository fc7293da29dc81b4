"""Where a stage's result goes: the next stage, a suggestion, or an escalation to a human."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from agents.records import Outcome, Turn
from schemas.topics import STAGES
from streams.messages import Outbound, now_ms

if TYPE_CHECKING:
    from streams.processor import StageProcessor

Router = Callable[["StageProcessor", Turn, Outcome[Any]], list[Outbound]]


def latest_draft(turn: Turn) -> str | None:
    for stage in ("tone", "generate"):
        out = getattr(turn, stage)
        if out is not None:
            return out.text
    return None


def suggestion_record(turn: Turn, created_ms: int) -> dict[str, Any]:
    hits = {h.article_id: h for h in (turn.retrieve.hits if turn.retrieve else ())}
    cited = turn.generate.sources if turn.generate else ()
    return {
        "suggestion_id": f"sug-{turn.event.event_id}",  # deterministic: a redelivery overwrites, never duplicates
        "event_id": turn.event.event_id,
        "conversation_id": turn.event.conversation_id,
        "text": latest_draft(turn) or "",
        "sources": [
            {"article_id": a, "title": hits[a].title, "chunk_id": hits[a].chunk_id, "score": hits[a].score}
            for a in cited if a in hits
        ],
        "topic": turn.classify.topic if turn.classify else None,
        "created_ms": created_ms,
        "turn": turn.to_record(),
    }


def escalation_record(turn: Turn, stage: str, reason: str, created_ms: int) -> dict[str, Any]:
    return {
        "escalation_id": f"esc-{turn.event.event_id}",
        "event_id": turn.event.event_id,
        "conversation_id": turn.event.conversation_id,
        "stage": stage,
        "reason": reason,
        "draft": latest_draft(turn),
        "created_ms": created_ms,
        "turn": turn.to_record(),
    }


def production_router(proc: StageProcessor, turn: Turn, outcome: Outcome[Any]) -> list[Outbound]:
    event = turn.event
    key = event.conversation_id.encode()
    if proc.stage == "context" and event.role != "customer" and not outcome.rejected:
        return []  # agent and system messages only feed the conversation history
    topics, codec = proc.topics, proc.codec
    if outcome.rejected:
        record = escalation_record(turn, proc.stage, outcome.reason or "rejected", now_ms())
        return [Outbound(topics.escalations, key, codec.encode("Escalation", record, topics.escalations))]
    if proc.stage == STAGES[-1]:
        record = suggestion_record(turn, now_ms())
        return [Outbound(topics.suggestions, key, codec.encode("Suggestion", record, topics.suggestions))]
    out = topics.stage_out(proc.stage)
    return [Outbound(out, key, codec.encode("TurnState", turn.to_record(), out))]
