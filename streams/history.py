"""Conversation state for the context stage: recent messages, latest summary, turn count.

Two stores with one interface: memory (tests, in-memory pipeline) and Redis (workers). Appends are
idempotent by event id, so a redelivered event (at-least-once) never duplicates history.
"""

from __future__ import annotations

import json
from typing import Protocol

from agents.base import Prior
from agents.records import Message
from shadowline.errors import StoreError


class ConversationStore(Protocol):
    def load(self, conversation_id: str, exclude_event: str) -> Prior: ...

    def append(self, conversation_id: str, event_id: str, message: Message, summary: str) -> None: ...


class MemoryStore:
    def __init__(self, max_messages: int = 12) -> None:
        self.max_messages = max_messages
        self._msgs: dict[str, list[tuple[str, Message]]] = {}
        self._summary: dict[str, str] = {}
        self._turns: dict[str, int] = {}

    def load(self, conversation_id: str, exclude_event: str) -> Prior:
        entries = self._msgs.get(conversation_id, [])
        seen = any(eid == exclude_event for eid, _ in entries)
        return Prior(
            history=tuple(m for eid, m in entries if eid != exclude_event),
            summary=self._summary.get(conversation_id, ""),
            turns=self._turns.get(conversation_id, 0) - (1 if seen else 0),
        )

    def append(self, conversation_id: str, event_id: str, message: Message, summary: str) -> None:
        entries = self._msgs.setdefault(conversation_id, [])
        if any(eid == event_id for eid, _ in entries):
            return
        entries.append((event_id, message))
        del entries[: -self.max_messages]
        self._summary[conversation_id] = summary
        self._turns[conversation_id] = self._turns.get(conversation_id, 0) + 1


class RedisStore:
    """Keys per conversation: ``<ns>:conv:<id>:msgs`` (list of JSON), ``:summary``, ``:turns``; all with TTL."""

    def __init__(self, url: str, max_messages: int = 12, ttl_s: int = 7 * 24 * 3600, namespace: str = "sl") -> None:
        import redis

        self._redis_error = redis.RedisError
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.max_messages = max_messages
        self.ttl_s = ttl_s
        self.ns = namespace

    def _keys(self, cid: str) -> tuple[str, str, str]:
        base = f"{self.ns}:conv:{cid}"
        return f"{base}:msgs", f"{base}:summary", f"{base}:turns"

    def _entries(self, cid: str) -> list[dict]:
        msgs, _, _ = self._keys(cid)
        try:
            return [json.loads(raw) for raw in self.client.lrange(msgs, 0, -1)]
        except self._redis_error as exc:
            raise StoreError(f"redis: cannot read history of {cid}: {exc}") from exc

    def load(self, conversation_id: str, exclude_event: str) -> Prior:
        _, summary_key, turns_key = self._keys(conversation_id)
        entries = self._entries(conversation_id)
        try:
            summary, turns = self.client.mget(summary_key, turns_key)
        except self._redis_error as exc:
            raise StoreError(f"redis: cannot read state of {conversation_id}: {exc}") from exc
        seen = any(e["event_id"] == exclude_event for e in entries)
        return Prior(
            history=tuple(Message(e["role"], e["text"], e["ts_ms"]) for e in entries if e["event_id"] != exclude_event),
            summary=summary.decode() if summary else "",
            turns=int(turns or 0) - (1 if seen else 0),
        )

    def append(self, conversation_id: str, event_id: str, message: Message, summary: str) -> None:
        msgs, summary_key, turns_key = self._keys(conversation_id)
        # One partition owns a conversation, so read-then-write has no concurrent writer.
        if any(e["event_id"] == event_id for e in self._entries(conversation_id)):
            return
        entry = json.dumps({"event_id": event_id, **message.to_record()})
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(msgs, entry).ltrim(msgs, -self.max_messages, -1).expire(msgs, self.ttl_s)
            pipe.set(summary_key, summary, ex=self.ttl_s)
            pipe.incr(turns_key).expire(turns_key, self.ttl_s)
            pipe.execute()
        except self._redis_error as exc:
            raise StoreError(f"redis: cannot append to {conversation_id}: {exc}") from exc

    def ping(self) -> None:
        try:
            self.client.ping()
        except self._redis_error as exc:
            raise StoreError(f"redis unreachable: {exc}") from exc
