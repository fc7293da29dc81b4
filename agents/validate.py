"""Validate stage: should the assistant try to answer this message at all?

Labels: ``answerable`` (a support question the KB can answer), ``chitchat``, ``out_of_scope`` and
``needs_human``. Anything but a confident ``answerable`` is rejected, and the stream layer escalates it
or stops there. The validator looks at the CURRENT message, not the summary: "thanks!" after a refund
question is small talk whatever the summary says. The one exception is a short follow-up ("and the
fee?"), which alone looks like nothing: when the model is unsure about it, the summary decides.

The trained validators' confidence threshold is the out-of-scope threshold stored in the model
artifact (``oos_threshold``, chosen on training folds by ``shadowline train``), unless the component
config sets ``min_confidence``; a rejection says which threshold, from where, the score missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agents.base import ComponentSpec, Resources, register
from agents.context import is_follow_up
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Outcome, Turn, Validation, ok, reject
from agents.textmodels import COMPONENT_NAMES, TextModel, obtain
from shadowline.errors import ComponentError, LLMError

__all__ = ["ANSWERABLE", "DEFAULT_MIN_CONFIDENCE", "LABELS", "LLMValidator", "TfidfValidator", "reply_confidence"]

ANSWERABLE = "answerable"
DEFAULT_MIN_CONFIDENCE = 0.4  # for a model without a stored threshold (trained in-process from a CSV)
LABELS: Mapping[str, str] = {
    "answerable": "a question or request about the company's products, orders, payments or account that "
                  "help-centre articles can answer",
    "chitchat": "greetings, thanks, small talk; nothing to answer",
    "out_of_scope": "unrelated to the company (weather, trivia, other companies, general knowledge)",
    "needs_human": "the customer asks for a person, is angry or threatening, reports fraud or a legal or "
                   "safety issue, or needs an action on their account that only staff can take",
}


def _decide(v: Validation, min_confidence: float, note: str = "", source: str = "") -> Outcome[Validation]:
    """``note``: the LLM's reason; ``source``: where the threshold came from (config, artifact, default)."""
    if v.label != ANSWERABLE:
        return reject(f"not answerable: {v.label} (p={v.confidence:.2f}){note}", v)
    if not v.answerable:
        origin = f", {source} threshold" if source else ""
        return reject(f"low confidence: answerable (p={v.confidence:.2f} < {min_confidence:.2f}{origin}){note}", v)
    return ok(v)


class TfidfValidator:
    """A trained text model (TF-IDF, embedding or hybrid features + logistic regression) over the
    current message: ~2 ms per call for TF-IDF, ~20-30 ms with MiniLM embeddings (docs/models.md).

    ``min_confidence=None`` takes the artifact's ``oos_threshold`` (or :data:`DEFAULT_MIN_CONFIDENCE`).
    """

    stage: ClassVar[str] = "validate"

    def __init__(self, model: TextModel, name: str = "tfidf-logreg", version: str = "1", *,
                 min_confidence: float | None = None, follow_up_confidence: float = 0.7) -> None:
        if ANSWERABLE not in model.labels:
            raise ComponentError(f"validator model has no {ANSWERABLE!r} label: {model.labels}")
        self.model = model
        self.name = name
        self.version = version
        stored = (getattr(model, "meta", None) or {}).get("oos_threshold")
        if min_confidence is not None:
            self.min_confidence, self.threshold_source = float(min_confidence), "config"
        elif stored is not None:
            self.min_confidence, self.threshold_source = float(stored), "artifact"
        else:
            self.min_confidence, self.threshold_source = DEFAULT_MIN_CONFIDENCE, "default"
        self.follow_up_confidence = follow_up_confidence

    def process(self, turn: Turn) -> Outcome[Validation]:
        text = turn.event.text
        pred = self.model.predict(text)
        summary = turn.context.summary.strip() if turn.context else ""
        if (pred.label != ANSWERABLE and pred.confidence < self.follow_up_confidence
                and summary and summary != text.strip() and is_follow_up(text)):
            # "how long will that take?" alone is ambiguous; in context it is the earlier question.
            alt = self.model.predict(summary)
            if alt.label == ANSWERABLE and alt.confidence >= self.min_confidence:
                pred = alt
        answerable = pred.label == ANSWERABLE and pred.confidence >= self.min_confidence
        return _decide(Validation(pred.label, answerable, pred.confidence, pred.scores), self.min_confidence,
                       source=self.threshold_source)


