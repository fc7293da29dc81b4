"""Turn conversation files into the events and feedback an upstream chat system would publish.

A JSONL line is either a whole conversation (``{"conversation_id", "turns": [{"role", "text",
"action"?}, ...]}``) or one event (``{"conversation_id", "role", "text", ...}``). Event ids are
derived from the conversation and turn, so replaying a file twice publishes the same ids and
downstream dedup (history, suggestion ids) keeps results stable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from agents.records import ConversationEvent
from shadowline.errors import ConfigError

ROLES = ("customer", "agent", "system")
ACTIONS = ("accepted", "edited", "ignored")


@dataclass(frozen=True)
class Item:
    """One thing to publish: an event, and for agent replies the feedback that goes with it."""

    event: ConversationEvent
    feedback: dict[str, Any] | None = None


def _event(cid: str, index: int, turn: dict[str, Any], base_ms: int, line: int, conv: dict[str, Any]) -> ConversationEvent:
    role, text = turn.get("role"), turn.get("text")
    if role not in ROLES or not isinstance(text, str) or not text:
        raise ConfigError(f"line {line}: turn {index} needs role in {ROLES} and non-empty text")
    return ConversationEvent(
        event_id=str(turn.get("event_id") or f"{cid}-t{index}"), conversation_id=cid, role=role, text=text,
        ts_ms=int(turn.get("ts_ms") or base_ms + index * 1000), channel=str(conv.get("channel", "chat")),
        customer_id=conv.get("customer_id"), locale=conv.get("locale"),
        metadata={str(k): str(v) for k, v in (conv.get("metadata") or {}).items()},
    )


def items_from_conversation(conv: dict[str, Any], line: int = 0, base_ms: int | None = None) -> Iterator[Item]:
    cid = conv.get("conversation_id")
    if not isinstance(cid, str) or not cid:
        raise ConfigError(f"line {line}: missing conversation_id")
    base_ms = base_ms if base_ms is not None else int(time.time() * 1000)
    turns = conv.get("turns")
    if turns is None:  # a single event
        yield Item(_event(cid, int(conv.get("turn_index", 0)), conv, base_ms, line, conv))
        return
    last_customer: str | None = None
    for i, turn in enumerate(turns):
        event = _event(cid, i, turn, base_ms, line, conv)
        feedback = None
        if event.role == "customer":
            last_customer = event.event_id
        elif event.role == "agent" and last_customer:
            action = turn.get("action", "edited")
            if action not in ACTIONS:
                raise ConfigError(f"line {line}: turn {i} action must be one of {ACTIONS}")
            feedback = {
                "feedback_id": f"fb-{event.event_id}", "conversation_id": cid, "event_id": last_customer,
                "suggestion_id": f"sug-{last_customer}", "sent_text": event.text, "action": action,
                "agent_id": turn.get("agent_id"), "ts_ms": event.ts_ms,
            }
        yield Item(event, feedback)


def load_conversations(path: Path) -> list[dict[str, Any]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    out = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{n}: expected a JSON object")
        out.append(obj | {"_line": n})
    return out


def items_from_file(path: Path) -> list[Item]:
    base = int(time.time() * 1000)
    return [item for conv in load_conversations(path) for item in items_from_conversation(conv, conv["_line"], base)]
