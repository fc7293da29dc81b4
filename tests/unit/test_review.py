"""Judge calibration: Cohen's kappa against a hand-computed example and scikit-learn, the per-aspect table,
label validation and the review CLI's bad input (the Redis-backed queue is in tests/integration/test_review_redis.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from shadow.calibration import JUDGE_POSITIVE, AspectAgreement, agreement_table, cohen_kappa
from shadow.review import check_labels
from shadowline.cli.main import main
from shadowline.errors import ConfigError


def test_kappa_matches_a_hand_computed_example() -> None:
    """50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    p_o = 35/50 = 0.7; A says yes 25/50, B 30/50, so p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4."""
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed, n, classes, agree", [(0, 10, 2, 0.5), (1, 200, 2, 0.8), (2, 57, 3, 0.6), (3, 5, 2, 0.9)])
def test_kappa_agrees_with_scikit_learn(seed: int, n: int, classes: int, agree: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, classes, n)
    b = np.where(rng.random(n) < agree, a, rng.integers(0, classes, n))
    if len(set(a) | set(b)) == 1:
        pytest.skip("degenerate draw")
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_is_undefined_when_both_raters_use_one_label() -> None:
    assert math.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that kappa is undefined, and returns NaN too
        assert math.isnan(cohen_kappa_score([1, 1, 1], [1, 1, 1]))
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError):
        cohen_kappa([1], [1, 0])


def test_agreement_table_binarises_judge_scores_at_the_threshold() -> None:
    pairs = [("rules@1", "accuracy", 1, 0.9), ("rules@1", "accuracy", 0, 0.2), ("rules@1", "accuracy", 1, JUDGE_POSITIVE),
             ("rules@1", "accuracy", 0, 0.7), ("rules@1", "language", 1, 1.0), ("rules@1", "language", 1, 0.95),
             ("openai@1", "accuracy", 1, 0.4)]
    rows = {(r.judge, r.aspect): r for r in agreement_table(pairs)}
    acc = rows[("rules@1", "accuracy")]
    # judge 1,0,1,1 vs human 1,0,1,0: p_o 0.75, p_e 0.75*0.5 + 0.25*0.5 = 0.5, kappa 0.5.
    assert (acc.n, acc.agreement, acc.human_positive) == (4, 0.75, 0.5) and acc.kappa == pytest.approx(0.5)
    assert rows[("rules@1", "language")] == AspectAgreement("rules@1", "language", 2, 1.0, None, 1.0)
    assert rows[("openai@1", "accuracy")].agreement == 0.0
    assert [(r.judge, r.aspect) for r in agreement_table(pairs)] == sorted(rows)


def test_labels_are_checked() -> None:
    assert check_labels({"relevance": 1, "retrieval": 0}) == {"retrieval": 0, "relevance": 1}
    for bad, message in [({"tone": 1}, "unknown aspect"), ({"accuracy": 2}, "0 \\(bad\\) or 1"),
                         ({"accuracy": 0.5}, "0 \\(bad\\) or 1"), ({}, "at least one")]:
        with pytest.raises(ConfigError, match=message):
            check_labels(bad)


@pytest.mark.parametrize("argv, needle", [
    (["review", "label", "rev-x", "--accuracy", "2"], "--accuracy"),
    (["review", "label", "rev-x"], "label at least one aspect"),
    (["review", "next", "-n", "0"], "-n"),
    (["judge", "run", "--rate", "2"], "--rate"),
    (["judge", "run", "--config", "[1"], "--config is not JSON"),
    (["judge", "run", "--sample-by", "customer"], "sample_by must be one of event, conversation"),
])
def test_bad_review_and_judge_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
