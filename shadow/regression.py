"""Regression suites: YAML cases run through the whole pipeline (in memory) with one component swapped.

A case is a conversation whose last customer turn is judged against expectations: the topic, whether it
is answered or escalated (and where), phrases the answer must or must not contain, groundedness, and a
minimum similarity to a reference reply. The promotion gate runs a stage's suite against the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from agents.base import ComponentSpec
from shadow.gates import Gate
from shadowline.config import REPO_ROOT
from shadowline.errors import ConfigError

SUITES_DIR = REPO_ROOT / "suites"
EXPECT_KEYS = {"topic", "outcome", "escalated_at", "must_contain", "must_not_contain", "grounded", "reference", "min_similarity"}


@dataclass(frozen=True)
class Case:
    id: str
    turns: tuple[tuple[str, str], ...]
    expect: dict[str, Any]
    known_gap: str | None = None  # like xfail: run and reported, not counted, until someone fixes it


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    min_pass_rate: float = 1.0


@dataclass(frozen=True)
class CaseResult:
    case: Case
    failures: tuple[str, ...]
    answer: str

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SuiteResult:
    suite: Suite
    component: str
    results: tuple[CaseResult, ...] = field(default_factory=tuple)

    @property
    def counted(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if r.case.known_gap is None)

    @property
    def fixed_gaps(self) -> list[str]:
        return [r.case.id for r in self.results if r.case.known_gap is not None and r.passed]

    @property
    def pass_rate(self) -> float:
        return sum(r.passed for r in self.counted) / len(self.counted) if self.counted else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.counted) and self.pass_rate >= self.suite.min_pass_rate


def load_suite(path: Path) -> Suite:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"suite {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"suite {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise ConfigError(f"suite {path}: expected a 'cases' list")
    cases = []
    for i, raw in enumerate(data["cases"]):
        where = f"suite {path}: case {i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("conversation"), list) or not raw["conversation"]:
            raise ConfigError(f"{where}: needs a non-empty 'conversation' list of {{customer|agent: text}}")
        turns = []
        for turn in raw["conversation"]:
            if not isinstance(turn, dict) or len(turn) != 1 or next(iter(turn)) not in ("customer", "agent"):
                raise ConfigError(f"{where}: each turn is {{customer: text}} or {{agent: text}}")
            turns.append(next(iter(turn.items())))
        expect = raw.get("expect") or {}
        unknown = set(expect) - EXPECT_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown expectation(s) {', '.join(sorted(unknown))}")
        gap = raw.get("known_gap")
        cases.append(Case(str(raw.get("id", i)), tuple(turns), expect, str(gap) if gap else None))
    return Suite(str(data.get("name", Path(path).stem)), tuple(cases), float(data.get("min_pass_rate", 1.0)))


def _check(expect: dict[str, Any], kind: str, rec: dict[str, Any], similarity: Any) -> list[str]:
    turn = rec["turn"]
    answer = rec.get("text") or rec.get("draft") or ""
    fails = []
    if "outcome" in expect and expect["outcome"] != kind:
        fails.append(f"expected {expect['outcome']}, got {kind}" + (f" at {rec['stage']}: {rec['reason']}" if kind == "escalation" else ""))
    if "escalated_at" in expect and (kind != "escalation" or rec["stage"] != expect["escalated_at"]):
        fails.append(f"expected escalation at {expect['escalated_at']}, got {kind}" + (f" at {rec['stage']}" if kind == "escalation" else ""))
    if "topic" in expect:
        topic = (turn.get("classify") or {}).get("topic")
        if topic != expect["topic"]:
            fails.append(f"expected topic {expect['topic']}, got {topic}")
    for phrase in expect.get("must_contain", []):
        if phrase.lower() not in answer.lower():
            fails.append(f"answer lacks {phrase!r}")
    for phrase in expect.get("must_not_contain", []):
        if phrase.lower() in answer.lower():
            fails.append(f"answer contains {phrase!r}")
    if "grounded" in expect:
        verdict = (turn.get("guardrail") or {}).get("verdict")
        if (verdict == "pass") != bool(expect["grounded"]):
            fails.append(f"expected grounded={expect['grounded']}, guardrail said {verdict}")
    if "reference" in expect:
        sim = similarity(answer, expect["reference"]) if answer else 0.0
        if sim < float(expect.get("min_similarity", 0.5)):
            fails.append(f"similarity to reference {sim:.2f} < {float(expect.get('min_similarity', 0.5)):.2f}")
    return fails


def run_suite(suite: Suite, component: ComponentSpec | None = None, settings: Any = None) -> SuiteResult:
    """Each case in a fresh in-memory pipeline (no shared history), with ``component`` swapped in."""
    from kb_index.embedder import get_embedder
    from shadow.agreement import TextSimilarity
    from streams.pipeline import load_pipeline
    from streams.testing import InMemoryPipeline
    from shadowline.config import get_settings

    settings = settings or get_settings()
    base = load_pipeline(settings.pipeline_config)
    if component is not None:
        base = replace(base, active={**base.active, component.stage: component})
    similarity = TextSimilarity(get_embedder("hashing"))
    results = []
    resources = None
    for case in suite.cases:
        pipe = InMemoryPipeline(base, settings, resources)
        resources = pipe.resources  # built once: models and index are shared between cases
        pipe.converse(f"suite-{case.id}", case.turns)
        last = f"suite-{case.id}-{max(i for i, (role, _) in enumerate(case.turns) if role == 'customer')}"
        found = [("suggestion", r) for r in pipe.suggestions if r["event_id"].startswith(last + "-")]
        found += [("escalation", r) for r in pipe.escalations if r["event_id"].startswith(last + "-")]
        if not found:
            results.append(CaseResult(case, ("no result for the last customer turn",), ""))
            continue
        kind, rec = found[0]
        results.append(CaseResult(case, tuple(_check(case.expect, kind, rec, similarity)), rec.get("text") or rec.get("draft") or ""))
    ref = component.ref if component else "active pipeline"
    return SuiteResult(suite, ref, tuple(results))


def regression_gate(spec: ComponentSpec, suites_dir: Path = SUITES_DIR) -> Gate | None:
    """The promotion gate: the stage's suite (``suites/<stage>.yaml``) run against the candidate."""
    path = suites_dir / f"{spec.stage}.yaml"
    if not path.exists():
        return None
    result = run_suite(load_suite(path), spec)
    failed = [r.case.id for r in result.counted if not r.passed]
    detail = f"{sum(r.passed for r in result.counted)}/{len(result.counted)} cases pass (need {result.suite.min_pass_rate:.0%})"
    if failed:
        detail += f"; failing: {', '.join(failed[:5])}"
    return Gate("regression", result.passed, result.pass_rate, result.suite.min_pass_rate, detail)
