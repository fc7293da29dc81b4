"""`shadowline weak-label`: labeling functions + label model -> a training CSV for `shadowline train`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)


def weak_label_cmd(
    lfs: Path = typer.Option(..., "--lfs", help="LF file (YAML): keywords, regex and similarity LFs."),
    data: Path = typer.Option(..., "--data", help="Unlabelled conversations: CSV with a 'text' column."),
    out: Path = typer.Option(..., "--out", help="Where to write text,label,confidence (rows with a label only)."),
    seeds: Optional[Path] = typer.Option(None, "--seeds", help="text,label CSV of seed examples for similarity LFs."),
    gold: Optional[str] = typer.Option(None, "--gold-column", help="A column of --data with true labels: "
                                                                    "reports LF and label accuracy (not used to label)."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Also write the LF statistics as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed for breaking ties between equally likely labels."),
) -> None:
    """Label unlabelled texts with labeling functions combined by a label model (EM, Dawid-Skene)."""
    from agents.weak.labels import read_texts, weak_label
    from agents.weak.lfs import load_lfs
    from shadowline.errors import ConfigError

    lfset = load_lfs(lfs, seeds_csv=seeds)
    texts = read_texts(data)
    gold_labels = read_texts(data, gold) if gold else None
    if gold_labels is not None and len(gold_labels) != len(texts):
        raise ConfigError(f"{data}: column {gold!r} has empty cells; every row needs a gold label")
    result = weak_label(lfset, texts, gold=gold_labels, seed=seed)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.to_csv(), encoding="utf-8")
        if stats:
            stats.write_text(json.dumps({"summary": result.summary, "lfs": result.lf_stats}, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write output: {exc}") from exc
    s = result.summary
    console.print(f"{len(result.lf_stats)} LFs on {s['rows']} rows: coverage {s['coverage']:.1%}, overlap "
                  f"{s['overlap']:.1%}, conflict {s['conflict']:.1%}; label model "
                  f"{'converged' if s['label_model']['converged'] else 'stopped'} after {s['label_model']['iterations']} iterations")
    table = Table("lf", "polarity", "coverage", "overlaps", "conflicts", "est. acc", *(["acc"] if gold else []))
    shown = sorted(result.lf_stats, key=lambda r: -r["coverage"])
    for r in shown[:25]:
        cells = [escape(r["lf"]), escape(",".join(r["polarity"])), f"{r['coverage']:.3f}", f"{r['overlaps']:.3f}",
                 f"{r['conflicts']:.3f}", "-" if r["estimated_accuracy"] is None else f"{r['estimated_accuracy']:.3f}"]
        if gold:
            cells.append("-" if r["accuracy"] is None else f"{r['accuracy']:.3f}")
        table.add_row(*cells)
    console.print(table)
    if len(shown) > 25:
        console.print(f"... {len(shown) - 25} more LFs" + (f" in {escape(str(stats))}" if stats else " (--stats FILE for all)"))
    if gold:
        console.print(f"accuracy of the labels on rows with a label: label model {s['label_model_accuracy']}, "
                      f"majority vote {s['majority_vote_accuracy']}")
    console.print(f"wrote {s['labelled']} labelled rows to {escape(str(out))}")


def register(app: typer.Typer) -> None:
    app.command("weak-label")(weak_label_cmd)
