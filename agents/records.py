"""Typed, immutable views of the records components read and write.

They mirror the Avro schemas in ``schemas/avro`` field for field; ``from_record`` / ``to_record``
convert to and from the plain dicts fastavro reads and writes. Components import these and nothing
from Kafka or Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Generic, Mapping, TypeVar


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    text: str
    ts_ms: int

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Message:
        return cls(r["role"], r["text"], r["ts_ms"])

    def to_record(self) -> dict[str, Any]:
        return {"role": self.role, "text": self.text, "ts_ms": self.ts_ms}


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    event_id: str
    conversation_id: str
    role: str
    text: str
    ts_ms: int
    channel: str = "chat"
    customer_id: str | None = None
    locale: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ConversationEvent:
        return cls(
            r["event_id"], r["conversation_id"], r["role"], r["text"], r["ts_ms"],
            r.get("channel", "chat"), r.get("customer_id"), r.get("locale"), r.get("metadata") or {},
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "conversation_id": self.conversation_id, "role": self.role,
            "text": self.text, "ts_ms": self.ts_ms, "channel": self.channel,
            "customer_id": self.customer_id, "locale": self.locale, "metadata": dict(self.metadata),
        }

    def as_message(self) -> Message:
        return Message(self.role, self.text, self.ts_ms)


@dataclass(frozen=True, slots=True)
class Context:
    summary: str
    history: tuple[Message, ...]
    turn_index: int

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Context:
        return cls(r["summary"], tuple(Message.from_record(m) for m in r["history"]), r["turn_index"])

    def to_record(self) -> dict[str, Any]:
        return {"summary": self.summary, "history": [m.to_record() for m in self.history], "turn_index": self.turn_index}


@dataclass(frozen=True, slots=True)
class Validation:
    label: str
    answerable: bool
    confidence: float
    scores: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Validation:
        return cls(r["label"], r["answerable"], r["confidence"], r.get("scores") or {})

    def to_record(self) -> dict[str, Any]:
        return {"label": self.label, "answerable": self.answerable, "confidence": self.confidence, "scores": dict(self.scores)}


@dataclass(frozen=True, slots=True)
class Classification:
    topic: str
    confidence: float
    scores: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Classification:
        return cls(r["topic"], r["confidence"], r.get("scores") or {})

    def to_record(self) -> dict[str, Any]:
        return {"topic": self.topic, "confidence": self.confidence, "scores": dict(self.scores)}


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    article_id: str
    title: str
    text: str
    score: float

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Hit:
        return cls(r["chunk_id"], r["article_id"], r["title"], r["text"], r["score"])

    def to_record(self) -> dict[str, Any]:
        return {"chunk_id": self.chunk_id, "article_id": self.article_id, "title": self.title, "text": self.text, "score": self.score}


@dataclass(frozen=True, slots=True)
class Retrieval:
    query: str
    hits: tuple[Hit, ...]
    index_version: str

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Retrieval:
        return cls(r["query"], tuple(Hit.from_record(h) for h in r["hits"]), r["index_version"])

    def to_record(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_record() for h in self.hits], "index_version": self.index_version}


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    sources: tuple[str, ...]
    model: str

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Generation:
        return cls(r["text"], tuple(r["sources"]), r["model"])

    def to_record(self) -> dict[str, Any]:
        return {"text": self.text, "sources": list(self.sources), "model": self.model}


@dataclass(frozen=True, slots=True)
class Tone:
    text: str
    edits: tuple[str, ...]
    added: tuple[str, ...]

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Tone:
        return cls(r["text"], tuple(r["edits"]), tuple(r["added"]))

    def to_record(self) -> dict[str, Any]:
        return {"text": self.text, "edits": list(self.edits), "added": list(self.added)}


@dataclass(frozen=True, slots=True)
class Guardrail:
    verdict: str  # "pass" or "fail"
    support: float
    unsupported: tuple[str, ...]
    tier: int
    rationale: str = ""
    check: str = ""  # the check that failed the answer ("language", "grounding", "compliance:<rule>", "llm:..."); "" on pass

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Guardrail:
        return cls(r["verdict"], r["support"], tuple(r["unsupported"]), r["tier"], r.get("rationale", ""), r.get("check", ""))

    def to_record(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "support": self.support, "unsupported": list(self.unsupported), "tier": self.tier,
                "rationale": self.rationale, "check": self.check}


@dataclass(frozen=True, slots=True)
class StageRun:
    stage: str
    component: str
    version: str
    status: str  # ok | rejected | error
    reason: str | None
    latency_ms: float
    started_ms: int

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> StageRun:
        return cls(r["stage"], r["component"], r["version"], r["status"], r.get("reason"), r["latency_ms"], r["started_ms"])

    def to_record(self) -> dict[str, Any]:
        return {"stage": self.stage, "component": self.component, "version": self.version, "status": self.status,
                "reason": self.reason, "latency_ms": self.latency_ms, "started_ms": self.started_ms}


# Stage name -> the output type that stage writes into TurnState under the same name.
OUTPUT_TYPES: dict[str, type] = {
    "context": Context, "validate": Validation, "classify": Classification, "retrieve": Retrieval,
    "generate": Generation, "tone": Tone, "guardrail": Guardrail,
}


@dataclass(frozen=True, slots=True)
class Turn:
    """TurnState: the event plus every stage result so far. Each stage reads it and adds its own."""

    event: ConversationEvent
    received_ms: int
    context: Context | None = None
    validate: Validation | None = None
    classify: Classification | None = None
    retrieve: Retrieval | None = None
    generate: Generation | None = None
    tone: Tone | None = None
    guardrail: Guardrail | None = None
    trace: tuple[StageRun, ...] = ()

    @classmethod
    def start(cls, event: ConversationEvent, received_ms: int) -> Turn:
        return cls(event=event, received_ms=received_ms)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Turn:
        outputs = {s: (t.from_record(r[s]) if r.get(s) is not None else None) for s, t in OUTPUT_TYPES.items()}
        return cls(
            event=ConversationEvent.from_record(r["event"]), received_ms=r["received_ms"],
            trace=tuple(StageRun.from_record(x) for x in r["trace"]), **outputs,
        )

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"event": self.event.to_record(), "received_ms": self.received_ms}
        for stage in OUTPUT_TYPES:
            value = getattr(self, stage)
            record[stage] = value.to_record() if value is not None else None
        record["trace"] = [t.to_record() for t in self.trace]
        return record

    def with_result(self, stage: str, output: Any, run: StageRun) -> Turn:
        return replace(self, trace=self.trace + (run,), **({stage: output} if output is not None else {}))

    @property
    def query(self) -> str:
        """What validate, classify and retrieve look at: the summary, else the raw text."""
        return self.context.summary if self.context and self.context.summary else self.event.text


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What a component returns: errors are data. A rejection still carries its output."""

    output: T | None
    rejected: bool = False
    reason: str | None = None


def ok(output: T) -> Outcome[T]:
    return Outcome(output)


def reject(reason: str, output: T | None = None) -> Outcome[T]:
    return Outcome(output, rejected=True, reason=reason)
