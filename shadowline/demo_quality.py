"""The demo's quality and knowledge-base chapters: the judge's sample, the review queue, a live KB edit.

Kept out of demo_cmd so that module stays the pipeline story; these read what the running workers
produced (quality.judgments, the Redis review queue) and change the KB the way an operator would
(`shadowline kb publish`), then show a fresh answer built from the new text.
"""

from __future__ import annotations

import dataclasses
import time
from statistics import mean
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

from agents.judge import sampled

JUDGE_RATE = 0.5
REVIEW_RATE = 0.25
JUDGE_ARGS = ["judge", "run", "--rate", str(JUDGE_RATE), "--review-rate", str(REVIEW_RATE)]
KB_EDIT_ARTICLE = "kb-refunds-001"
KB_EDIT = ("**5-10 business days**", "**3-5 business days**")  # what the edited card-refund lines say
KB_PROBE = "How many business days until a card refund shows up?"  # answered from the edited lines


def expected_judgments(suggestion_event_ids: list[str]) -> int:
    """How many suggestions the judge worker samples (the same deterministic hash it uses)."""
    return sum(1 for e in suggestion_event_ids if sampled(e, JUDGE_RATE))


def judge_story(console: Console, s: Any, codec: Any, topics: Any, start: dict, expected: int, timeout_s: float,
                alive: Callable[[], None]) -> None:
    """Wait for the judge's Judgment records, then print per-aspect means and the review queue's state."""
    from shadow.review import ReviewQueue
    from streams.reader import read

    judgments: dict[str, dict] = {}
    for _, rec in read(s.kafka_bootstrap, start, codec, topics.record_of, stop=lambda: len(judgments) >= expected,
                       timeout_s=timeout_s):
        judgments[rec["event_id"]] = rec
    alive()
    console.print(f"{len(judgments)} of the {expected} sampled suggestions judged on {topics.judgments} "
                  f"(rate {JUDGE_RATE:.0%}, judge {next(iter(judgments.values()))['judge'] if judgments else '-'})")
    if not judgments:
        return
    aspects = sorted({a for j in judgments.values() for a in j["scores"]})
    console.print("mean score per aspect: " + ", ".join(
        f"{a} {mean(j['scores'][a] for j in judgments.values() if a in j['scores']):.2f}" for a in aspects))
    worst = min(judgments.values(), key=lambda j: min(j["scores"].values()))
    console.print(f"lowest-scored: {worst['event_id']} {escape(str(worst['scores']))}: {escape(worst['rationale'][:160])}")
    queue = ReviewQueue(s.redis_url)
    console.print(f"human review queue: {queue.pending()} pending  (label them with `shadowline review`; "
                  "`shadowline review status` shows judge-human kappa per aspect)")


def kb_story(console: Console, s: Any, probe: Callable[[str], dict]) -> None:
    """Edit one article on kb.articles and show the next answer using the new text (no rebuild, no restart)."""
    from kb_index.articles import load_articles
    from kb_index.live import ArticleChange
    from shadowline.cli.kb_cmd import publish_changes
    from streams.messages import now_ms

    article = next((a for a in load_articles(s.kb_dir) if a.article_id == KB_EDIT_ARTICLE), None)
    if article is None or KB_EDIT[0] not in article.body:
        console.print(f"[yellow]{KB_EDIT_ARTICLE} is not the sample article this step edits; skipped[/yellow]")
        return
    console.print(f"customer: {KB_PROBE}")
    before = probe(KB_PROBE)
    console.print(f"before: {escape(_answer(before))}")
    edited = dataclasses.replace(article, body=article.body.replace(KB_EDIT[0], KB_EDIT[1]))
    started = time.perf_counter()
    topic = publish_changes([ArticleChange.upsert(edited, now_ms())])
    console.print(f"$ shadowline kb publish   ({KB_EDIT_ARTICLE}: card refunds now {KB_EDIT[1].strip('*')}; on {topic})")
    after = probe(KB_PROBE)
    took = time.perf_counter() - started
    served = after["turn"]["retrieve"]["index_version"] if after["turn"].get("retrieve") else "-"
    console.print(f"after:  {escape(_answer(after))}")
    console.print(f"served by index {served}, {took:.1f}s from publish to answer (probe included)")
    # kb.articles is compacted and followed from the start: put the sample text back so the next demo run
    # (and its "before") starts from the KB on disk.
    publish_changes([ArticleChange.upsert(article, now_ms())])
    console.print(f"{KB_EDIT_ARTICLE} restored on {topic}")


def _answer(rec: dict) -> str:
    if "text" in rec:
        return rec["text"]
    return f"escalated at {rec['stage']}: {rec['reason']}"
