"""The quality judge: five 0..1 scores for a sample of the suggestions the pipeline sent to agents.

Aspects (the columns of the ``judgments`` table in ``shadowline query``):

- retrieval: did retrieval find the right articles?
- accuracy: is every claim in the answer supported by them?
- language: is it in the customer's language, and well formed?
- coherence: does it fit the conversation so far?
- relevance: does it answer what was asked?

``RuleJudge`` scores offline from what the turn already holds (retrieval scores, the guardrail's
support) plus language id and embedding similarity; ``LLMJudge`` asks a model for all five. Either
way the scores are calibrated against human labels in the review queue (shadow/review.py): a rule
is only as good as its agreement with people.

Judging is off the hot path (its own worker on ``support.suggestions``) and sampled deterministically
by a hash of the event or conversation id, so a replay judges the same turns again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from agents.base import ComponentSpec, Resources, register
from agents.conversation import conversation_text, excerpts_text
from agents.language import LanguageDetector, customer_language
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Outcome, Turn, ok, reject
from agents.retrieve import DEFAULT_MIN_SCORE, shared_embedder, shared_index, typed_options
from kb_index.chunker import split_sentences
from kb_index.embedder import Embedder
from shadowline.errors import ConfigError, LLMError

__all__ = ["ASPECTS", "CALIBRATION", "Calibration", "LLMJudge", "RuleJudge", "Scores", "grammar_score", "sampled"]

ASPECTS: tuple[str, ...] = ("retrieval", "accuracy", "language", "coherence", "relevance")


def sampled(key: str, rate: float, salt: str = "judge") -> bool:
    """Deterministic sampling: the same key is in or out in every process and every replay.

    Salted, so the judge's sample is independent of the shadow mirror's (which hashes conversation
    ids unsalted) and of the review queue's sample among judged turns.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


