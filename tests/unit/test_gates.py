"""Promotion gates: each gate alone, the outcome escape hatch, the policy parser and the verdict."""

import pytest

from shadow.gates import GATE_NAMES, Gate, GatePolicy, evaluate, verdict
from shadow.stats import ShadowStats
from shadowline.errors import ConfigError

FAST = tuple([10.0] * 95 + [12.0] * 5)


def _stats(**kw) -> ShadowStats:
    base = dict(
        samples=500, agree=490, missing_candidate=2, missing_production=1, candidate_errors=1,
        production_latency_ms=FAST, candidate_latency_ms=tuple(x + 1 for x in FAST),
        prod_match=300, prod_total=400, cand_match=0, cand_total=0,
    )
    base.update(kw)
    return ShadowStats("classify", "tfidf@1", "llm@2", **base)


def _by_name(gates):
    return {g.name: g for g in gates}


def test_good_candidate_passes_every_gate():
    gates = evaluate(_stats(), GatePolicy())
    assert [g.name for g in gates] == list(GATE_NAMES[:-1])
    assert verdict(gates) == (True, [])
    g = _by_name(gates)["agreement"]
    assert g.value == pytest.approx(0.9636, abs=1e-3) and g.threshold == 0.90
    assert g.detail == "agreement 0.98 [0.96, 0.99] >= 0.90"


def test_too_few_samples():
    g = _by_name(evaluate(_stats(samples=150, agree=149), GatePolicy()))["min_samples"]
    assert not g.passed and (g.value, g.threshold) == (150.0, 200.0)
    assert "150" in g.detail and "200" in g.detail


def test_eighty_percent_agreement_fails():
    gates = evaluate(_stats(agree=400), GatePolicy())
    g = _by_name(gates)["agreement"]
    assert not g.passed and g.value < 0.80
    assert g.detail.startswith("agreement 0.80 [0.76, 0.83] < 0.90")
    assert "not checked" in g.detail
    assert verdict(gates) == (False, ["agreement"])


def test_disagreeing_but_non_inferior_on_outcomes_passes_via_outcomes():
    # Candidate rewrites a lot (60% agreement) but matches what agents sent at least as often.
    s = _stats(agree=300, prod_match=600, prod_total=1000, cand_match=170, cand_total=250)
    g = _by_name(evaluate(s, GatePolicy()))["agreement"]
    assert g.passed and "passes on outcomes" in g.detail and "non-inferior" in g.detail
    assert g.threshold == pytest.approx(0.58) and g.value >= 0.58


def test_inferior_on_outcomes_fails():
    s = _stats(agree=300, prod_match=600, prod_total=1000, cand_match=100, cand_total=250)
    g = _by_name(evaluate(s, GatePolicy()))["agreement"]
    assert not g.passed and "inferior" in g.detail and "passes" not in g.detail


def test_outcomes_need_enough_candidate_samples():
    s = _stats(agree=300, prod_match=600, prod_total=1000, cand_match=49, cand_total=49)
    assert not _by_name(evaluate(s, GatePolicy()))["agreement"].passed
    assert _by_name(evaluate(s, GatePolicy(min_outcome_samples=40)))["agreement"].passed


def test_noise_floor_lowers_the_agreement_bar():
    s = _stats(agree=440)  # 0.88: fails on its own
    assert not _by_name(evaluate(s))["agreement"].passed
    noisy = _stats(agree=440, noise_samples=400, noise_agree=340)  # production disagrees with itself 15%
    g = _by_name(evaluate(noisy))["agreement"]
    assert g.passed and "noise floor" in g.detail and g.threshold < 0.90


def test_ten_times_slower_fails_latency():
    gates = evaluate(_stats(candidate_latency_ms=tuple(x * 10 for x in FAST)), GatePolicy())
    g = _by_name(gates)["latency"]
    assert not g.passed and g.value == pytest.approx(101.0) and g.threshold == pytest.approx(15.15)
    assert verdict(gates)[1] == ["latency"]


