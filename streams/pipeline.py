"""The pipeline config file: which component version serves each stage, and its candidates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.base import ComponentSpec, Resources, build
from schemas.codec import Codec
from schemas.topics import STAGES, Topics
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ConfigError
from streams.history import ConversationStore
from streams.metrics import Metrics
from streams.processor import Limits, StageProcessor

DEFAULT_PIPELINE = REPO_ROOT / "pipeline.yaml"


@dataclass(frozen=True)
class PipelineConfig:
    active: dict[str, ComponentSpec]
    candidates: dict[str, list[ComponentSpec]] = field(default_factory=dict)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> GatePolicy fields
    mirror_rate: dict[str, float] = field(default_factory=dict)  # stage -> share of traffic mirrored


STAGE_KEYS = {"active", "candidates", "gates", "mirror_rate"}


def _spec(stage: str, raw: Any, where: str) -> ComponentSpec:
    if isinstance(raw, str):
        return ComponentSpec.parse(f"{stage}:{raw}")
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where}: expected {{name, version, config}}")
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}.config: expected a mapping")
    return ComponentSpec(stage, str(raw["name"]), str(raw.get("version", "1")), config)


def parse_pipeline(data: Any, source: str = "pipeline config") -> PipelineConfig:
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise ConfigError(f"{source}: expected a top-level 'stages' mapping")
    stages = data["stages"]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"{source}: unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    missing = [s for s in STAGES if s not in stages]
    if missing:
        raise ConfigError(f"{source}: no component for stage(s) {', '.join(missing)}")
    active, candidates, gates, rates = {}, {}, {}, {}
    for stage in STAGES:
        entry = stages[stage]
        if not isinstance(entry, dict) or "active" not in entry:
            raise ConfigError(f"{source}: stages.{stage} needs an 'active' component")
        extra = sorted(set(entry) - STAGE_KEYS)
        if extra:
            raise ConfigError(f"{source}: stages.{stage}: unknown key(s) {', '.join(extra)}")
        if "gates" in entry:
            if not isinstance(entry["gates"], dict):
                raise ConfigError(f"{source}: stages.{stage}.gates: expected a mapping")
            gates[stage] = entry["gates"]
        if "mirror_rate" in entry:
            rate = entry["mirror_rate"]
            if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
                raise ConfigError(f"{source}: stages.{stage}.mirror_rate must be a number within [0, 1]")
            rates[stage] = float(rate)
        active[stage] = _spec(stage, entry["active"], f"{source}: stages.{stage}.active")
        candidates[stage] = [
            _spec(stage, c, f"{source}: stages.{stage}.candidates[{i}]") for i, c in enumerate(entry.get("candidates") or [])
        ]
    return PipelineConfig(active, candidates, gates, rates)


def load_pipeline(path: Path | None = None) -> PipelineConfig:
    path = Path(path or DEFAULT_PIPELINE)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"pipeline config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline config {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_pipeline(data, str(path))


def build_processors(
    pipeline: PipelineConfig,
    stages: list[str] | tuple[str, ...],
    settings: Settings,
    codec: Codec,
    store: ConversationStore,
    resources: Resources | None = None,
    metrics: Metrics | None = None,
) -> dict[str, StageProcessor]:
    resources = resources or Resources(settings)
    metrics = metrics or Metrics()
    topics = Topics(settings.topic_prefix)
    return {
        stage: StageProcessor(
            stage, build(pipeline.active[stage], resources), codec, topics,
            store=store if stage == "context" else None,
            limits=Limits(settings.max_text_bytes), metrics=metrics,
        )
        for stage in stages
    }