@dataclass(frozen=True, slots=True)
class Scores:
    """A judge's output: aspect -> 0..1 (an aspect it could not judge is left out) and why."""

    values: Mapping[str, float]
    rationale: str = ""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Where an embedder's cosines mean "unrelated" (-> 0) and "clearly related" (-> 1).

    Cosines are not comparable across embedders, so each needs its own; see ``CALIBRATION``.
    """

    hit_score: tuple[float, float]  # retrieval score of the top KB hit
    similarity: tuple[float, float]  # answer vs question / conversation summary

    def __post_init__(self) -> None:
        for name, (lo, hi) in (("hit_score", self.hit_score), ("similarity", self.similarity)):
            if not -1.0 <= lo < hi <= 1.0:
                raise ConfigError(f"judge calibration {name} must be [low, high] with -1 <= low < high <= 1")


# Measured with the hashing embedder on the 71 suggestions the sample conversations produce. Top hit:
# retrieve's floor is 0.15, the median top hit 0.295. Similarity of the answer (tone sentences removed)
# with its own question / summary: median 0.28 / 0.32; with another turn's: 90th percentile 0.16 / 0.17.
# So 0.5 after scaling sits near 0.23, above 97% of unrelated pairs and below ~75% of real ones.
# An embedder missing here needs ``hit_score`` and ``similarity`` in the judge config.
CALIBRATION: dict[str, Calibration] = {"hashing-v1": Calibration((DEFAULT_MIN_SCORE, 0.30), (0.16, 0.30))}


def _scale(x: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


_DOUBLED = re.compile(r"\b(\w+)\s+\1\b", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s[,.;:!?]")
_LOWER_I = re.compile(r"(?:^|\s)i(?:\s|')")
_PAIRS = (("(", ")"), ("[", "]"), ("{", "}"))


def grammar_score(text: str) -> tuple[float, list[str]]:
    """Share of sentences with no surface problem, and the problems found.

    Surface checks only (capital start, end punctuation, doubled words, space before punctuation,
    lowercase "i", unbalanced brackets): what a template bug or a truncated LLM reply produces, and
    what an English-only grammar model would miss in other languages anyway.
    """
    sentences = split_sentences(text)
    if not sentences:
        return 0.0, ["no sentences"]
    problems: list[str] = []
    bad = 0
    for s in sentences:
        issues = []
        first = s.lstrip("\"'“‘(*")[:1]
        if first.isalpha() and not first.isupper():
            issues.append("starts lowercase")
        if not s.rstrip("\"')”’*").endswith((".", "!", "?", ":", "…")):
            issues.append("no end punctuation")
        if (m := _DOUBLED.search(s)) and not m.group(1).isdigit():
            issues.append(f"doubled word {m.group(1)!r}")
        if _SPACE_BEFORE_PUNCT.search(s):
            issues.append("space before punctuation")
        if _LOWER_I.search(s):
            issues.append("lowercase 'i'")
        if any(s.count(a) != s.count(b) for a, b in _PAIRS):
            issues.append("unbalanced brackets")
        if issues:
            bad += 1
            problems.append(f"{s[:40]!r}: {', '.join(issues)}")
    return 1.0 - bad / len(sentences), problems


def answer_body(turn: Turn) -> str:
    """The answer without the sentences the tone stage added (greetings say nothing about the question)."""
    text = turn.tone.text if turn.tone else (turn.generate.text if turn.generate else "")
    for added in turn.tone.added if turn.tone else ():
        text = text.replace(added, " ")
    return " ".join(text.split())


def answer_text(turn: Turn) -> str:
    return turn.tone.text if turn.tone else (turn.generate.text if turn.generate else "")


class RuleJudge:
    """Offline scores from signals the pipeline already has; no network, deterministic."""

    stage: ClassVar[str] = "judge"

    def __init__(self, embedder: Embedder, name: str = "rules", version: str = "1", *,
                 article_topics: Mapping[str, str] | None = None, language: LanguageDetector | None = None,
                 calibration: Calibration | None = None) -> None:
        self.embedder = embedder
        self.name, self.version = name, version
        self.article_topics = dict(article_topics or {})
        self.language = language or LanguageDetector()
        if calibration is None and embedder.name not in CALIBRATION:
            raise ConfigError(f"judge: no calibration for embedder {embedder.name!r} (calibrated: "
                              f"{', '.join(sorted(CALIBRATION))}); set 'hit_score' and 'similarity' in the judge config")
        self.calibration = calibration or CALIBRATION[embedder.name]

    def process(self, turn: Turn) -> Outcome[Scores]:
        text = answer_text(turn)
        if not text.strip():
            return reject("no answer to judge")
        values: dict[str, float] = {}
        notes: list[str] = []
        for aspect, score in ((a, getattr(self, f"_{a}")(turn, notes)) for a in ASPECTS):
            if score is not None:
                values[aspect] = round(score, 4)
        return ok(Scores(values, "; ".join(notes)))

    def _retrieval(self, turn: Turn, notes: list[str]) -> float | None:
        hits = turn.retrieve.hits if turn.retrieve else ()
        if not hits:
            notes.append("retrieval: no hits")
            return 0.0
        score = _scale(hits[0].score, self.calibration.hit_score)
        topic = turn.classify.topic if turn.classify else None
        topics = [self.article_topics.get(h.article_id) for h in hits]
        if not topic or topics[0] is None:
            notes.append(f"retrieval: top hit {hits[0].score:.2f}")
            return score
        # The taxonomies overlap (a late delivery is answered by a refunds article), so a match further down still counts half.
        match = 1.0 if topics[0] == topic else 0.5 if topic in topics else 0.0
        notes.append(f"retrieval: top hit {hits[0].score:.2f}, topic {topic} vs {topics[0]}")
        return (score + match) / 2

    def _accuracy(self, turn: Turn, notes: list[str]) -> float | None:
        g = turn.guardrail
        if g is None:
            return None
        notes.append(f"accuracy: guardrail support {g.support:.2f} (tier {g.tier})")
        return float(np.clip(g.support, 0.0, 1.0))

    def _language(self, turn: Turn, notes: list[str]) -> float | None:
        text = answer_text(turn)
        grammar, problems = grammar_score(text)
        want, got = customer_language(turn, self.language), self.language.detect(text)
        if want.decided and got.decided and want.lang != got.lang:
            notes.append(f"language: answer {got.lang}, customer {want.lang}")
            return 0.0
        notes.append(f"language: {got.lang or 'undecided'}, grammar {grammar:.2f}" + (f" ({problems[0]})" if problems else ""))
        return grammar

    def _similarity(self, a: str, b: str) -> float:
        if not a.strip() or not b.strip():
            return 0.0
        va, vb = self.embedder.embed([a, b])
        return _scale(float(va @ vb), self.calibration.similarity)

    def _coherence(self, turn: Turn, notes: list[str]) -> float | None:
        summary = turn.context.summary if turn.context and turn.context.summary else turn.event.text
        score = self._similarity(answer_body(turn), summary)
        notes.append(f"coherence: {score:.2f} vs summary")
        return score

    def _relevance(self, turn: Turn, notes: list[str]) -> float | None:
        score = self._similarity(answer_body(turn), turn.event.text)
        notes.append(f"relevance: {score:.2f} vs question")
        return score


SYSTEM_JUDGE = (
    "You grade a customer-support answer drafted for Parcelpay. Give each aspect a score from 0 to 1. "
    "retrieval: the knowledge-base excerpts are the right ones for the customer's request. accuracy: every "
    "claim in the answer is supported by the excerpts. language: the answer is in the customer's language "
    "and grammatical. coherence: it fits the conversation so far. relevance: it answers the latest "
    'request. Reply with JSON: {"retrieval": x, "accuracy": x, "language": x, "coherence": x, '
    '"relevance": x, "rationale": "<one or two sentences>"}'
)


class LLMJudge:
    """All five aspects from an LLM; a malformed reply raises LLMError (the worker dead-letters it)."""

    stage: ClassVar[str] = "judge"

    def __init__(self, chat: ChatModel, name: str = "openai", version: str = "1", *, max_tokens: int = 400,
                 history_turns: int = 6) -> None:
        self.chat = chat
        self.name, self.version = name, version
        self.max_tokens, self.history_turns = max_tokens, history_turns

    def process(self, turn: Turn) -> Outcome[Scores]:
        text = answer_text(turn)
        if not text.strip():
            return reject("no answer to judge")
        topic = f"\nClassified topic: {turn.classify.topic}" if turn.classify else ""
        user = (f"{conversation_text(turn, self.history_turns)}{topic}\n\nKnowledge-base excerpts:\n"
                f"{excerpts_text(turn.retrieve.hits if turn.retrieve else ())}\n\nAnswer to grade:\n{text}")
        data = parse_json_reply(self.chat.complete(SYSTEM_JUDGE, user, max_tokens=self.max_tokens, json_mode=True))
        values: dict[str, float] = {}
        for aspect in ASPECTS:
            v = data.get(aspect)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise LLMError(f"{self.chat.model}: judge score {aspect!r} must be a number in [0, 1], got {v!r}")
            values[aspect] = float(v)
        return ok(Scores(values, str(data.get("rationale", "")).strip()))


def _calibration(cfg: dict[str, Any]) -> Calibration | None:
    given = [k for k in ("hit_score", "similarity") if k in cfg]
    if not given:
        return None
    if len(given) == 1:
        raise ConfigError("judge config needs both 'hit_score' and 'similarity' ([low, high] each), or neither")
    try:
        return Calibration(*(tuple(float(x) for x in cfg[k]) for k in ("hit_score", "similarity")))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"judge hit_score / similarity must be [low, high] pairs of numbers: {exc}") from exc


@register("judge", "rules")
def _build_rules(spec: ComponentSpec, resources: Resources) -> RuleJudge:
    """config: embedder / embedder_dim, hit_score and similarity ([low, high]; per embedder by default),
    language_min_chars, language_min_confidence, languages. Article topics come from the KB index."""
    cfg = spec.config
    embedder = shared_embedder(resources, cfg)
    index = shared_index(resources, embedder)
    topics = {c.article_id: c.topic for c in index.chunks if c.topic}
    return RuleJudge(embedder, spec.name, spec.version, article_topics=topics, language=LanguageDetector.from_config(cfg),
                     calibration=_calibration(cfg))


@register("judge", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMJudge:
    """config: model (settings.openai_model), max_tokens (400), history_turns (6)."""
    opts = typed_options(spec.config, {"max_tokens": 400, "history_turns": 6})
    return LLMJudge(chat_model(resources, spec.config), spec.name, spec.version, **opts)


@dataclass(frozen=True, slots=True)
class Judgment:
    """The record on ``quality.judgments`` (schemas/avro/Judgment.avsc)."""

    judgment_id: str
    event_id: str
    suggestion_id: str | None
    judge: str
    scores: Mapping[str, float] = field(default_factory=dict)
    rationale: str = ""
    created_ms: int = 0

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Judgment:
        return cls(r["judgment_id"], r["event_id"], r.get("suggestion_id"), r["judge"], dict(r["scores"]),
                   r.get("rationale", ""), r["created_ms"])

    def to_record(self) -> dict[str, Any]:
        return {"judgment_id": self.judgment_id, "event_id": self.event_id, "suggestion_id": self.suggestion_id,
                "judge": self.judge, "scores": dict(self.scores), "rationale": self.rationale,
                "created_ms": self.created_ms}
