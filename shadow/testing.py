"""Shadow mode in memory: mirror, candidate and comparator subscribed to an InMemoryPipeline.

The same handlers the shadow workers run, minus Kafka: tests of measurement logic take milliseconds.
"""

from __future__ import annotations

from typing import Any

from agents.base import ComponentSpec
from kb_index.embedder import get_embedder
from shadow.agreement import TextSimilarity
from shadow.candidate import candidate_processor
from shadow.compare import Comparator
from shadow.mirror import Mirror
from shadow.stats import ShadowStats
from shadow.stats_store import MemoryStats
from streams.testing import InMemoryPipeline


class ShadowHarness:
    def __init__(self, pipe: InMemoryPipeline, stage: str, candidate: ComponentSpec, *, rate: float = 1.0,
                 replica: bool = False, timeout_s: float = 5.0, window_s: float = 30.0, clock: Any = None) -> None:
        self.pipe, self.stage, self.candidate = pipe, stage, candidate
        self.stats = MemoryStats()
        self.mirror = Mirror(stage, pipe.codec, pipe.topics, lambda: rate)
        pipe.subscribe(f"mirror-{stage}", (self.mirror.input_topic,), self.mirror)
        self.runner = candidate_processor(candidate, pipe.settings, pipe.codec, pipe.resources, timeout_s=timeout_s)
        if stage == "context":
            self.runner.store = type(pipe.store)(pipe.settings.history_turns)  # the candidate's own history
        pipe.subscribe(f"candidate-{candidate.ref}", (self.runner.input_topic,), self.runner)
        if replica:
            production = pipe.processors[stage].component
            spec = ComponentSpec(stage, production.name, production.version, {})
            self.replica = candidate_processor(spec, pipe.settings, pipe.codec, pipe.resources, timeout_s=timeout_s, replica=True)
            pipe.subscribe("replica", (self.replica.input_topic,), self.replica)
        similarity = TextSimilarity(pipe.resources.get("embedder", lambda: get_embedder("hashing")))
        ref = f"{candidate.name}@{candidate.version}"
        kwargs = {"clock": clock} if clock else {}
        self.comparator = Comparator(stage, pipe.codec, pipe.topics, self.stats, similarity, lambda: (rate, [ref]), window_s=window_s, **kwargs)
        pipe.subscribe(f"compare-{stage}", self.comparator.input_topics, self.comparator)

    def result(self) -> ShadowStats:
        return self.stats.load(self.stage, f"{self.candidate.name}@{self.candidate.version}")

    def comparisons(self) -> list[dict[str, Any]]:
        return self.pipe.broker.records(self.pipe.codec, self.pipe.topics.compare(self.stage), "Comparison")