def test_latency_floor_absorbs_sub_millisecond_noise():
    prod, cand = (0.2,) * 100, (0.9,) * 100  # 4.5x slower, but < 1 ms
    g = _by_name(evaluate(_stats(production_latency_ms=prod, candidate_latency_ms=cand)))["latency"]
    assert g.passed and g.threshold == pytest.approx(5.2)


def test_absolute_latency_budget():
    slow = tuple([300.0] * 100)
    only_budget = GatePolicy(max_latency_ratio=None, max_latency_p95_ms=500.0)
    assert _by_name(evaluate(_stats(candidate_latency_ms=slow), only_budget))["latency"].passed
    both = GatePolicy(max_latency_p95_ms=8.0)
    g = _by_name(evaluate(_stats(), both))["latency"]
    assert not g.passed and g.threshold == 8.0 and "budget" in g.detail


def test_no_candidate_latency_fails():
    assert not _by_name(evaluate(_stats(candidate_latency_ms=())))["latency"].passed


def test_errors_fail_error_rate():
    g = _by_name(evaluate(_stats(candidate_errors=20)))["error_rate"]
    assert not g.passed and g.value == pytest.approx(20 / 520) and g.threshold == 0.01
    assert "20 candidate errors" in g.detail


def test_missing_candidate_outputs_fail_missing():
    g = _by_name(evaluate(_stats(missing_candidate=60)))["missing"]
    assert not g.passed and g.value == pytest.approx(60 / 561)


def test_failing_names_are_listed_in_order_with_regression():
    bad = _stats(samples=100, agree=70, candidate_errors=10, candidate_latency_ms=tuple(x * 10 for x in FAST))
    regression = Gate("regression", False, 0.91, 0.95, "suite accuracy 0.91 < 0.95")
    gates = evaluate(bad, GatePolicy(), regression=regression)
    assert gates[-1] is regression
    assert verdict(gates) == (False, ["min_samples", "agreement", "latency", "error_rate", "regression"])
    with pytest.raises(ValueError):
        evaluate(bad, regression=Gate("suite", True, None, None))


def test_verdict_of_nothing_is_not_a_pass():
    assert verdict([]) == (False, [])


def test_gate_record_round_trip():
    g = Gate("min_samples", True, 250, 200, "250 >= 200")
    rec = g.to_record()
    assert rec == {"name": "min_samples", "passed": True, "value": 250.0, "threshold": 200.0, "detail": "250 >= 200"}
    assert Gate.from_record(rec) == Gate("min_samples", True, 250.0, 200.0, "250 >= 200")
    assert Gate("latency", False, None, None).to_record()["value"] is None


def test_gate_record_fits_the_avro_schema():
    fastavro = pytest.importorskip("fastavro")
    import json
    from pathlib import Path

    schema_path = Path(__file__).resolve().parents[2] / "schemas" / "avro" / "GateResult.avsc"
    schema = fastavro.parse_schema(json.loads(schema_path.read_text()))
    for g in evaluate(_stats()):
        assert fastavro.validate(g.to_record(), schema)


def test_policy_from_dict():
    assert GatePolicy.from_dict(None) == GatePolicy()
    p = GatePolicy.from_dict({"min_samples": 500, "min_agreement_lower": 0.95, "max_latency_p95_ms": 800,
                              "max_latency_ratio": None})
    assert p.min_samples == 500 and isinstance(p.max_latency_p95_ms, float) and p.max_latency_ratio is None
    assert GatePolicy.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("bad", [
    {"min_sample": 10},
    {"min_samples": "200"},
    {"min_samples": 1.5},
    {"max_error_rate": True},
    {"max_error_rate": 1.5},
    {"min_agreement_lower": None},
    {"max_latency_ratio": 0},
    ["min_samples"],
])
def test_policy_from_dict_rejects(bad):
    with pytest.raises(ConfigError):
        GatePolicy.from_dict(bad)
