"""DSTC11 Track 5 (knowledge-grounded dialogue) as shadowline articles and conversations.

The knowledge base is per-entity FAQs and review sentences, and the labels cite single snippets
(one FAQ, or one sentence of one review). So each snippet becomes its own article, whose id encodes
the snippet key (``hotel-12-faq-3``, ``restaurant-19188-review-0-3``): retrieval hits map back to
labels with :meth:`SnippetKey.parse`, and recall@k needs no side table. A snippet is one sentence
or a short answer, far below the chunker's ~120 words, so each article is exactly one chunk. The
entity name goes into every title, because the chunk header is embedded with the text and
selection in this data set is entity-scoped ("does *it* have free parking?").

The validation logs carry no dialogue ids. Instances cut from one MultiWOZ conversation share its
first user turn, so :func:`dialogue_id` groups by that turn: a split by these ids keeps every prefix
of a conversation on one side. Two conversations that open with the same sentence fall into one
group, which errs on the safe side (more held out together, never a leak).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kb_index.articles import Article
from shadowline.errors import ComponentError

__all__ = ["Dialogue", "Entity", "EntityMatcher", "SnippetKey", "Utterance", "dialogue_id", "load_dialogues",
           "load_entities", "load_knowledge", "to_conversation"]

DOC_TYPES = ("faq", "review")
SPEAKERS = {"U": "customer", "S": "agent"}


@dataclass(frozen=True, slots=True, order=True)
class SnippetKey:
    """One knowledge snippet as the labels cite it; ``sent_id`` only for review sentences."""

    domain: str
    entity_id: int
    doc_type: str
    doc_id: int
    sent_id: int | None = None

    @property
    def article_id(self) -> str:
        tail = "" if self.sent_id is None else f"-{self.sent_id}"
        return f"{self.domain}-{self.entity_id}-{self.doc_type}-{self.doc_id}{tail}"

    @property
    def entity(self) -> tuple[str, int]:
        return self.domain, self.entity_id

    @classmethod
    def parse(cls, article_id: str) -> SnippetKey:
        """The key inside an article id made by :func:`load_knowledge`; ComponentError for any other id."""
        parts = article_id.split("-")
        try:
            if len(parts) == 4 and parts[2] == "faq":
                return cls(parts[0], int(parts[1]), "faq", int(parts[3]))
            if len(parts) == 5 and parts[2] == "review":
                return cls(parts[0], int(parts[1]), "review", int(parts[3]), int(parts[4]))
        except ValueError:
            pass
        raise ComponentError(f"{article_id!r} is not a DSTC11 snippet article id")

    @classmethod
    def from_label(cls, obj: Mapping[str, Any], where: str) -> SnippetKey:
        try:
            doc_type = str(obj["doc_type"])
            sent = obj.get("sent_id")
            key = cls(str(obj["domain"]), int(obj["entity_id"]), doc_type, int(obj["doc_id"]),
                      None if sent is None else int(sent))
        except (KeyError, TypeError, ValueError) as exc:
            raise ComponentError(f"{where}: bad knowledge reference {obj!r}: {exc}") from exc
        if doc_type not in DOC_TYPES or (doc_type == "review") != (key.sent_id is not None):
            raise ComponentError(f"{where}: bad knowledge reference {obj!r} (a review needs sent_id, a faq none)")
        return key


@dataclass(frozen=True, slots=True)
class Entity:
    domain: str
    entity_id: int
    name: str


def _knowledge_file(path: Path) -> Path:
    path = Path(path)
    return path / "knowledge.json" if path.is_dir() else path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ComponentError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ComponentError(f"{path}: invalid JSON: {exc}") from exc


def _entities(path: Path) -> Iterable[tuple[Entity, Mapping[str, Any], str]]:
    """(entity, its record, where) for every entity of a knowledge.json, checked as it goes."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ComponentError(f"{path}: expected an object keyed by domain, got {type(data).__name__}")
    for domain, ents in data.items():
        if not isinstance(ents, dict):
            raise ComponentError(f"{path}: domain {domain!r} must map entity ids to entities")
        for eid, rec in ents.items():
            where = f"{path}: {domain}/{eid}"
            if not isinstance(rec, dict) or not str(rec.get("name") or "").strip():
                raise ComponentError(f"{where}: entity needs a name")
            try:
                entity = Entity(str(domain), int(eid), str(rec["name"]).strip())
            except ValueError as exc:
                raise ComponentError(f"{where}: entity id is not a number") from exc
            yield entity, rec, where


