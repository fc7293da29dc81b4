"""Guardrail calibration on DSTC11 Track 5: catch rate on ungrounded answers vs false escalations.

Negatives (grounded): each knowledge-seeking turn's human reference response, checked against its
own gold snippets as the retrieved hits. Positives (ungrounded): the same response checked against
the gold snippets of another instance about a different entity of the same domain (a hotel answer
against another hotel's reviews), which is what a retrieval that picked the wrong entity hands the
guardrail. Same texts on both sides, so only the evidence differs.

Human responses usually end with an offer ("Would you like to book it?"), which no snippet grounds.
In the pipeline the tone stage adds such lines and marks them ``Tone.added``, which the guardrail
skips; so each pair is also checked with the response's trailing questions marked that way
(``closing_question_as_courtesy``), next to the response checked as is.

The guardrail runs through its public API (``process``) at the production default threshold; its
``support`` (lowest window cosine) is independent of the threshold, so one run gives the whole
sweep: an answer escalates at threshold t when support < t. Thresholds for a false-escalation
budget are chosen on one half of the dialogues and measured on the other (and vice versa), so the
reported catch rates are not tuned on the turns they are measured on.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from agents.guardrail import DEFAULT_THRESHOLD, SlidingWindowGuardrail
from agents.records import ConversationEvent, Generation, Hit, Retrieval, Tone, Turn
from kb_index.chunker import Chunk, split_sentences
from kb_index.dstc11 import Dialogue
from kb_index.embedder import Embedder

__all__ = ["BUDGETS", "VARIANTS", "closing_questions", "guardrail_calibration", "pair_other_entity",
           "threshold_for_budget"]

BUDGETS = (0.05, 0.10, 0.20)
VARIANTS = ("as_is", "closing_question_as_courtesy")
GRID = tuple(round(float(t), 2) for t in np.arange(0.0, 1.0001, 0.02))  # hashing lives at 0.1-0.3


def pair_other_entity(seeking: Sequence[Dialogue], seed: int) -> list[int | None]:
    """For each turn, a random other turn of the same domain whose gold entities share none with it."""
    rng = np.random.default_rng(seed)
    domain = [d.knowledge[0].domain for d in seeking]
    ents = [set(d.entities) for d in seeking]
    out: list[int | None] = []
    for i in range(len(seeking)):
        same = [j for j in range(len(seeking)) if domain[j] == domain[i] and not ents[j] & ents[i]]
        pool = same or [j for j in range(len(seeking)) if not ents[j] & ents[i]]
        out.append(int(rng.choice(pool)) if pool else None)
    return out


def closing_questions(text: str) -> tuple[str, ...]:
    """The response's trailing sentences that end with "?" (an offer to help, a booking question)."""
    sentences = split_sentences(text)
    n = len(sentences)
    while n and sentences[n - 1].rstrip().endswith("?"):
        n -= 1
    return tuple(sentences[n:])


def _turn(d: Dialogue, hits: tuple[Hit, ...], courtesy: tuple[str, ...] = ()) -> Turn:
    event = ConversationEvent(f"dstc11-{d.instance}", d.dialogue_id, "customer", d.last_user, 0, locale="en")
    turn = replace(Turn.start(event, 0), retrieve=Retrieval(d.last_user, hits, "dstc11-gold"),
                   generate=Generation(d.response, tuple(h.article_id for h in hits), "human-reference"))
    return replace(turn, tone=Tone(d.response, (), courtesy)) if courtesy else turn


def _hits(d: Dialogue, chunks: Mapping[str, Chunk]) -> tuple[Hit, ...]:
    return tuple(Hit(c.chunk_id, c.article_id, c.title, c.text, 1.0)
                 for c in (chunks[k.article_id] for k in dict.fromkeys(d.knowledge)))


def threshold_for_budget(negatives: np.ndarray, budget: float) -> float:
    """The highest threshold escalating at most ``budget`` of the grounded answers (support < t escalates)."""
    allowed = int(np.floor(budget * len(negatives) + 1e-9))
    ordered = np.sort(negatives)
    return float(ordered[allowed]) if allowed < len(ordered) else 1.0 + 1e-6


def _rates(pos: np.ndarray, neg: np.ndarray, t: float) -> dict[str, float]:
    return {"catch_rate": round(float(np.mean(pos < t)), 4), "false_escalation_rate": round(float(np.mean(neg < t)), 4)}


