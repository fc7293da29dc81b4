"""Regression suites: loading errors are one clear line; the shipped suites pass on production;
a broken candidate fails its stage's suite and the gate says which cases."""

import pytest

from agents.base import ComponentSpec
from shadow.regression import SUITES_DIR, load_suite, regression_gate, run_suite
from shadowline.errors import ConfigError


@pytest.mark.parametrize("stage", ["classify", "validate", "generate", "guardrail"])
def test_shipped_suites_pass_on_the_production_pipeline(stage):
    result = run_suite(load_suite(SUITES_DIR / f"{stage}.yaml"))
    failing = {r.case.id: r.failures for r in result.results if not r.passed}
    assert result.passed, failing


def test_a_guardrail_candidate_that_waves_everything_through_fails_its_gate():
    # No language check: the Spanish question gets an English draft instead of a human.
    spec = ComponentSpec("guardrail", "sliding-window", "2", {"check_language": False})
    gate = regression_gate(spec)
    assert gate is not None and not gate.passed
    assert "spanish-customer-gets-a-human" in gate.detail


def test_a_candidate_that_flips_topics_fails_the_classify_gate():
    spec = ComponentSpec("classify", "chaos", "1", {"wraps": {"name": "tfidf-logreg"}, "disagree_rate": 1.0})
    gate = regression_gate(spec)
    assert gate is not None and gate.name == "regression" and not gate.passed
    assert gate.value < 0.5 and "failing:" in gate.detail


def test_a_stage_without_a_suite_has_no_regression_gate():
    assert regression_gate(ComponentSpec("tone", "rules", "2", {})) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("cases: []", "expected a 'cases' list"),
        ("cases: [{conversation: [{bot: hi}]}]", "each turn is"),
        ("cases: [{conversation: [{customer: hi}], expect: {colour: red}}]", "unknown expectation(s) colour"),
    ],
)
def test_bad_suites_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_suite(path)
