"""Guardrail stage: is every claim in the outgoing answer supported by the retrieved KB chunks?

Tier 1 is cheap and deterministic: sliding windows of answer sentences are compared by embedding
cosine with windows of KB sentences. Windows, not single sentences, because a claim often spans two
sentences ("Refunds take 5-7 days. That starts when we receive the parcel."). Sentences the tone
stage added are skipped (they claim nothing). Numbers are checked literally, since a lexical
embedding cannot tell "5-7 days" from "2 days". Only when tier 1 flags something and an evaluator is
configured does tier 2 ask an LLM, which keeps LLM cost proportional to doubt.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import ClassVar, Sequence

import numpy as np

from agents.base import ComponentSpec, Resources, register
from agents.generate import hit_sentences
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Guardrail, Hit, Outcome, Turn, ok, reject
from agents.retrieve import shared_embedder, typed_options
from agents.tone import soften
from kb_index.chunker import chunk_sentences, split_sentences
from kb_index.embedder import Embedder
from shadowline.errors import ConfigError, LLMError

__all__ = ["SlidingWindowGuardrail", "DEFAULT_THRESHOLD"]

# Tuned on the demo KB (32 questions): extractive answers after tone rules score >= 0.87 per window;
# one invented sentence beside a grounded one scores 0.71-0.80; sentences of an unrelated article < 0.3.
DEFAULT_THRESHOLD = 0.82
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _norm(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


def _clauses(sentence: str) -> list[str]:
    """Semicolons separate list items the extractive answer merged ("Lead: item one; item two.")."""
    return [c.strip() for c in sentence.split("; ")]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _windows(sentences: Sequence[str], size: int) -> list[tuple[int, int]]:
    """(start, end) of each window of ``size`` sentences, stride 1; shorter texts are one window."""
    if len(sentences) <= size:
        return [(0, len(sentences))] if sentences else []
    return [(i, i + size) for i in range(len(sentences) - size + 1)]


class _VectorCache:
    """Embeddings of KB sentences by text: the same chunks come back turn after turn."""

    def __init__(self, embedder: Embedder, size: int = 20_000) -> None:
        self.embedder, self.size = embedder, size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._data]
        if missing:
            for t, v in zip(missing, self.embedder.embed(missing)):
                self._data[t] = v
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._data[t] for t in texts])


class SlidingWindowGuardrail:
    """Tier 1: window cosine against KB windows; tier 2 (when ``chat`` is given): an LLM judge.

    Besides contiguous KB windows, each answer window is also compared with the window made of its
    sentences' closest KB sentences: an extractive answer legitimately stitches sentences from two
    articles, and no contiguous KB window holds that pair.
    """

    stage: ClassVar[str] = "guardrail"

    def __init__(self, embedder: Embedder, name: str = "sliding-window", version: str = "1", *, window: int = 2,
                 threshold: float = DEFAULT_THRESHOLD, check_numbers: bool = True, chat: ChatModel | None = None,
                 max_tokens: int = 300) -> None:
        if window < 1:
            raise ConfigError(f"guardrail window must be >= 1, got {window}")
        self.embedder = embedder
        self.name, self.version = name, version
        self.window, self.threshold, self.check_numbers = window, threshold, check_numbers
        self.chat, self.max_tokens = chat, max_tokens
        self._kb_vectors = _VectorCache(embedder)

    def process(self, turn: Turn) -> Outcome[Guardrail]:
        text = turn.tone.text if turn.tone else (turn.generate.text if turn.generate else "")
        if not text.strip():
            return reject("no answer to check")
        added = {_norm(s) for a in (turn.tone.added if turn.tone else ()) for s in [a, *split_sentences(a)]}
        claims = [c for s in split_sentences(text) if _norm(s) not in added for c in _clauses(s) if _norm(c)]
        if not claims:
            return ok(Guardrail("pass", 1.0, (), 1, "only courtesy sentences, nothing to ground"))
        hits = turn.retrieve.hits if turn.retrieve else ()
        spans = _windows(claims, self.window)
        scores, notes = self._score(claims, spans, hits)
        windows = [" ".join(claims[a:b]) for a, b in spans]
        unsupported = tuple(w for w, s in zip(windows, scores) if s < self.threshold)
        support = round(float(min(scores)), 4)
        if not unsupported:
            return ok(Guardrail("pass", support, (), 1))
        if self.chat is not None:
            return self._tier2(self.chat, text, hits, unsupported, support)
        rationale = f"{len(unsupported)} of {len(windows)} windows below {self.threshold:.2f}" + \
            (f"; {notes}" if notes else "")
        return reject(f"ungrounded: {len(unsupported)} of {len(windows)} windows below threshold",
                      Guardrail("fail", support, unsupported, 1, rationale))

    def _score(self, claims: list[str], spans: list[tuple[int, int]], hits: Sequence[Hit]) -> tuple[list[float], str]:
        """Best cosine per answer window; windows citing numbers absent from the KB score 0.

        A window's vector is the normalised sum of its sentences' unit vectors, so every sentence
        weighs the same: a short invented claim next to a long grounded one still halves the match.
        """
        per_hit = [hit_sentences(h) for h in hits]
        bare = [s.text for h in hits for s in chunk_sentences(h.text, h.title) if s.lead]  # items without lead
        whole = [s for sents in per_hit for s in sents] + bare
        # Answer claims are split at "; ", so the KB's clauses are candidates too; and the KB as the
        # tone rules would phrase it ("we aren't able to"), so a politeness edit is not a new claim.
        whole += [c for s in whole if "; " in s for c in _clauses(s)]
        kb_sents = list(dict.fromkeys(whole + [soften(s)[0] for s in whole]))
        if not kb_sents:
            return [0.0] * len(spans), "no KB text retrieved"
        kb_vecs = self._kb_vectors.embed(kb_sents)
        row = {s: i for i, s in enumerate(kb_sents)}
        kb_windows = np.stack([_unit(kb_vecs[[row[s] for s in sents[a:b]]].sum(axis=0))
                               for sents in per_hit for size in range(1, self.window + 1)
                               for a, b in _windows(sents, size)] or [np.zeros(self.embedder.dim, np.float32)])
        claim_vecs = self.embedder.embed(claims)
        nearest = (claim_vecs @ kb_vecs.T).argmax(axis=1)
        ans = np.stack([_unit(claim_vecs[a:b].sum(axis=0)) for a, b in spans])
        aligned = np.stack([_unit(kb_vecs[nearest[a:b]].sum(axis=0)) for a, b in spans])
        scores = np.maximum((ans @ kb_windows.T).max(axis=1), np.einsum("ij,ij->i", ans, aligned)).tolist()
        answer_texts = [" ".join(claims[a:b]) for a, b in spans]
        notes = ""
        if self.check_numbers:
            known = set(_NUMBER.findall(" ".join(h.text for h in hits)))
            strangers: list[str] = []
            for i, t in enumerate(answer_texts):
                missing = [n for n in _NUMBER.findall(t) if n not in known]
                if missing:
                    scores[i] = 0.0
                    strangers.extend(m for m in missing if m not in strangers)
            notes = f"numbers not in the KB: {', '.join(strangers)}" if strangers else ""
        return [float(s) for s in scores], notes

    def _tier2(self, chat: ChatModel, text: str, hits: Sequence[Hit], unsupported: tuple[str, ...],
               support: float) -> Outcome[Guardrail]:
        excerpts = "\n\n".join(f"[{n}] {h.title}\n{' '.join(hit_sentences(h))}" for n, h in enumerate(hits, 1))
        flagged = "\n".join(f"- {w}" for w in unsupported)
        user = (f"Knowledge-base excerpts:\n{excerpts or '(none)'}\n\nAnswer to check:\n{text}\n\n"
                f"Passages a similarity check could not match to the excerpts:\n{flagged}")
        data = parse_json_reply(chat.complete(SYSTEM_JUDGE, user, max_tokens=self.max_tokens, json_mode=True))
        verdict = str(data.get("verdict", "")).strip().lower()
        if verdict not in ("pass", "fail"):
            raise LLMError(f"{chat.model}: evaluator verdict must be pass or fail, got {data.get('verdict')!r}")
        flags = ", ".join(f"{k}={data[k]}" for k in ("grounded", "coherent", "compliant") if k in data)
        rationale = str(data.get("rationale", "")).strip() + (f" ({flags})" if flags else "")
        result = Guardrail(verdict, support, unsupported, 2, rationale)
        if verdict == "fail":
            return reject(f"tier-2 evaluator failed the answer: {data.get('rationale', '')}".strip(), result)
        return ok(result)


SYSTEM_JUDGE = (
    "You check customer-support answers for Parcelpay before they are sent. Judge the answer against the "
    "knowledge-base excerpts only. grounded: every factual claim (amounts, dates, policies, promises) is "
    "stated in the excerpts; greetings, empathy and closing lines need no support. coherent: it reads as one "
    "sensible reply. compliant: it promises nothing the excerpts do not allow. Reply with JSON: "
    '{"grounded": true|false, "coherent": true|false, "compliant": true|false, "verdict": "pass"|"fail", '
    '"rationale": "<one sentence>"}'
)


@register("guardrail", "sliding-window")
def _build_sliding_window(spec: ComponentSpec, resources: Resources) -> SlidingWindowGuardrail:
    """config: window (2), threshold, check_numbers (true), evaluator ("none" | "openai"), model, max_tokens."""
    cfg = spec.config
    evaluator = str(cfg.get("evaluator") or "none")
    if evaluator not in ("none", "openai"):
        raise ConfigError(f"guardrail evaluator must be 'none' or 'openai', got {evaluator!r}")
    opts = typed_options(cfg, {"window": 2, "threshold": DEFAULT_THRESHOLD, "check_numbers": True, "max_tokens": 300})
    chat = chat_model(resources, cfg) if evaluator == "openai" else None
    return SlidingWindowGuardrail(shared_embedder(resources, cfg), spec.name, spec.version, chat=chat, **opts)
