"""What a component is, and how the pipeline config names one.

A component is a plain class with ``stage``, ``name``, ``version`` and ``process(turn) -> Outcome``.
It never touches Kafka, Faust or Redis: the stream layer hands it a ``Turn`` (and, for the context
stage, the conversation's ``Prior`` state read from the store) and routes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

from agents.records import Message, Outcome, Turn
from shadowline.errors import ConfigError


@runtime_checkable
class Component(Protocol):
    stage: ClassVar[str]
    name: str
    version: str

    def process(self, turn: Turn) -> Outcome[Any]: ...


@dataclass(frozen=True, slots=True)
class Prior:
    """A conversation's state before this message: kept in Redis by the context stage's runner."""

    history: tuple[Message, ...] = ()
    summary: str = ""
    turns: int = 0


class ContextComponent(Protocol):
    stage: ClassVar[str]
    name: str
    version: str

    def process(self, turn: Turn, prior: Prior) -> Outcome[Any]: ...


@dataclass(frozen=True)
class ComponentSpec:
    """``stage:name@version`` plus its config, as written in the pipeline config and the registry."""

    stage: str
    name: str
    version: str = "1"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.stage}:{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str, config: dict[str, Any] | None = None) -> ComponentSpec:
        """Parse ``stage:name@version`` (version optional)."""
        stage, sep, rest = text.partition(":")
        if not sep or not stage or not rest:
            raise ConfigError(f"component reference {text!r} is not stage:name[@version]")
        name, _, version = rest.partition("@")
        return cls(stage, name, version or "1", dict(config or {}))


Factory = Callable[[ComponentSpec, "Resources"], Any]
_FACTORIES: dict[tuple[str, str], Factory] = {}


def register(stage: str, name: str) -> Callable[[Factory], Factory]:
    """Make a component buildable by name from the pipeline config."""

    def deco(factory: Factory) -> Factory:
        _FACTORIES[(stage, name)] = factory
        return factory

    return deco


def available(stage: str | None = None) -> list[str]:
    _load_builtin()
    return sorted(f"{s}:{n}" for s, n in _FACTORIES if stage in (None, s))


def build(spec: ComponentSpec, resources: Resources) -> Any:
    _load_builtin()
    factory = _FACTORIES.get((spec.stage, spec.name))
    if factory is None:
        known = ", ".join(available(spec.stage)) or "none"
        raise ConfigError(f"unknown component {spec.stage}:{spec.name} (known: {known})")
    return factory(spec, resources)


def _load_builtin() -> None:
    # Importing the stage modules runs their @register decorators.
    from agents import chaos, classify, context, generate, guardrail, judge, retrieve, tone, validate  # noqa: F401


class Resources:
    """Expensive things several components share (embedder, KB index, LLM client), built once, lazily."""

    def __init__(self, settings: Any, **overrides: Any) -> None:
        self.settings = settings
        self._cache: dict[str, Any] = dict(overrides)

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]