def load_entities(path: Path) -> list[Entity]:
    """Every entity of a knowledge.json (or of the data set folder holding it)."""
    return [e for e, _, _ in _entities(_knowledge_file(path))]


def load_knowledge(path: Path) -> list[Article]:
    """One article per FAQ (title "<entity>: <question>", body the answer) and per review sentence.

    ``path`` is knowledge.json or the data set folder holding it. Topics are the domains.
    """
    articles: list[Article] = []
    for e, rec, where in _entities(_knowledge_file(path)):
        for doc_id, faq in (rec.get("faqs") or {}).items():
            fields = faq if isinstance(faq, dict) else {}
            question, answer = (str(fields.get(f) or "").strip() for f in ("question", "answer"))
            if not question or not answer:
                raise ComponentError(f"{where}: faq {doc_id} needs a question and an answer")
            key = SnippetKey(e.domain, e.entity_id, "faq", _int(doc_id, where))
            articles.append(Article(key.article_id, f"{e.name}: {question}", e.domain, answer))
        for doc_id, review in (rec.get("reviews") or {}).items():
            sentences = review.get("sentences") if isinstance(review, dict) else None
            if not isinstance(sentences, dict):
                raise ComponentError(f"{where}: review {doc_id} has no sentences")
            for sent_id, text in sentences.items():
                if not isinstance(text, str) or not text.strip():
                    continue  # an empty sentence cannot be cited or retrieved
                key = SnippetKey(e.domain, e.entity_id, "review", _int(doc_id, where), _int(sent_id, where))
                articles.append(Article(key.article_id, f"{e.name} review", e.domain, text.strip()))
    if not articles:
        raise ComponentError(f"{path}: no FAQs or review sentences")
    return articles


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ComponentError(f"{where}: id {value!r} is not a number") from exc