def _build_trained(kind: str) -> Any:
    def build(spec: ComponentSpec, resources: Resources) -> TfidfValidator:
        cfg = spec.config
        model = obtain(cfg, Path(resources.settings.samples_dir) / "training" / "validation.csv", "label", kind=kind)
        threshold = cfg.get("min_confidence")
        return TfidfValidator(
            model, spec.name, spec.version,
            min_confidence=None if threshold is None else float(threshold),
            follow_up_confidence=float(cfg.get("follow_up_confidence", 0.7)),
        )

    return build


for _kind, _name in COMPONENT_NAMES.items():
    register("validate", _name)(_build_trained(_kind))


VALIDATE_SYSTEM = (
    "You triage messages sent to {company}'s customer-support chat. Classify the customer's LATEST message "
    "(use the conversation summary only to understand short follow-ups) into exactly one label:\n"
    "{labels}\n"
    'Reply with JSON only: {{"label": "<one of: {names}>", "confidence": <0..1>, "reason": "<short>"}}'
)


def reply_confidence(value: Any, model: str) -> float:
    """Models send confidence as a number or a string; anything else makes the reply unusable."""
    try:
        conf = float(value)
    except (TypeError, ValueError) as exc:
        raise LLMError(f"{model}: confidence {value!r} is not a number") from exc
    if not 0.0 <= conf <= 1.0:
        raise LLMError(f"{model}: confidence {conf} outside 0..1")
    return conf


class LLMValidator:
    """The same decision by an LLM, JSON in, for shadow comparison. LLM failures raise LLMError."""

    stage: ClassVar[str] = "validate"

    def __init__(self, chat: ChatModel, name: str = "openai", version: str = "1", *,
                 labels: Mapping[str, str] = LABELS, min_confidence: float = 0.5, company: str = "the company") -> None:
        if ANSWERABLE not in labels:
            raise ComponentError(f"validator labels must include {ANSWERABLE!r}: {sorted(labels)}")
        self.chat = chat
        self.name = name
        self.version = version
        self.labels = dict(labels)
        self.min_confidence = min_confidence
        listing = "\n".join(f"- {k}: {v}" for k, v in self.labels.items())
        self.system = VALIDATE_SYSTEM.format(company=company, labels=listing, names=", ".join(self.labels))

    def process(self, turn: Turn) -> Outcome[Validation]:
        summary = turn.context.summary if turn.context else ""
        user = f"Conversation summary: {summary or '(none)'}\nLatest customer message: {turn.event.text}"
        reply = parse_json_reply(self.chat.complete(self.system, user, max_tokens=150, json_mode=True))
        label = str(reply.get("label", "")).strip()
        if label not in self.labels:
            return reject(f"unknown label from model: {label!r}")
        conf = reply_confidence(reply.get("confidence"), self.chat.model)
        reason = str(reply.get("reason") or "").strip()
        v = Validation(label, label == ANSWERABLE and conf >= self.min_confidence, conf, {label: conf})
        return _decide(v, self.min_confidence, f": {reason}" if reason else "")


def _labels_from(config: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Sequence[str] | Mapping[str, str] = config.get("labels", LABELS)
    if isinstance(labels, Mapping):
        return labels
    return {name: LABELS.get(name, name.replace("_", " ")) for name in labels}


@register("validate", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMValidator:
    cfg = spec.config
    return LLMValidator(
        chat_model(resources, cfg), spec.name, spec.version, labels=_labels_from(cfg),
        min_confidence=float(cfg.get("min_confidence", 0.5)), company=str(cfg.get("company", "the company")),
    )
