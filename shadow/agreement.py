"""Does a candidate agree with production on one event? Labels compare exactly; text semantically.

Statuses count too: production answering where the candidate rejects is a disagreement whatever the
outputs say. A side that errored has no opinion: the comparison records the error, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from agents.records import StageRun

LABEL_OF: dict[str, Callable[[Any], Any]] = {
    "validate": lambda o: o.label,
    "classify": lambda o: o.topic,
    "retrieve": lambda o: o.hits[0].article_id if o.hits else None,
    "guardrail": lambda o: o.verdict,
}
TEXT_OF: dict[str, Callable[[Any], str]] = {
    "context": lambda o: o.summary,
    "generate": lambda o: o.text,
    "tone": lambda o: o.text,
}
TEXT_STAGES = frozenset(TEXT_OF)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "label" or "text"
    agree: bool | None  # None: one side errored
    similarity: float | None


class TextSimilarity:
    """Cosine similarity of sentence embeddings (the KB embedder), cached for repeated texts."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def __call__(self, a: str, b: str) -> float:
        if not a.strip() or not b.strip():
            return 1.0 if a.strip() == b.strip() else 0.0
        va, vb = self.embedder.embed([a, b])
        return float(np.clip(np.dot(va, vb), 0.0, 1.0))


def compare(stage: str, prod: tuple[StageRun, Any], cand: tuple[StageRun, Any], similarity: Callable[[str, str], float], threshold: float) -> Verdict:
    (prun, pout), (crun, cout) = prod, cand
    kind = "text" if stage in TEXT_STAGES else "label"
    if prun.status == "error" or crun.status == "error":
        return Verdict(kind, None, None)
    if pout is None or cout is None:
        same = pout is None and cout is None and prun.status == crun.status
        return Verdict(kind, same, 1.0 if same else 0.0)
    if kind == "label":
        sim = _label_similarity(stage, pout, cout)
        agree = LABEL_OF[stage](pout) == LABEL_OF[stage](cout)
    else:
        sim = similarity(TEXT_OF[stage](pout), TEXT_OF[stage](cout))
        agree = sim >= threshold
    return Verdict(kind, agree and prun.status == crun.status, round(sim, 4))


def _label_similarity(stage: str, a: Any, b: Any) -> float:
    if stage == "retrieve":  # overlap of the cited articles says more than top-1 alone
        sa, sb = {h.article_id for h in a.hits}, {h.article_id for h in b.hits}
        return len(sa & sb) / len(sa | sb) if sa | sb else 1.0
    return 1.0 if LABEL_OF[stage](a) == LABEL_OF[stage](b) else 0.0


def output_json(stage: str, output: Any) -> dict[str, Any] | None:
    """The part of a stage output worth showing side by side (hit texts are long KB content)."""
    if output is None:
        return None
    record = output.to_record()
    if stage == "retrieve":
        record["hits"] = [{k: h[k] for k in ("article_id", "chunk_id", "score")} for h in record["hits"]]
    if stage == "context":
        record.pop("history", None)
    return record
