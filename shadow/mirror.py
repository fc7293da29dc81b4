"""The mirror: copies a sample of production's stage input to ``shadow.<stage>.in``, PII redacted.

It runs in its own process and consumer group on the same input topic as production, so production
never waits for it. Sampling is by conversation id, so a sampled conversation is mirrored whole (the
context stage needs every turn) and the comparator can tell which events to expect from a candidate.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from agents.records import ConversationEvent, Turn
from schemas.codec import Codec
from schemas.topics import Topics
from shadow.redact import redact_turn
from shadowline.errors import DecodeError
from streams.messages import Inbound, Outbound


def sampled(conversation_id: str, rate: float) -> bool:
    """Deterministic: the same conversation is in or out of the sample in every process."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(conversation_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class Mirror:
    def __init__(self, stage: str, codec: Codec, topics: Topics, rate: Callable[[], float]) -> None:
        self.stage = stage
        self.codec = codec
        self.topics = topics
        self.rate = rate
        self.input_topic = topics.stage_in(stage)
        self.output_topic = topics.shadow_in(stage)
        self.mirrored = 0
        self.skipped = 0
        self.undecodable = 0
        self.seconds = 0.0  # time spent per mirrored event, to show the mirror's own cost

    def handle(self, msg: Inbound) -> list[Outbound]:
        rate = self.rate()
        if rate <= 0.0 or msg.value is None:
            return []
        t0 = time.perf_counter()
        try:
            turn = self._decode(msg.value)
        except DecodeError:
            self.undecodable += 1  # production dead-letters it; the shadow has nothing to learn from it
            return []
        if not sampled(turn.event.conversation_id, rate):
            self.skipped += 1
            return []
        clean = redact_turn(turn)
        if self.stage == "context":
            value = self.codec.encode("ConversationEvent", clean.event.to_record(), self.output_topic)
        else:
            value = self.codec.encode("TurnState", clean.to_record(), self.output_topic)
        self.mirrored += 1
        self.seconds += time.perf_counter() - t0
        return [Outbound(self.output_topic, msg.key, value)]

    def _decode(self, value: bytes) -> Turn:
        if self.stage == "context":
            event = ConversationEvent.from_record(self.codec.decode(value, "ConversationEvent", self.input_topic))
            return Turn.start(event, 0)
        return Turn.from_record(self.codec.decode(value, "TurnState", self.input_topic))
