"""`shadowline train` / `shadowline evaluate` and agents.evaluation: round trip, loaders, one-line errors."""

import json
from pathlib import Path

import pytest
import typer

from agents.evaluation import OOS, choose_oos_threshold, evaluate, load_clinc, load_eval_data, stratified_split
from agents.textmodels import Dataset, TextModel
from shadowline.cli import train_cmd
from shadowline.errors import ConfigError, ShadowlineError

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ROOT / "samples" / "training" / "topics.csv"
CLINC = Path("/work/shared/data/clinc150/data_full_train_val.json")


def cli(argv: list[str]) -> int:
    """What shadowline.cli.main does for these commands: ShadowlineError -> one line, exit code 2."""
    app = typer.Typer()
    train_cmd.register(app)
    try:
        result = app(args=argv, standalone_mode=False)
    except ShadowlineError as exc:
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 2
    return int(result or 0)


def tiny_clinc(tmp_path: Path) -> Path:
    def items(split_size: int, offset: int) -> list[list[str]]:
        out = []
        for intent, words in {"balance": "balance money account", "weather": "weather rain sunny",
                              "timer": "timer minutes alarm"}.items():
            for i in range(split_size):
                w = words.split()
                out.append([f"what about the {w[i % 3]} {w[(i + 1) % 3]} number {i + offset}", intent])
        return out

    obj = {
        "train": items(10, 0), "val": items(4, 100),
        "oos_train": [[f"tell me a story about dragons {i}", "oos"] for i in range(10)],
        "oos_val": [[f"sing me a song about castles {i}", "oos"] for i in range(4)],
    }
    path = tmp_path / "clinc.json"
    path.write_text(json.dumps(obj))
    return path


def test_train_artifact_evaluate_round_trip(tmp_path, capsys):
    out = tmp_path / "model"
    assert cli(["train", "classify", "--data", str(TOPICS), "--holdout", "0.2", "--out", str(out), "--version", "v7"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    cfg = json.dumps({"model_dir": str(out.resolve())})
    assert f"shadowline shadow register classify:tfidf-logreg@v7 --config '{cfg}'" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["version"] == "v7" and meta["stage"] == "classify"
    assert 0.0 < meta["metrics"]["heldout_accuracy"] <= 1.0 and "heldout_macro_f1" in meta["metrics"]
    assert 0.0 <= meta["oos_threshold"] < 1.0
    assert meta["rows"] < 288  # trained on the 80% split only
    model = TextModel.load(out)  # the artifact loads as the tfidf-logreg factories load it
    assert model.predict("my card was declined").label in model.labels

    assert cli(["evaluate", "classify", "--model", str(out), "--data", str(TOPICS)]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "macro_f1" in table


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "classify", "--model", "{model}", "--data", "/definitely/missing.csv"], "/definitely/missing.csv: no such file"),
        (["evaluate", "classify", "--model", "{model}", "--data", "{csv}", "--format", "xml"], "--format 'xml'"),
        (["evaluate", "classify", "--model", "{model}", "--data", "{notjson}", "--format", "clinc"], "not a CLINC150 JSON"),
        (["evaluate", "classify", "--model", "{model}", "--data", "{clinc}", "--split", "test"], "no split 'test'"),
        (["evaluate", "classify", "--model", "{tmp}/nomodel", "--data", "{csv}"], "not a model artifact"),
        (["evaluate", "validate", "--model", "{model}", "--data", "{csv}"], "trained for stage 'classify'"),
        (["train", "generate", "--data", "{csv}"], "only classify, validate"),
        (["train", "classify", "--data", "{badcsv}"], "header must have a 'text' column"),
        (["train", "validate", "--data", "{csv}"], "needs an 'answerable' label"),
        (["train", "classify", "--data", "{csv}", "--holdout", "1.5"], "--holdout 1.5"),
    ],
)
def test_bad_input_is_one_clear_line(argv, needle, tmp_path, capsys):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\n" + "".join(f"a{i} apple pie,fruit\nb{i} bus ride,travel\n" for i in range(6)))
    (tmp_path / "bad.csv").write_text("words,label\nx,y\n")
    (tmp_path / "notjson.json").write_text("{nope")
    model = TextModel.fit(load_eval_data(csv_path))
    model.meta["stage"] = "classify"
    model.save(tmp_path / "model")
    subst = {"{model}": str(tmp_path / "model"), "{csv}": str(csv_path), "{badcsv}": str(tmp_path / "bad.csv"),
             "{notjson}": str(tmp_path / "notjson.json"), "{clinc}": str(tiny_clinc(tmp_path)), "{tmp}": str(tmp_path)}
    argv = [next((a.replace(k, v) for k, v in subst.items() if k in a), a) for a in argv]
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_clinc_loader_adds_oos_items_of_the_split(tmp_path):
    path = tiny_clinc(tmp_path)
    val = load_clinc(path, "val")
    assert len(val.texts) == 3 * 4 + 4
    assert val.labels.count(OOS) == 4 and set(val.labels) == {"balance", "weather", "timer", OOS}
    assert load_clinc(path, "val", include_oos=False).labels.count(OOS) == 0
    assert load_eval_data(path).source.endswith("#val")  # .json picks the clinc format, split val by default
    with pytest.raises(ConfigError, match="not a \\[text, intent\\] pair"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"val": [["only text"]], "oos_val": []}))
        load_clinc(bad, "val")


