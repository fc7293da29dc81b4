"""Weak supervision: label model (EM) on synthetic votes, LF files and stats, `shadowline weak-label`."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import typer

from agents.weak.label_model import ABSTAIN, LabelModel, majority_vote
from agents.weak.labels import weak_label
from agents.weak.lfs import LabelingFunction, apply_lfs, auto_margin, load_lfs
from agents.weak.stats import lf_summary, matrix_summary
from shadowline.cli import weak_cmd
from shadowline.errors import ConfigError, ShadowlineError


def synthetic_votes(n: int, accuracies: list[float], coverages: list[float], balance: list[float], seed: int = 0):
    """Votes from LFs with known accuracy (errors spread evenly over wrong classes) and coverage."""
    rng = np.random.default_rng(seed)
    k = len(balance)
    y = rng.choice(k, size=n, p=balance)
    L = np.full((n, len(accuracies)), ABSTAIN)
    for j, (acc, cov) in enumerate(zip(accuracies, coverages)):
        votes = rng.random(n) < cov
        right = rng.random(n) < acc
        wrong = (y + rng.integers(1, k, size=n)) % k
        L[votes, j] = np.where(right, y, wrong)[votes]
    return L, y


def test_label_model_recovers_lf_accuracies_and_class_balance():
    accuracies, balance = [0.9, 0.8, 0.7, 0.6, 0.55], [0.4, 0.3, 0.2, 0.1]
    L, y = synthetic_votes(6000, accuracies, [0.5, 0.6, 0.7, 0.8, 0.9], balance)
    lm = LabelModel(4).fit(L)
    assert lm.report.converged
    assert np.abs(lm.lf_accuracies() - accuracies).max() < 0.05
    assert np.abs(lm.balance - balance).max() < 0.03
    pred = lm.predict(L)
    labelled = pred != ABSTAIN
    # Weighting good LFs above bad ones beats one-LF-one-vote on the rows both label.
    mv = majority_vote(L, 4, tie_break="random")
    both = labelled & (mv != ABSTAIN)
    assert (pred[both] == y[both]).mean() > (mv[both] == y[both]).mean() + 0.02
    assert (pred[labelled] == y[labelled]).mean() > 0.85


def test_label_model_learns_that_a_unipolar_lf_abstaining_is_evidence():
    # Two classes; a keyword-style LF votes only class 1 (on 80% of class-1 rows and 5% of class-0 rows),
    # two noisy LFs vote either class. Three conditionally independent LFs make the model identifiable.
    rng = np.random.default_rng(3)
    n = 20000
    y = rng.integers(0, 2, n)
    kw = np.where(((y == 1) & (rng.random(n) < 0.8)) | ((y == 0) & (rng.random(n) < 0.05)), 1, ABSTAIN)
    noisy = np.where(rng.random(n) < 0.7, y, 1 - y)
    other = np.where(rng.random(n) < 0.6, np.where(rng.random(n) < 0.75, y, 1 - y), ABSTAIN)
    lm = LabelModel(2).fit(np.column_stack([kw, noisy, other]))
    p = lm.predict_proba(np.array([[ABSTAIN, 1, ABSTAIN], [1, 1, ABSTAIN], [1, 0, ABSTAIN]]))[:, 1]
    # True posteriors: 0.2*0.7/(0.2*0.7+0.95*0.3)=0.33; 0.8*0.7/(0.8*0.7+0.05*0.3)=0.97; 0.8*0.3/(0.8*0.3+0.05*0.7)=0.87
    assert p == pytest.approx([0.33, 0.97, 0.87], abs=0.06)
    assert lm.lf_accuracies()[0] == pytest.approx(0.8 * 0.5 / (0.8 * 0.5 + 0.05 * 0.5), abs=0.03)


def test_abstains_and_ties():
    L = np.array([[ABSTAIN, ABSTAIN], [0, 1], [1, ABSTAIN], [0, 0]] * 50)
    lm = LabelModel(2, class_balance=np.array([0.5, 0.5])).fit(L)
    pred = lm.predict(L[:4])
    assert pred[0] == ABSTAIN  # no votes: nothing known, no label
    assert pred[2] == 1 and pred[3] == 0
    # Symmetric LFs on a balanced prior: the 0-vs-1 row is a true tie; each policy does what it says.
    sym = LabelModel(2, class_balance=np.array([0.5, 0.5])).fit(np.array([[0, 1], [1, 0], [0, 0], [1, 1]] * 50))
    tie = np.array([[0, 1]])
    assert np.allclose(sym.predict_proba(tie), 0.5, atol=1e-6)
    assert sym.predict(tie, tie_break="abstain")[0] == ABSTAIN
    assert sym.predict(tie, tie_break="first")[0] == 0
    assert {int(sym.predict(tie, tie_break="random", seed=s)[0]) for s in range(20)} == {0, 1}
    assert list(majority_vote(np.array([[0, 1], [ABSTAIN, ABSTAIN], [1, 1]]), 2)) == [ABSTAIN, ABSTAIN, 1]


def test_label_model_rejects_bad_input():
    with pytest.raises(ConfigError, match="-1 \\(abstain\\) or 0..2"):
        LabelModel(3).fit(np.array([[0, 5]]))
    with pytest.raises(ConfigError, match="not fitted"):
        LabelModel(3).predict(np.array([[0, 1]]))
    with pytest.raises(ConfigError, match="class_balance"):
        LabelModel(3, class_balance=np.array([1.0, 0.0, 1.0]))
    lm = LabelModel(2).fit(np.array([[0, 1, ABSTAIN], [1, 1, ABSTAIN]]))
    assert np.isnan(lm.lf_accuracies()[2])  # never voted: nothing learned about it
    with pytest.raises(ConfigError, match="2 LFs"):
        lm.predict_proba(np.array([[0, 1]]))


def test_lf_stats_coverage_overlap_conflict_and_accuracy():
    # rows:        lf_a  lf_b  lf_c
    L = np.array([[0, 0, ABSTAIN],       # overlap, agree
                  [0, 1, ABSTAIN],       # overlap, conflict
                  [ABSTAIN, ABSTAIN, 1],  # alone
                  [ABSTAIN, ABSTAIN, ABSTAIN]])
    gold = np.array([0, 1, 1, ABSTAIN])
    rows = {r["lf"]: r for r in lf_summary(L, ["a", "b", "c"], ["x", "y"], gold=gold, estimated_accuracy=[0.9, np.nan, 0.5])}
    assert rows["a"]["coverage"] == 0.5 and rows["a"]["overlaps"] == 0.5 and rows["a"]["conflicts"] == 0.25
    assert rows["b"]["polarity"] == ["x", "y"] and rows["b"]["accuracy"] == 1.0 and rows["a"]["accuracy"] == 0.5
    assert rows["c"]["overlaps"] == 0.0 and rows["c"]["conflicts"] == 0.0 and rows["c"]["estimated_accuracy"] == 0.5
    assert rows["b"]["estimated_accuracy"] is None
    assert matrix_summary(L) == {"rows": 4, "lfs": 3, "coverage": 0.75, "overlap": 0.5, "conflict": 0.25,
                                 "mean_votes_per_row": 1.25}


TEXTS = {
    "refund": ["where is my refund", "I want my money back for the order", "refund still not received",
               "can I get a refund on the shoes", "money back please, the item broke"],
    "card": ["my card was declined at the shop", "card payment failed twice", "why was my card declined",
             "the card does not work at the till", "payment with my card got rejected"],
    "delivery": ["parcel has not arrived yet", "when will my package be delivered", "courier lost my parcel",
                 "tracking says delivered but no package", "delivery is late by a week"],
}


def write_lf_files(tmp_path: Path) -> tuple[Path, Path]:
    seeds = tmp_path / "seeds.csv"
    with seeds.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for label, texts in TEXTS.items():
            w.writerow([texts[0], label])
    lf_file = tmp_path / "lfs.yaml"
    lf_file.write_text(
        "embedder: hashing\n"
        "similarity: {seeds: seeds.csv, threshold: 0.2, thresholds: {card: 0.25}}\n"
        "lfs:\n"
        "  - {name: kw_refund, label: refund, keywords: [refund, money back]}\n"
        "  - {name: re_card, label: card, regex: 'card.*(declined|rejected|failed)'}\n"
        "  - {name: kw_parcel, label: delivery, keywords: [parcel, package]}\n"
    )
    return lf_file, seeds


def test_lf_file_and_label_matrix(tmp_path):
    lf_file, _ = write_lf_files(tmp_path)
    lfset = load_lfs(lf_file)
    assert lfset.names == ["kw_refund", "re_card", "kw_parcel", "sim_card", "sim_delivery", "sim_refund"]
    assert lfset.labels == ("card", "delivery", "refund")
    assert {lf.name: lf.threshold for lf in lfset.lfs if lf.kind == "seeds"} == {
        "sim_card": 0.25, "sim_delivery": 0.2, "sim_refund": 0.2}
    L = apply_lfs(lfset, ["I want a refund", "my card was declined again", "the weather is nice", "refunds"])
    assert list(L[0, :3]) == [2, ABSTAIN, ABSTAIN]
    assert list(L[1, :3]) == [ABSTAIN, 0, ABSTAIN]
    assert (L[2] == ABSTAIN).all()  # nothing fires on an unrelated text
    assert L[3, 0] == ABSTAIN  # keywords match whole words only
    assert L[1, 3] == 0 and (L[1, 4:] == ABSTAIN).all()  # exclusive similarity: only the nearest label votes


@pytest.mark.parametrize("body, needle", [
    ("lfs: [{name: a, label: x}]", "exactly one of keywords, regex, seeds"),
    ("lfs: [{name: a, label: x, regex: '('}]", "bad regex"),
    ("lfs: [{name: a, label: x, keywords: [k]}, {name: a, label: y, keywords: [j]}]", "duplicate LF names: a"),
    ("labels: [x]\nlfs: [{name: a, label: y, keywords: [k]}]", "missing from 'labels': y"),
    ("lfs: [{name: a, label: x, seeds: [s], threshold: 3}]", "not a cosine similarity"),
    ("lfs: [{name: a, label: x, seeds: [s], margin: lots}]", "margin 'lots': 'auto' or a number in 0..2"),
    ("lfs: [{name: a, label: x, seeds: [s], match: mean}]", "match 'mean': expected centroid or nearest"),
    ("lfs: []", "no labeling functions"),
    ("similarity: {seeds: nope.csv}", "nope.csv"),
    ("[1, 2", "not valid YAML"),
])
def test_bad_lf_files(tmp_path, body, needle):
    (tmp_path / "lfs.yaml").write_text(body)
    with pytest.raises(ConfigError) as err:
        load_lfs(tmp_path / "lfs.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_weak_label_end_to_end_with_gold(tmp_path):
    lf_file, _ = write_lf_files(tmp_path)
    texts = [t for ts in TEXTS.values() for t in ts[1:]] + ["what a lovely day"]
    gold = [label for label, ts in TEXTS.items() for _ in ts[1:]] + ["card"]
    result = weak_label(load_lfs(lf_file), texts, gold=gold)
    texts_out, labels_out = result.labelled()
    assert "what a lovely day" not in texts_out  # no LF voted: left out, not guessed
    assert result.summary["coverage"] == pytest.approx(len(texts_out) / len(texts), abs=1e-4)
    assert result.summary["label_model_accuracy"] >= 0.8
    assert all(r["estimated_accuracy"] is None or 0 <= r["estimated_accuracy"] <= 1 for r in result.lf_stats)
    rows = list(csv.DictReader(result.to_csv().splitlines()))
    assert [r["text"] for r in rows] == list(texts_out) and all(0 < float(r["confidence"]) <= 1 for r in rows)


def cli(argv: list[str]) -> int:
    app = typer.Typer()
    weak_cmd.register(app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name in argv
    try:
        return int(app(args=argv, standalone_mode=False) or 0)
    except ShadowlineError as exc:
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 2


def test_weak_label_cli(tmp_path, capsys):
    lf_file, seeds = write_lf_files(tmp_path)
    data = tmp_path / "unlabelled.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "gold"])
        for label, ts in TEXTS.items():
            for t in ts[1:]:
                w.writerow([t, label])
    out, stats = tmp_path / "out" / "labels.csv", tmp_path / "stats.json"
    argv = ["weak-label", "--lfs", str(lf_file), "--data", str(data), "--out", str(out), "--seeds", str(seeds),
            "--gold-column", "gold", "--stats", str(stats)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "6 LFs on 12 rows" in printed and "label model" in printed and f"to {out}" in printed
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert rows and set(rows[0]) == {"text", "label", "confidence"}
    saved = json.loads(stats.read_text())
    assert {r["lf"] for r in saved["lfs"]} >= {"kw_refund", "sim_card"} and saved["summary"]["rows"] == 12

    assert cli(["weak-label", "--lfs", str(tmp_path / "missing.yaml"), "--data", str(data), "--out", str(out)]) == 2
    assert "missing.yaml: cannot read LF file" in capsys.readouterr().err
    assert cli(["weak-label", "--lfs", str(lf_file), "--data", str(lf_file), "--out", str(out)]) == 2
    assert "header must have a 'text' column" in capsys.readouterr().err


def test_auto_margin_is_chosen_from_the_seeds_alone():
    # Two intents, four seeds each; one 'a' seed (a labelling slip) sits among the 'b' seeds.
    e1, e2 = np.eye(8)[0], np.eye(8)[1]
    rng = np.random.default_rng(0)

    def noisy(v: np.ndarray) -> np.ndarray:
        w = v + 0.05 * rng.standard_normal(8)
        return w / np.linalg.norm(w)

    S = np.stack([noisy(e1), noisy(e1), noisy(e1), noisy(e2), noisy(e2), noisy(e2), noisy(e2), noisy(e2)])
    owner = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    lfs = [LabelingFunction("sim_a", "a", "seeds", seeds=("s",) * 4), LabelingFunction("sim_b", "b", "seeds", seeds=("s",) * 4)]
    assert auto_margin(S, owner, lfs, 0.8) == 0.0  # 7 of 8 seeds right at any margin
    strict = auto_margin(S, owner, lfs, 1.0)
    assert strict > 0.0  # only a margin above the slip's lead gets every voted seed right


def test_weak_label_reports_the_resolved_auto_margin(tmp_path):
    lf_file, _ = write_lf_files(tmp_path)
    lf_file.write_text(lf_file.read_text().replace("threshold: 0.2,", "threshold: 0.2, margin: auto, target_precision: 0.5,"))
    result = weak_label(load_lfs(lf_file), [t for ts in TEXTS.values() for t in ts[1:]])
    assert 0.0 <= result.summary["similarity_margin"] <= 0.3