def _sweep(pos: np.ndarray, neg: np.ndarray, halves: np.ndarray) -> dict[str, Any]:
    """``pos[i]`` and ``neg[i]`` are one response with other vs own evidence; ``halves[i]`` its dialogue's half."""
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    out: dict[str, Any] = {
        "auc": round(float(roc_auc_score(labels, -np.r_[pos, neg])), 4),
        "support_median": {"ungrounded": round(float(np.median(pos)), 4), "grounded": round(float(np.median(neg)), 4)},
        "roc": [{"threshold": t, **_rates(pos, neg, t)} for t in GRID],
        "budgets": {},
    }
    for budget in BUDGETS:
        t = threshold_for_budget(neg, budget)
        held = []
        for h in (0, 1):  # choose on half h, measure on the other half
            th = threshold_for_budget(neg[halves == h], budget)
            held.append({"threshold": round(th, 4), **_rates(pos[halves != h], neg[halves != h], th)})
        out["budgets"][f"fpr<={budget:.2f}"] = {
            "threshold_all": round(t, 4), **_rates(pos, neg, t),
            "held_out_halves": held,
            "held_out_mean": {k: round(float(np.mean([x[k] for x in held])), 4)
                              for k in ("catch_rate", "false_escalation_rate")},
        }
    return out


def _run(guard: SlidingWindowGuardrail, seeking: Sequence[Dialogue], rows: list[int], partner: list[int | None],
         chunks: Mapping[str, Chunk], courtesy: bool) -> dict[str, list[tuple[bool, float, str]]]:
    """(escalated, support, failed check) per response, with its own and with the other entity's evidence."""
    results: dict[str, list[tuple[bool, float, str]]] = {"grounded": [], "ungrounded": []}
    for i in rows:
        d = seeking[i]
        added = closing_questions(d.response) if courtesy else ()
        for side, evidence in (("grounded", d), ("ungrounded", seeking[partner[i]])):
            out = guard.process(_turn(d, _hits(evidence, chunks), added))
            g = out.output
            # No Guardrail output means nothing was checked: count it as escalated at every threshold.
            results[side].append((out.rejected, g.support if g else 0.0, str(getattr(g, "check", "") or "")))
    return results


def guardrail_calibration(seeking: Sequence[Dialogue], chunks: Mapping[str, Chunk], embedder: Embedder,
                          seed: int = 0) -> dict[str, Any]:
    started = time.perf_counter()
    guard = SlidingWindowGuardrail(embedder, threshold=DEFAULT_THRESHOLD)
    partner = pair_other_entity(seeking, seed)
    rows = [i for i, j in enumerate(partner) if j is not None and seeking[i].response.strip()]
    # Halves by dialogue: a conversation's turns never sit on both sides of the threshold choice.
    half = np.asarray([int(seeking[i].dialogue_id[-1], 16) % 2 for i in rows])
    out: dict[str, Any] = {
        "pairs": len(rows),
        "paired_within_domain": sum(seeking[i].knowledge[0].domain == seeking[partner[i]].knowledge[0].domain
                                    for i in rows),
        "responses_with_closing_question": sum(bool(closing_questions(seeking[i].response)) for i in rows),
        "variants": {},
    }
    for variant in VARIANTS:
        results = _run(guard, seeking, rows, partner, chunks, variant != "as_is")
        pos = np.asarray([s for _, s, _ in results["ungrounded"]])
        neg = np.asarray([s for _, s, _ in results["grounded"]])
        out["variants"][variant] = {
            "at_default_threshold": {
                "threshold": DEFAULT_THRESHOLD,
                "catch_rate": round(float(np.mean([r for r, _, _ in results["ungrounded"]])), 4),
                "false_escalation_rate": round(float(np.mean([r for r, _, _ in results["grounded"]])), 4),
                "grounding_only": _rates(pos, neg, DEFAULT_THRESHOLD),
                "escalations_by_check": {side: _count_checks(v) for side, v in results.items()},
            },
            "sweep": _sweep(pos, neg, half),
        }
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def _count_checks(results: list[tuple[bool, float, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rejected, _, check in results:
        if rejected:
            out[check or "unnamed"] = out.get(check or "unnamed", 0) + 1
    return dict(sorted(out.items()))
