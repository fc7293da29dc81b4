"""Hot promotion inside a running worker: when the registry's epoch moves, build the newly active
version and swap it into the stage processor between two events.

Because a processor handles one event at a time and the swap happens between ``handle`` calls, every
event is processed entirely by exactly one version: nothing is lost or processed twice.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from agents.base import ComponentSpec, Resources, build
from shadow.registry import Registry
from shadowline.config import Settings
from shadowline.errors import ShadowlineError
from streams.pipeline import PipelineConfig
from streams.processor import StageProcessor

log = logging.getLogger("shadowline.hotswap")


class HotSwapper:
    def __init__(self, registry: Registry, pipeline: PipelineConfig, resources: Resources) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.resources = resources
        self.processors: dict[str, StageProcessor] = {}
        self._epoch = -1
        self.swaps: list[tuple[str, str, str]] = []  # (stage, from ref, to ref)

    @classmethod
    def for_workers(cls, settings: Settings, pipeline: PipelineConfig) -> HotSwapper:
        registry = Registry(settings.redis_url)
        registry.seed(pipeline.active, pipeline.candidates)
        return cls(registry, pipeline, Resources(settings))

    def active_pipeline(self) -> PipelineConfig:
        """The pipeline config with each stage's active version taken from the registry."""
        self._epoch = self.registry.epoch()
        return replace(self.pipeline, active={**self.pipeline.active, **self.registry.actives()})

    def attach(self, processors: dict[str, StageProcessor]) -> None:
        self.processors = processors

    def poll(self) -> list[tuple[str, str, str]]:
        """Swap every stage whose active version changed; cheap when nothing did (one GET)."""
        epoch = self.registry.epoch()
        if epoch == self._epoch:
            return []
        swapped = []
        actives = self.registry.actives()
        for stage, proc in self.processors.items():
            spec = actives.get(stage)
            if spec is None or (spec.name, spec.version) == (proc.component.name, proc.component.version):
                continue
            try:
                swapped.append(self._swap(proc, spec))
            except ShadowlineError as exc:
                log.error("stage %s: cannot load %s, still serving %s@%s: %s", stage, spec.ref, proc.component.name, proc.component.version, exc)
        self._epoch = epoch
        return swapped

    def _swap(self, proc: StageProcessor, spec: ComponentSpec) -> tuple[str, str, str]:
        # Build before swapping: a version that fails to load leaves the old one serving.
        new = build(spec, self.resources)
        old = proc.swap(new)
        change = (proc.stage, f"{old.name}@{old.version}", spec.ref.split(":", 1)[1])
        self.swaps.append(change)
        log.warning("stage %s: now serving %s (was %s)", *change[:1], change[2], change[1])
        return change
