"""`shadowline review`: label judged suggestions, and see how well the judge agrees with people.

`shadowline review` alone is an interactive session (one aspect at a time: 1 good, 0 bad, s skip,
q quit); `review next`, `review label ITEM --retrieval 1 ...` and `review status` do the same from
scripts. See docs/quality.md.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
review = typer.Typer(help="Human review of judged suggestions; judge calibration (Cohen's kappa).",
                     invoke_without_command=True)


def _queue() -> Any:
    from shadow.review import ReviewQueue
    from shadowline.config import get_settings

    return ReviewQueue(get_settings().redis_url)


def _reviewer(name: Optional[str]) -> str:
    return name if name is not None else os.environ.get("USER", "")


def show_item(item: Any) -> None:
    from agents.judge import ASPECTS

    console.print(f"[bold]{escape(item.item_id)}[/bold]  conversation {escape(item.conversation_id)}  judge {escape(item.judge)}")
    console.print(f"[cyan]customer:[/cyan] {escape(item.question)}")
    if item.summary and item.summary != item.question:
        console.print(f"[cyan]summary:[/cyan]  {escape(item.summary)}")
    console.print(f"[cyan]answer:[/cyan]   {escape(item.answer)}")
    for n, h in enumerate(item.hits, 1):
        console.print(f"  [{n}] {escape(h['title'])} ({escape(h['article_id'])}, score {h['score']:.2f})")
    scores = "  ".join(f"{a} {item.scores[a]:.2f}" if a in item.scores else f"{a} -" for a in ASPECTS)
    console.print(f"[dim]judge: {scores}[/dim]")
    if item.rationale:
        console.print(f"[dim]{escape(item.rationale)}[/dim]")


@review.callback()
def interactive(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, help="Stop after this many items."),
    reviewer: Optional[str] = typer.Option(None, help="Your name, stored with the labels; default $USER."),
) -> None:
    """Label the oldest pending items interactively (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from agents.judge import ASPECTS

    queue = _queue()
    done = 0
    while done < limit:
        items = queue.next(1)
        if not items:
            console.print("no items waiting for review" if done == 0 else f"queue empty; labelled {done}")
            return
        item = items[0]
        show_item(item)
        labels: dict[str, int] = {}
        for aspect in ASPECTS:
            answer = typer.prompt(f"{aspect}: good 1 / bad 0 / skip s / quit q", default="s").strip().lower()
            if answer == "q":
                console.print(f"stopped; labelled {done}")
                return
            if answer in ("0", "1"):
                labels[aspect] = int(answer)
        if labels:
            queue.label(item.item_id, labels, _reviewer(reviewer))
            done += 1
        else:
            console.print("nothing labelled; the item stays in the queue")
            return
    console.print(f"labelled {done}")


@review.command("next")
def next_items(
    n: int = typer.Option(1, "-n", min=1, help="How many items."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the oldest items waiting for review (nothing is taken off the queue)."""
    from dataclasses import asdict

    items = _queue().next(n)
    if as_json:
        console.print_json(json.dumps([asdict(i) for i in items]))
        return
    if not items:
        console.print("no items waiting for review")
    for item in items:
        show_item(item)


@review.command("label")
def label(
    item_id: str = typer.Argument(..., help="The item id `review next` shows (rev-...)."),
    retrieval: Optional[int] = typer.Option(None, min=0, max=1, help="1 good, 0 bad; leave out to skip."),
    accuracy: Optional[int] = typer.Option(None, min=0, max=1),
    language: Optional[int] = typer.Option(None, min=0, max=1),
    coherence: Optional[int] = typer.Option(None, min=0, max=1),
    relevance: Optional[int] = typer.Option(None, min=0, max=1),
    reviewer: Optional[str] = typer.Option(None, help="Your name, stored with the labels; default $USER."),
    note: str = typer.Option("", help="Free text kept with the labels."),
) -> None:
    """Record labels for one item (a second call replaces them)."""
    given = {"retrieval": retrieval, "accuracy": accuracy, "language": language, "coherence": coherence,
             "relevance": relevance}
    record = _queue().label(item_id, {a: v for a, v in given.items() if v is not None}, _reviewer(reviewer), note)
    console.print(f"labelled {record.item_id}: " + ", ".join(f"{a}={v}" for a, v in record.labels.items()))


def _num(x: Optional[float], fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


@review.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Pending items, and per judge and aspect: n, raw agreement and Cohen's kappa with the human labels."""
    from dataclasses import asdict

    from shadow.calibration import JUDGE_POSITIVE

    queue = _queue()
    rows, pending = queue.calibration(), queue.pending()
    if as_json:
        console.print_json(json.dumps({"pending": pending, "threshold": JUDGE_POSITIVE, "aspects": [asdict(r) for r in rows]}))
        return
    console.print(f"{pending} item(s) waiting; judge scores >= {JUDGE_POSITIVE} count as good")
    if not rows:
        console.print("no labels yet")
        return
    table = Table("judge", "aspect", "n", "agreement", "kappa", "human good")
    for r in rows:
        table.add_row(r.judge, r.aspect, str(r.n), _num(r.agreement, ".0%"), _num(r.kappa, ".2f"), _num(r.human_positive, ".0%"))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(review, name="review")