# -- dialogues ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Utterance:
    speaker: str  # "U" (user) or "S" (system)
    text: str


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One labelled instance: a conversation up to a user turn, and what that turn needs."""

    instance: int  # position in logs.json / labels.json
    dialogue_id: str  # shared by the instances cut from one conversation
    turns: tuple[Utterance, ...]
    target: bool  # the last user turn needs the knowledge base
    knowledge: tuple[SnippetKey, ...] = ()
    response: str = ""

    @property
    def last_user(self) -> str:
        return next((t.text for t in reversed(self.turns) if t.speaker == "U"), "")

    @property
    def entities(self) -> tuple[tuple[str, int], ...]:
        """The entities the gold snippets belong to, in citation order."""
        return tuple(dict.fromkeys(k.entity for k in self.knowledge))


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def dialogue_id(turns: Sequence[Utterance]) -> str:
    first = next((t.text for t in turns if t.speaker == "U"), turns[0].text if turns else "")
    return "d" + hashlib.sha1(_norm_text(first).encode()).hexdigest()[:10]


def load_dialogues(split_dir: Path) -> list[Dialogue]:
    """The instances of a split folder (``logs.json`` + ``labels.json``, same order)."""
    split_dir = Path(split_dir)
    logs, labels = _read_json(split_dir / "logs.json"), _read_json(split_dir / "labels.json")
    if not isinstance(logs, list) or not isinstance(labels, list) or len(logs) != len(labels):
        raise ComponentError(f"{split_dir}: logs.json and labels.json must be lists of the same length")
    out = []
    for i, (log, label) in enumerate(zip(logs, labels)):
        where = f"{split_dir}: instance {i}"
        try:
            turns = tuple(Utterance(str(t["speaker"]), str(t["text"])) for t in log)
        except (KeyError, TypeError) as exc:
            raise ComponentError(f"{where}: turns need speaker and text") from exc
        if not turns or any(t.speaker not in SPEAKERS for t in turns):
            raise ComponentError(f"{where}: turns must be a non-empty list of U/S utterances")
        if not isinstance(label, dict) or not isinstance(label.get("target"), bool):
            raise ComponentError(f"{where}: label needs a boolean target")
        knowledge = tuple(SnippetKey.from_label(k, where) for k in label.get("knowledge") or ())
        if label["target"] and not knowledge:
            raise ComponentError(f"{where}: a knowledge-seeking label must cite knowledge")
        out.append(Dialogue(i, dialogue_id(turns), turns, label["target"], knowledge, str(label.get("response") or "")))
    return out


def to_conversation(d: Dialogue, *, with_response: bool = True) -> dict[str, Any]:
    """A conversation line for ``shadowline replay``: U -> customer, S -> agent; the reference
    response becomes the agent's reply to the last turn, so replays produce feedback to score against."""
    turns = [{"role": SPEAKERS[t.speaker], "text": t.text} for t in d.turns if t.text.strip()]
    if with_response and d.response.strip():
        turns.append({"role": "agent", "text": d.response})
    meta = {"source": "dstc11-track5", "instance": str(d.instance), "knowledge_seeking": str(d.target).lower()}
    return {"conversation_id": f"dstc11-{d.dialogue_id}-{d.instance}", "locale": "en", "turns": turns, "metadata": meta}


# -- entity mentions ---------------------------------------------------------------------------

# Words people drop when naming a place ("the Lensfield", "Alimentum", "Acorn"): stripped from either end.
_GENERIC = ("the", "restaurant", "hotel", "guest house", "guesthouse", "bed and breakfast", "b and b", "and bar",
            "bar", "cafe", "cambridge", "of cambridge")


def _norm_name(text: str) -> str:
    text = text.lower().replace("&", " and ").replace("'", "").replace("\u2019", "")
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _variants(name: str) -> set[str]:
    """The name and its forms without generic leading/trailing words; short leftovers are dropped."""
    out, todo = set(), [_norm_name(name)]
    while todo:
        v = todo.pop()
        if v in out:
            continue
        out.add(v)
        for g in _GENERIC:
            if v.startswith(g + " "):
                todo.append(v[len(g) + 1:])
            if v.endswith(" " + g):
                todo.append(v[: -len(g) - 1])
    variants = {v for v in out if len(v) >= 4 and v not in _GENERIC}
    variants |= {v.replace("guest house", "guesthouse") for v in variants if "guest house" in v}
    return variants


class EntityMatcher:
    """Finds entity names in dialogue text (exact words after normalising, longest match first).

    Deliberately simple string matching: it is the baseline the selection benchmark reports next to
    an oracle entity, so the gap says what a better entity tracker would be worth.
    """

    def __init__(self, entities: Sequence[Entity]) -> None:
        self._by_variant: dict[str, list[Entity]] = {}
        for e in entities:
            for v in _variants(e.name):
                self._by_variant.setdefault(v, []).append(e)
        alternatives = sorted(self._by_variant, key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(re.escape(v) for v in alternatives) + r")\b")

    def find(self, text: str) -> list[Entity]:
        """Entities named in ``text``, in order of appearance (an ambiguous variant names all its entities)."""
        found = [e for m in self._pattern.finditer(_norm_name(text)) for e in self._by_variant[m.group(1)]]
        return list(dict.fromkeys(found))

    def current(self, turns: Sequence[Utterance]) -> list[Entity]:
        """The entities of the latest turn that names any: what "it" and "they" most likely refer to."""
        for t in reversed(turns):
            found = self.find(t.text)
            if found:
                return found
        return []
