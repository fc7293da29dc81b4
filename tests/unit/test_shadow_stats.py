"""Shadow statistics: Wilson intervals, percentiles, derived rates and merging."""

import pytest

from shadow.stats import (
    GRID_KEYS, LATENCY_WINDOW, MATCH_THRESHOLD, ShadowStats, empty, merged, outcome_match, percentile,
    wilson_interval,
)


@pytest.mark.parametrize("k, n, low, high", [
    (8, 10, 0.490, 0.943),
    (0, 0, 0.0, 1.0),
    (100, 100, 0.963, 1.0),
    (0, 10, 0.0, 0.278),
    (50, 100, 0.404, 0.596),
    (930, 1000, 0.912, 0.944),
])
def test_wilson_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-3) and hi == pytest.approx(high, abs=1e-3)


def test_wilson_z_and_bad_input():
    narrow, wide = wilson_interval(80, 100, z=1.0), wilson_interval(80, 100, z=2.576)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)
    assert percentile([10, 20], 25) == pytest.approx(12.5)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_outcome_match():
    assert MATCH_THRESHOLD == 0.6
    assert outcome_match(0.6, MATCH_THRESHOLD) and outcome_match(0.9, 0.6) and not outcome_match(0.59, 0.6)
    assert outcome_match(0.61)


def _stats(**kw) -> ShadowStats:
    return ShadowStats("classify", "tfidf@1", "llm@2", **kw)


def test_empty_stats():
    s = empty("classify", "tfidf@1", "llm@2")
    assert s.samples == 0 and dict(s.grid) == dict.fromkeys(GRID_KEYS, 0)
    assert s.agreement is None and s.disagreement is None and s.net_disagreement is None
    assert s.agreement_interval == (0.0, 1.0)
    assert s.error_rate == 0.0 and s.missing_rate == 0.0
    assert s.prod_match_rate is None and s.cand_match_rate is None and s.noise_disagreement is None
    assert s.production_p95_ms is None and s.candidate_p50_ms is None


def test_derived_properties():
    s = _stats(
        samples=200, agree=180, missing_candidate=10, missing_production=4, candidate_errors=2,
        production_latency_ms=tuple(float(x) for x in range(1, 101)), candidate_latency_ms=(10.0, 20.0, 30.0),
        noise_samples=50, noise_agree=47, prod_match=60, prod_total=100, cand_match=30, cand_total=40,
        grid={"agree_match": 25, "diverge_miss": 5},
    )
    assert s.agreement == 0.9 and s.disagreement == pytest.approx(0.1)
    assert s.agreement_interval == wilson_interval(180, 200)
    assert s.noise_disagreement == pytest.approx(0.06)
    assert s.net_disagreement == pytest.approx(0.04)
    assert s.error_rate == pytest.approx(2 / 202)
    assert s.missing_rate == pytest.approx(10 / 212)  # missing production is not the candidate's
    assert s.prod_match_rate == 0.6 and s.cand_match_rate == 0.75
    assert s.production_p50_ms == pytest.approx(50.5) and s.production_p95_ms == pytest.approx(95.05)
    assert s.candidate_p50_ms == 20.0 and s.candidate_p95_ms == pytest.approx(29.0)
    assert dict(s.grid) == {"agree_match": 25, "agree_miss": 0, "diverge_match": 0, "diverge_miss": 5}
    d = s.to_dict()
    assert d["agreement"] == 0.9 and d["grid"]["agree_match"] == 25 and d["candidate_p95_ms"] == pytest.approx(29.0)


def test_net_disagreement_never_negative():
    s = _stats(samples=100, agree=99, noise_samples=100, noise_agree=90)
    assert s.net_disagreement == 0.0


def test_stats_are_frozen_and_validated():
    s = _stats(grid={"agree_match": 1})
    with pytest.raises(AttributeError):
        s.samples = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.grid["agree_match"] = 2  # type: ignore[index]
    with pytest.raises(ValueError):
        _stats(samples=1, agree=2)
    with pytest.raises(ValueError):
        _stats(grid={"agree_hit": 1})
    with pytest.raises(ValueError):
        _stats(candidate_errors=-1)


def test_merge_sums_counts_and_concatenates_latency():
    a = _stats(samples=10, agree=9, missing_candidate=1, candidate_errors=1, noise_samples=2, noise_agree=2,
               prod_match=3, prod_total=5, cand_match=2, cand_total=4, production_latency_ms=(1.0, 2.0),
               candidate_latency_ms=(5.0,), grid={"agree_match": 3, "diverge_miss": 1})
    b = _stats(samples=5, agree=4, missing_production=2, prod_total=1, production_latency_ms=(3.0,),
               candidate_latency_ms=(6.0, 7.0), grid={"agree_match": 1, "diverge_match": 2})
    m = merged(a, b)
    assert (m.samples, m.agree, m.missing_candidate, m.missing_production, m.candidate_errors) == (15, 13, 1, 2, 1)
    assert (m.noise_samples, m.noise_agree, m.prod_match, m.prod_total, m.cand_match, m.cand_total) == (2, 2, 3, 6, 2, 4)
    assert m.production_latency_ms == (1.0, 2.0, 3.0) and m.candidate_latency_ms == (5.0, 6.0, 7.0)
    assert dict(m.grid) == {"agree_match": 4, "agree_miss": 0, "diverge_match": 2, "diverge_miss": 1}
    assert merged(empty("classify", "tfidf@1", "llm@2"), a) == a


def test_merge_keeps_the_most_recent_latency_window():
    a = _stats(candidate_latency_ms=tuple(float(i) for i in range(4000)))
    b = _stats(candidate_latency_ms=tuple(float(i) for i in range(4000, 7000)))
    m = merged(a, b)
    assert len(m.candidate_latency_ms) == LATENCY_WINDOW
    assert m.candidate_latency_ms[0] == 2000.0 and m.candidate_latency_ms[-1] == 6999.0


def test_merge_refuses_different_pairs():
    with pytest.raises(ValueError):
        merged(_stats(), ShadowStats("classify", "tfidf@1", "llm@3"))