def test_oos_metrics_and_threshold_from_training_folds(tmp_path):
    path = tiny_clinc(tmp_path)
    train, val = load_clinc(path, "train"), load_clinc(path, "val")
    model = TextModel.fit(train)
    choice = choose_oos_threshold(model, train)
    assert 0.0 <= choice["threshold"] < 1.0 and "out-of-fold" in choice["rule"]
    m = evaluate(model, val, choice["threshold"])
    assert {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision"} <= set(m)
    assert m["in_scope_rows"] == 12 and m["oos_rows"] == 4
    everything = evaluate(model, val, 1.01)  # every prediction below the threshold: all flagged out-of-scope
    assert everything["oos_recall"] == 1.0 and everything["in_scope_accuracy"] == 0.0
    assert everything["oos_precision"] == pytest.approx(4 / 16, abs=1e-4)


def test_stratified_split_is_fixed_by_seed():
    data = load_eval_data(TOPICS)
    a_train, a_held = stratified_split(data, 0.2, 0)
    b_train, b_held = stratified_split(data, 0.2, 0)
    assert a_held.texts == b_held.texts and len(a_train.texts) + len(a_held.texts) == len(data.texts)
    assert set(a_held.labels) == set(data.labels)  # every label is represented in the held-out part
    assert stratified_split(data, 0.2, 1)[1].texts != a_held.texts


@pytest.mark.skipif(not CLINC.is_file(), reason="CLINC150 not present under /work/shared/data")
def test_real_clinc150_subset():
    full = load_clinc(CLINC, "train")
    keep = sorted(set(full.labels) - {OOS})[:8]

    def subset(d: Dataset, per_class: int) -> Dataset:
        seen: dict[str, int] = {}
        rows = []
        for t, label in zip(d.texts, d.labels):
            if (label in keep or label == OOS) and seen.get(label, 0) < per_class:
                seen[label] = seen.get(label, 0) + 1
                rows.append((t, label))
        return Dataset(tuple(r[0] for r in rows), tuple(r[1] for r in rows), d.source, d.sha256)

    train = subset(full, 40)
    val = subset(load_clinc(CLINC, "val"), 20)
    model = TextModel.fit(train)
    threshold = choose_oos_threshold(model, train)["threshold"]
    m = evaluate(model, val, threshold)
    assert m["oos_rows"] == 20 and m["in_scope_rows"] == 8 * 20
    assert m["in_scope_accuracy"] > 0.6
    assert m["oos_recall"] > 0.3


def test_train_embedding_model_kinds_round_trip_to_the_matching_component(tmp_path, capsys):
    from agents import base
    from agents.base import ComponentSpec, Resources
    from shadowline.config import Settings

    out = tmp_path / "hybrid"
    argv = ["train", "classify", "--data", str(TOPICS), "--model", "hybrid", "--embedder", "hashing",
            "--out", str(out), "--version", "h1", "--threshold-rule", "recall"]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    cfg = json.dumps({"model_dir": str(out.resolve())})
    assert f"shadowline shadow register classify:hybrid-logreg@h1 --config '{cfg}'" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model_kind"] == "hybrid" and meta["embedder"]["name"] == "hashing"
    assert set(meta["params"]["weights"]) == {"tfidf", "embed"} and "oos_threshold" in meta
    # What `shadow register` then builds: the artifact, by the name the command printed.
    resources = Resources(Settings(samples_dir=ROOT / "samples", history_turns=12))
    component = base.build(ComponentSpec("classify", "hybrid-logreg", "h1", {"model_dir": str(out)}), resources)
    assert component.model.version == meta["model_id"] and component.model.predict("refund please").label
    assert cli(["evaluate", "classify", "--model", str(out), "--data", str(TOPICS)]) == 0
    assert "macro_f1" in capsys.readouterr().out
    assert cli(["train", "classify", "--data", str(TOPICS), "--model", "bert"]) == 2
    assert "--model 'bert': expected one of tfidf, embed, hybrid" in capsys.readouterr().err
    assert cli(["train", "classify", "--data", str(TOPICS), "--threshold-rule", "max"]) == 2
    assert "--threshold-rule 'max'" in capsys.readouterr().err


def test_recall_rule_reaches_the_target_on_training_folds(tmp_path):
    path = tiny_clinc(tmp_path)
    train = load_clinc(path, "train")
    model = TextModel.fit(train)
    choice = choose_oos_threshold(model, train, "recall", 0.9)
    assert choice["train_oof"]["oos_recall"] >= 0.9 and "recall >= 90%" in choice["rule"]
    with pytest.raises(ConfigError, match="expected balanced, f1 or recall"):
        choose_oos_threshold(model, train, "other")
