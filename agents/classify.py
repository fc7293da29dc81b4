"""Classify stage: which support topic the customer's issue belongs to.

The topic narrows retrieval and routes escalations, so a wrong topic costs more than no topic: a
prediction below ``min_confidence`` is rejected (with its scores, for the comparator) rather than
guessed. The input is ``turn.query``, the context summary, because "how long will that take?" has a
topic only together with the issue it follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agents.base import ComponentSpec, Resources, register
from agents.llm import ChatModel, chat_model, parse_json_reply
from agents.records import Classification, Outcome, Turn, ok, reject
from agents.textmodels import COMPONENT_NAMES, TextModel, load_dataset, obtain
from agents.validate import reply_confidence
from shadowline.errors import ComponentError

__all__ = ["LLMTopicClassifier", "TfidfTopicClassifier", "topics_csv"]


def topics_csv(resources: Resources) -> Path:
    return Path(resources.settings.samples_dir) / "training" / "topics.csv"


def _decide(c: Classification, min_confidence: float) -> Outcome[Classification]:
    if c.confidence < min_confidence:
        return reject(f"low topic confidence: {c.topic} {c.confidence:.2f} < {min_confidence:.2f}", c)
    return ok(c)


class TfidfTopicClassifier:
    """A trained text model over the summary (TF-IDF, embedding or hybrid features + logistic
    regression; the registered names ``tfidf-logreg``, ``embed-logreg``, ``hybrid-logreg``)."""

    stage: ClassVar[str] = "classify"

    def __init__(self, model: TextModel, name: str = "tfidf-logreg", version: str = "1", *,
                 min_confidence: float = 0.3) -> None:
        self.model = model
        self.name = name
        self.version = version
        self.min_confidence = min_confidence

    @property
    def topics(self) -> tuple[str, ...]:
        return self.model.labels

    def process(self, turn: Turn) -> Outcome[Classification]:
        pred = self.model.predict(turn.query)
        return _decide(Classification(pred.label, pred.confidence, pred.scores), self.min_confidence)


def _build_trained(kind: str) -> Any:
    def build(spec: ComponentSpec, resources: Resources) -> TfidfTopicClassifier:
        cfg = spec.config
        model = obtain(cfg, topics_csv(resources), "topic", kind=kind)
        return TfidfTopicClassifier(model, spec.name, spec.version,
                                    min_confidence=float(cfg.get("min_confidence", 0.3)))

    return build


for _kind, _name in COMPONENT_NAMES.items():
    register("classify", _name)(_build_trained(_kind))


CLASSIFY_SYSTEM = (
    "You route customer-support requests. Pick the one topic that best fits the customer's issue:\n"
    "{topics}\n"
    'Reply with JSON only: {{"topic": "<one of: {names}>", "confidence": <0..1>}}'
)


class LLMTopicClassifier:
    """Topic by an LLM with the label list in the prompt; a label outside the list is rejected."""

    stage: ClassVar[str] = "classify"

    def __init__(self, chat: ChatModel, topics: Sequence[str] | Mapping[str, str], name: str = "openai",
                 version: str = "1", *, min_confidence: float = 0.3) -> None:
        described = dict(topics) if isinstance(topics, Mapping) else {t: "" for t in topics}
        if len(described) < 2:
            raise ComponentError(f"topic classifier needs at least two topics, got {sorted(described)}")
        self.chat = chat
        self.name = name
        self.version = version
        self.topics = tuple(described)
        self.min_confidence = min_confidence
        listing = "\n".join(f"- {t}" + (f": {d}" if d else "") for t, d in described.items())
        self.system = CLASSIFY_SYSTEM.format(topics=listing, names=", ".join(self.topics))

    def process(self, turn: Turn) -> Outcome[Classification]:
        reply = parse_json_reply(self.chat.complete(self.system, f"Customer issue: {turn.query}", max_tokens=60,
                                                    json_mode=True))
        topic = str(reply.get("topic", "")).strip()
        if topic not in self.topics:
            return reject(f"unknown topic from model: {topic!r} (expected one of {', '.join(self.topics)})")
        conf = reply_confidence(reply.get("confidence"), self.chat.model)
        return _decide(Classification(topic, conf, {topic: conf}), self.min_confidence)


@register("classify", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMTopicClassifier:
    cfg = spec.config
    topics: Any = cfg.get("topics")
    if not topics:
        # Same label set as the offline model, so the two compare label for label in shadow mode.
        data = load_dataset(cfg.get("train_csv") or topics_csv(resources), "topic")
        topics = sorted(set(data.labels))
    return LLMTopicClassifier(chat_model(resources, cfg), topics, spec.name, spec.version,
                              min_confidence=float(cfg.get("min_confidence", 0.3)))
