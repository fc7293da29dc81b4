"""Guardrail stage: may this answer go to the customer? Grounded in the KB, compliant, in their language.

Tier 1 is cheap and deterministic. Language: the answer must be in the customer's language
(agents/language.py). Compliance: named rules for what a reply must never say (agents/compliance.py).
Grounding: sliding windows of answer sentences are compared by embedding cosine with windows of KB
sentences. Windows, not single sentences, because a claim often spans two sentences ("Refunds take
5-7 days. That starts when we receive the parcel."). Sentences the tone stage added are skipped
(they claim nothing). Numbers are checked literally, since a lexical embedding cannot tell "5-7 days"
from "2 days". Only when tier 1 has doubts and an evaluator is configured does tier 2 ask an LLM,
which keeps LLM cost proportional to doubt.

A failed answer's ``Guardrail.check`` names the check that failed it ("language", "grounding",
"compliance:<rule>", "llm:<aspects>") so analysts can group escalations by cause.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from agents.base import ComponentSpec, Resources, register
from agents.compliance import SEVERITIES, ComplianceRules
from agents.conversation import conversation_text, excerpts_text
from agents.generate import hit_sentences
from agents.language import LanguageDetector, customer_language
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Guardrail, Hit, Outcome, Turn, ok, reject
from agents.retrieve import shared_embedder, typed_options
from agents.tone import soften
from kb_index.chunker import chunk_sentences, split_sentences
from kb_index.embedder import Embedder
from shadowline.errors import ConfigError, LLMError

__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_THRESHOLDS", "Finding", "SlidingWindowGuardrail", "threshold_for"]

# Tuned on the demo KB (32 questions) with the hashing embedder: extractive answers after tone rules
# score >= 0.87 per window; one invented sentence beside a grounded one scores 0.71-0.80; sentences of
# an unrelated article < 0.3.
DEFAULT_THRESHOLD = 0.82
# Cosines are not comparable across embedders, so the threshold is calibrated per embedder (keyed by
# ``Embedder.name``). An embedder missing here has no calibrated value: the guardrail then refuses to
# start without an explicit ``threshold`` instead of silently using another embedder's number. Whoever
# measures one (as above) adds it here.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "hashing-v1": DEFAULT_THRESHOLD,
    # MiniLM, from the DSTC11 benchmark (docs/dstc11.md): human references that paraphrase several KB
    # snippets against their own snippets vs another entity's; 0.43 keeps false escalations near 10% and
    # catches ~71% of wrong-entity answers. Extractive answers copy KB text and score near 1.0.
    "minilm": 0.43,
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def threshold_for(embedder: Embedder, configured: float | None = None) -> float:
    """The configured threshold, else the one calibrated for this embedder; ConfigError if neither."""
    if configured is not None:
        if not 0.0 < configured <= 1.0:
            raise ConfigError(f"guardrail threshold must be within (0, 1], got {configured}")
        return float(configured)
    if embedder.name not in DEFAULT_THRESHOLDS:
        known = ", ".join(sorted(DEFAULT_THRESHOLDS))
        raise ConfigError(f"guardrail: no calibrated threshold for embedder {embedder.name!r} (calibrated: "
                          f"{known}); set 'threshold' in the guardrail config")
    return DEFAULT_THRESHOLDS[embedder.name]


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


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check: ``check`` is what analysts group by, ``reason`` what the escalation says."""

    check: str  # "language", "grounding", "compliance:<rule>"
    reason: str
    detail: str = ""


