"""`shadowline train` and `shadowline evaluate`: fit a text-model artifact, measure it.

``train --model tfidf|embed|hybrid`` fits logistic regression on TF-IDF features, MiniLM sentence
embeddings or both, writes a versioned artifact (``model.joblib`` + ``meta.json``, with the embedder
config and the out-of-scope threshold chosen on training folds) and prints the
``shadowline shadow register`` command that makes it a shadow candidate; ``evaluate`` scores an
artifact on a held-out CSV or CLINC150 JSON file (see :mod:`agents.evaluation`).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)

TRAINABLE_STAGES = ("classify", "validate")


def _check_stage(stage: str) -> None:
    from shadowline.errors import ConfigError

    if stage not in TRAINABLE_STAGES:
        raise ConfigError(f"stage {stage!r}: only {', '.join(TRAINABLE_STAGES)} have trained text models")


def _metrics_table(title: str, metrics: dict) -> Table:
    from agents.evaluation import summary_rows

    console.print(title)
    table = Table("metric", "value")
    for name, value in summary_rows(metrics):
        table.add_row(name, value)
    return table


def train(
    stage: str = typer.Argument(..., help="classify or validate."),
    data: Path = typer.Option(..., "--data", help="Training data: CSV text,<label> or a CLINC150 JSON."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv or clinc (default: by file suffix)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Artifact directory (default .shadowline/models/STAGE/VERSION)."),
    version: Optional[str] = typer.Option(None, "--version", help="Artifact version (default: the model's content id)."),
    holdout: float = typer.Option(0.0, "--holdout", help="CSV: fraction held out (stratified) and scored; 0 = train on all."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and the cross-validation folds."),
    split: str = typer.Option("train", "--split", help="CLINC150: the split to train on (oos_<split> becomes class 'oos')."),
    model_kind: str = typer.Option("tfidf", "--model", help="Features: tfidf, embed (MiniLM) or hybrid (both)."),
    embedder: str = typer.Option("minilm", "--embedder", help="embed/hybrid: the sentence embedder (minilm, hashing)."),
    C: Optional[float] = typer.Option(None, "--C", help="Inverse regularisation strength (default: the kind's)."),
    rule: str = typer.Option("balanced", "--threshold-rule", help="OOS threshold on training folds: balanced, f1 or recall."),
    target_recall: float = typer.Option(0.9, "--target-recall", help="With --threshold-rule recall: the OOS recall to reach."),
) -> None:
    """Fit a text classifier (TF-IDF / embedding / hybrid + logistic regression); write a versioned artifact."""
    from agents.evaluation import choose_oos_threshold, detect_format, evaluate, load_clinc, load_eval_data, stratified_split
    from agents.textmodels import COMPONENT_NAMES, MODEL_KINDS, TextModel
    from shadowline.errors import ConfigError

    _check_stage(stage)
    if model_kind not in MODEL_KINDS:
        raise ConfigError(f"--model {model_kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    if rule not in ("balanced", "f1", "recall"):
        raise ConfigError(f"--threshold-rule {rule!r}: expected balanced, f1 or recall")
    kind = detect_format(data, fmt)
    if not data.is_file():
        raise ConfigError(f"{data}: no such file")
    heldout = None
    if kind == "clinc":
        train_data = load_clinc(data, split)
        try:
            heldout = load_clinc(data, "val") if split != "val" else None
        except ConfigError:
            heldout = None
    else:
        full = load_eval_data(data, "csv")
        train_data = full
        if holdout:
            train_data, heldout = stratified_split(full, holdout, seed)
    if stage == "validate" and "answerable" not in train_data.labels:
        raise ConfigError(f"{data}: the validate stage needs an 'answerable' label; got {sorted(set(train_data.labels))[:8]}")
    console.print(f"training on {len(train_data.texts)} rows, {len(set(train_data.labels))} labels ({escape(train_data.source)})")
    model = TextModel.fit(train_data, model=model_kind, C=C, seed=seed, embedder=embedder)
    choice = choose_oos_threshold(model, train_data, rule, target_recall)
    model.meta["oos_threshold"] = choice["threshold"]
    model.meta["oos_threshold_choice"] = choice
    model.meta["stage"] = stage
    if heldout is not None:
        scores = evaluate(model, heldout)
        model.meta["metrics"].update({f"heldout_{k}": v for k, v in scores.items() if isinstance(v, (int, float))})
        model.meta["heldout_source"] = heldout.source
        console.print(_metrics_table(f"held-out: {escape(heldout.source)}", scores))
    version = version or model.version
    model.meta["version"] = version
    target = out or Path(".shadowline") / "models" / stage / version
    model.save(target)
    cv = model.meta["metrics"]
    if cv.get("cv_folds"):
        console.print(f"cross-validated ({cv['cv_folds']} folds): accuracy {cv['cv_accuracy']:.4f}, "
                      f"macro-F1 {cv['cv_macro_f1']:.4f}; OOS threshold {choice['threshold']}")
    console.print(f"wrote {escape(str(target))} (train {model.meta['train_seconds']:.1f} s)")
    cfg = json.dumps({"model_dir": str(target.resolve())})
    print(f"register as a shadow candidate:\n  shadowline shadow register {stage}:{COMPONENT_NAMES[model_kind]}@{version} "
          f"--config {shlex.quote(cfg)}")


def evaluate_cmd(
    stage: str = typer.Argument(..., help="classify or validate."),
    model_dir: Path = typer.Option(..., "--model", help="Artifact directory written by `shadowline train`."),
    data: Path = typer.Option(..., "--data", help="Held-out data: CSV text,<label> or a CLINC150 JSON."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv or clinc (default: by file suffix)."),
    split: str = typer.Option("val", "--split", help="CLINC150: the split to evaluate (plus oos_<split>)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="OOS confidence threshold (default: the artifact's)."),
) -> None:
    """Score a model artifact on held-out data: accuracy, macro-F1, OOS recall/precision."""
    from agents.evaluation import evaluate, load_eval_data
    from agents.textmodels import TextModel
    from shadowline.errors import ComponentError, ConfigError

    _check_stage(stage)
    dataset = load_eval_data(data, fmt, split)
    try:
        model = TextModel.load(model_dir)
    except ComponentError as exc:
        raise ConfigError(str(exc)) from exc
    if model.meta.get("stage") not in (None, stage):
        raise ConfigError(f"{model_dir}: trained for stage {model.meta['stage']!r}, not {stage!r}")
    metrics = evaluate(model, dataset, threshold)
    console.print(_metrics_table(f"{stage} model {escape(str(model_dir))} on {escape(dataset.source)}", metrics))
    if metrics.get("labels_unknown_to_model"):
        console.print(f"[yellow]labels the model never saw:[/yellow] {escape(', '.join(metrics['labels_unknown_to_model']))}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate_cmd)
