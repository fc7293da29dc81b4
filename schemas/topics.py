"""Every topic shadowline uses: its name, the record it carries and how it is kept.

Stage k consumes the topic stage k-1 produced (``turns.<stage>``), so a shadow candidate of stage k can
consume exactly production's inputs of stage k.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES: tuple[str, ...] = ("context", "validate", "classify", "retrieve", "generate", "tone", "guardrail")

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: str  # Avro record name of the value
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    partitions: int | None = None  # None: the configured default

    def config(self) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


class Topics:
    """Topic names, with an optional prefix so several pipelines can share one cluster."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        p = prefix
        self.events = f"{p}conv.events"
        self.suggestions = f"{p}support.suggestions"
        self.escalations = f"{p}support.escalations"
        self.feedback = f"{p}support.feedback"
        self.judgments = f"{p}quality.judgments"
        self.promotions = f"{p}ops.promotions"
        self.deadletter = f"{p}ops.deadletter"
        self.kb_articles = f"{p}kb.articles"

    def stage_out(self, stage: str) -> str:
        return f"{self.prefix}turns.{stage}"

    def stage_in(self, stage: str) -> str:
        index = STAGES.index(stage)
        return self.events if index == 0 else self.stage_out(STAGES[index - 1])

    def shadow_in(self, stage: str) -> str:
        return f"{self.prefix}shadow.{stage}.in"

    def shadow_out(self, stage: str) -> str:
        return f"{self.prefix}shadow.{stage}.out"

    def compare(self, stage: str) -> str:
        return f"{self.prefix}compare.{stage}"

    def specs(self) -> list[TopicSpec]:
        specs = [
            TopicSpec(self.events, "ConversationEvent"),
            TopicSpec(self.suggestions, "Suggestion", retention_ms=30 * DAY_MS),
            TopicSpec(self.escalations, "Escalation", retention_ms=30 * DAY_MS),
            TopicSpec(self.feedback, "AgentFeedback", retention_ms=90 * DAY_MS),
            TopicSpec(self.judgments, "Judgment", retention_ms=90 * DAY_MS),
            # Audit log: kept forever.
            TopicSpec(self.promotions, "Promotion", retention_ms=-1, partitions=1),
            TopicSpec(self.deadletter, "DeadLetter", retention_ms=30 * DAY_MS),
            # Latest version of each article wins. Deletes are op=delete records, not null tombstones: compaction drops
            # tombstones after delete.retention.ms and a restarted follower would then serve the article again.
            TopicSpec(self.kb_articles, "KbArticle", compacted=True, partitions=1),
        ]
        for stage in STAGES:
            if stage != "guardrail":  # guardrail ends in suggestions / escalations
                specs.append(TopicSpec(self.stage_out(stage), "TurnState", retention_ms=3 * DAY_MS))
            # The context stage's input is the raw event; every later stage's is a TurnState.
            shadow_record = "ConversationEvent" if stage == STAGES[0] else "TurnState"
            specs.append(TopicSpec(self.shadow_in(stage), shadow_record, retention_ms=3 * DAY_MS))
            specs.append(TopicSpec(self.shadow_out(stage), "TurnState", retention_ms=3 * DAY_MS))
            specs.append(TopicSpec(self.compare(stage), "Comparison", retention_ms=90 * DAY_MS))
        return specs

    def record_of(self, topic: str) -> str:
        """The record a topic carries (readers call this per message, so it is a dict lookup)."""
        if not hasattr(self, "_records"):
            self._records = {spec.name: spec.record for spec in self.specs()}
        return self._records[topic]