class SlidingWindowGuardrail:
    """Tier 1: language, compliance rules and window cosine against KB windows; tier 2 (with ``chat``): an LLM.

    Besides contiguous KB windows, each answer window is also compared with the window made of its
    sentences' closest KB sentences: an extractive answer legitimately stitches sentences from two
    articles, and no contiguous KB window holds that pair.

    A language mismatch or a ``block`` compliance rule fails the answer at once: no evaluator could
    make it sendable. Ungrounded windows and ``review`` rules are doubts: tier 2 decides them when
    configured, otherwise the answer goes to a human.
    """

    stage: ClassVar[str] = "guardrail"

    def __init__(self, embedder: Embedder, name: str = "sliding-window", version: str = "1", *, window: int = 2,
                 threshold: float | None = None, check_numbers: bool = True, chat: ChatModel | None = None,
                 max_tokens: int = 300, compliance: ComplianceRules | None = None,
                 language: LanguageDetector | None = None, check_language: bool = True,
                 history_turns: int = 6) -> None:
        if window < 1:
            raise ConfigError(f"guardrail window must be >= 1, got {window}")
        self.embedder = embedder
        self.name, self.version = name, version
        self.window, self.threshold, self.check_numbers = window, threshold_for(embedder, threshold), check_numbers
        self.chat, self.max_tokens, self.history_turns = chat, max_tokens, history_turns
        self.compliance = compliance or ComplianceRules()
        self.language = (language or LanguageDetector()) if check_language else None
        self._kb_vectors = _VectorCache(embedder)

    def process(self, turn: Turn) -> Outcome[Guardrail]:
        text = turn.tone.text if turn.tone else (turn.generate.text if turn.generate else "")
        if not text.strip():
            return reject("no answer to check")
        hits = turn.retrieve.hits if turn.retrieve else ()
        kb_text = "\n".join(s for h in hits for s in hit_sentences(h))
        by_severity = {sev: [Finding(f"compliance:{v.rule}", f"compliance: {v.describe()}")
                             for v in self.compliance.check(text, kb_text) if v.severity == sev] for sev in SEVERITIES}
        language = self._language_finding(turn, text)
        blocking = ([language] if language else []) + by_severity["block"]
        support, unsupported, grounding = self._grounding(turn, text, hits)
        # A rule names the problem more precisely than "ungrounded", so it leads when both apply.
        doubts = by_severity["review"] + ([grounding] if unsupported else [])
        findings = blocking + doubts
        notes = [grounding.detail] if unsupported else []
        rationale = "; ".join(notes + [f.reason for f in findings if f.check != "grounding"])
        if blocking or (doubts and self.chat is None):
            return reject("; ".join(f.reason for f in findings),
                          Guardrail("fail", support, unsupported, 1, rationale, findings[0].check))
        if doubts:
            return self._tier2(self.chat, turn, text, hits, unsupported, doubts, support)
        return ok(Guardrail("pass", support, (), 1, grounding.detail))

    def _language_finding(self, turn: Turn, text: str) -> Finding | None:
        """The answer must be in the customer's language; either side undecided means no judgment."""
        if self.language is None:
            return None
        want = customer_language(turn, self.language)
        got = self.language.detect(text)
        if not want.decided or not got.decided or got.lang == want.lang:
            return None
        return Finding("language", f"language: the answer is in {got.lang} (p={got.confidence:.2f}) but the "
                                   f"customer's language is {want.lang} (from the {want.source})")

    def _grounding(self, turn: Turn, text: str, hits: Sequence[Hit]) -> tuple[float, tuple[str, ...], Finding]:
        """(lowest window support, unsupported windows, the finding that describes them)."""
        added = {_norm(s) for a in (turn.tone.added if turn.tone else ()) for s in [a, *split_sentences(a)]}
        claims = [c for s in split_sentences(text) if _norm(s) not in added for c in _clauses(s) if _norm(c)]
        if not claims:
            return 1.0, (), Finding("grounding", "", "only courtesy sentences, nothing to ground")
        spans = _windows(claims, self.window)
        scores, notes = self._score(claims, spans, hits)
        windows = [" ".join(claims[a:b]) for a, b in spans]
        unsupported = tuple(w for w, s in zip(windows, scores) if s < self.threshold)
        detail = f"{len(unsupported)} of {len(windows)} windows below {self.threshold:.2f}" + (f"; {notes}" if notes else "")
        reason = f"ungrounded: {len(unsupported)} of {len(windows)} windows below threshold"
        return round(float(min(scores)), 4), unsupported, Finding("grounding", reason, detail if unsupported else "")

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

    def _tier2(self, chat: ChatModel, turn: Turn, text: str, hits: Sequence[Hit], unsupported: tuple[str, ...],
               doubts: list[Finding], support: float) -> Outcome[Guardrail]:
        """Ask the evaluator about the doubts, with the conversation so it can judge coherence too."""
        flagged = "\n".join(f"- {w}" for w in unsupported) or "(none)"
        rules = "\n".join(f"- {d.reason}" for d in doubts if d.check != "grounding") or "(none)"
        user = (f"{conversation_text(turn, self.history_turns)}\n\nKnowledge-base excerpts:\n{excerpts_text(hits)}\n\n"
                f"Answer to check:\n{text}\n\nPassages a similarity check could not match to the excerpts:\n"
                f"{flagged}\n\nCompliance rules that matched:\n{rules}")
        data = parse_json_reply(chat.complete(SYSTEM_JUDGE, user, max_tokens=self.max_tokens, json_mode=True))
        verdict = str(data.get("verdict", "")).strip().lower()
        if verdict not in ("pass", "fail"):
            raise LLMError(f"{chat.model}: evaluator verdict must be pass or fail, got {data.get('verdict')!r}")
        aspects = {k: data[k] for k in ASPECTS if k in data}
        if any(not isinstance(v, bool) for v in aspects.values()):
            raise LLMError(f"{chat.model}: evaluator aspects must be true or false, got {aspects}")
        failed = [k for k, v in aspects.items() if v is False]
        # An aspect answered false fails the answer even under a "pass" verdict: the model contradicted itself,
        # and a human should look rather than the more lenient reading winning.
        verdict = "fail" if failed else verdict
        flags = ", ".join(f"{k}={v}" for k, v in aspects.items())
        rationale = str(data.get("rationale", "")).strip() + (f" ({flags})" if flags else "")
        check = "" if verdict == "pass" else "llm" + (f":{','.join(failed)}" if failed else "")
        result = Guardrail(verdict, support, unsupported, 2, rationale, check)
        if verdict == "fail":
            return reject(f"tier-2 evaluator failed the answer: {data.get('rationale', '')}".strip(), result)
        return ok(result)


ASPECTS = ("grounded", "coherent", "compliant")
SYSTEM_JUDGE = (
    "You check customer-support answers for Parcelpay before they are sent. grounded: every factual claim "
    "(amounts, dates, policies, promises) is stated in the knowledge-base excerpts; greetings, empathy and "
    "closing lines need no support. coherent: it answers the customer's latest message and fits the "
    "conversation so far. compliant: it promises no refund, compensation or guarantee the excerpts do not "
    "allow, gives no legal or medical advice, and asks for no password, code or full card number. Reply "
    'with JSON: {"grounded": true|false, "coherent": true|false, "compliant": true|false, '
    '"verdict": "pass"|"fail", "rationale": "<one sentence>"}'
)


@register("guardrail", "sliding-window")
def _build_sliding_window(spec: ComponentSpec, resources: Resources) -> SlidingWindowGuardrail:
    """config: window (2), threshold (per embedder), check_numbers (true), evaluator ("none" | "openai"),
    model, max_tokens (300), history_turns (6), compliance (rule list, see agents/compliance.py),
    check_language (true), language_min_chars, language_min_confidence, languages (list of ISO codes)."""
    cfg = spec.config
    evaluator = str(cfg.get("evaluator") or "none")
    if evaluator not in ("none", "openai"):
        raise ConfigError(f"guardrail evaluator must be 'none' or 'openai', got {evaluator!r}")
    opts = typed_options(cfg, {"window": 2, "threshold": DEFAULT_THRESHOLD, "check_numbers": True, "max_tokens": 300,
                               "check_language": True, "history_turns": 6})
    chat = chat_model(resources, cfg) if evaluator == "openai" else None
    return SlidingWindowGuardrail(shared_embedder(resources, cfg), spec.name, spec.version, chat=chat,
                                  compliance=ComplianceRules.from_config(cfg.get("compliance")),
                                  language=LanguageDetector.from_config(cfg), **opts)

