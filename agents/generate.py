"""Generate stage: draft an answer from the retrieved KB chunks.

``ExtractiveAnswer`` is the offline default: it only ever quotes KB sentences, so it cannot invent a
policy, and its output is deterministic (shadow comparisons against it have no noise floor).
``LLMAnswer`` writes fluent answers through an OpenAI-compatible model and is meant to prove itself
in shadow first; its citations are mapped back to article ids.
"""

from __future__ import annotations

import re
from typing import ClassVar

from agents.base import ComponentSpec, Resources, register
from agents.llm import ChatModel, chat_model
from agents.records import Generation, Hit, Outcome, Turn, ok, reject
from agents.retrieve import shared_embedder, typed_options
from kb_index.chunker import Sentence, chunk_sentences, split_header
from kb_index.embedder import Embedder
from shadowline.errors import ConfigError

__all__ = ["ExtractiveAnswer", "LLMAnswer", "hit_sentences"]


def hit_sentences(hit: Hit) -> list[str]:
    """A hit's sentences as they read on their own (list items led by their lead-in or heading)."""
    return [s.full for s in chunk_sentences(hit.text, hit.title)]


def _norm(sentence: str) -> str:
    return re.sub(r"\W+", " ", sentence.lower()).strip()


class ExtractiveAnswer:
    """Pick the 2-3 KB sentences closest to the question, from at most two articles, in KB order.

    A sentence's score is its cosine with the query, blended with its chunk's retrieval score
    (``chunk_weight``: the section a sentence sits in says what it is about, and short sentences
    such as "Wallet refunds are instant." carry little vocabulary), plus ``top_bonus`` for the
    best-ranked article. A third sentence is kept only if it scores ``keep_ratio`` of the best.
    """

    stage: ClassVar[str] = "generate"

    def __init__(self, embedder: Embedder, name: str = "extractive", version: str = "1", *,
                 max_sentences: int = 3, max_articles: int = 2, top_bonus: float = 0.05,
                 chunk_weight: float = 0.4, keep_ratio: float = 0.6) -> None:
        if max_sentences < 1 or max_articles < 1:
            raise ConfigError("max_sentences and max_articles must be >= 1")
        self.embedder = embedder
        self.name, self.version = name, version
        self.max_sentences, self.max_articles = max_sentences, max_articles
        self.top_bonus, self.chunk_weight, self.keep_ratio = top_bonus, chunk_weight, keep_ratio

    def process(self, turn: Turn) -> Outcome[Generation]:
        r = turn.retrieve
        if r is None or not r.hits:
            return reject("no retrieved KB articles to answer from")
        articles = list(dict.fromkeys(h.article_id for h in r.hits))[: self.max_articles]
        # (article rank, hit rank, position) keeps the KB's own order when the answer is assembled.
        cands: list[tuple[tuple[int, int, int], Sentence, str, float]] = []
        seen: set[str] = set()
        for hit_rank, h in enumerate(r.hits):
            if h.article_id not in articles:
                continue
            for pos, s in enumerate(chunk_sentences(h.text, h.title)):
                key = _norm(s.full)
                if key in seen or len(_norm(s.text).split()) < 3 or s.text.endswith(("?", ":")) \
                        or s.text.startswith("See "):
                    continue  # overlap duplicates, fragments, FAQ questions, list lead-ins, cross-links
                seen.add(key)
                cands.append(((articles.index(h.article_id), hit_rank, pos), s, h.article_id, h.score))
        if not cands:
            return reject("retrieved chunks contain no usable sentences")
        vecs = self.embedder.embed([r.query or turn.query] + [c[1].full for c in cands])
        sims = vecs[1:] @ vecs[0]
        scores = [(1 - self.chunk_weight) * float(sim) + self.chunk_weight * c[3]
                  + (self.top_bonus if c[2] == articles[0] else 0.0) for sim, c in zip(sims, cands)]
        ranked = sorted(range(len(cands)), key=lambda i: -scores[i])
        best = scores[ranked[0]]
        floor = min(2, self.max_sentences)
        chosen = ranked[:floor] + [i for i in ranked[floor : self.max_sentences] if scores[i] >= self.keep_ratio * best]
        chosen.sort(key=lambda i: cands[i][0])
        text = _assemble([cands[i][1] for i in chosen])
        sources = tuple(dict.fromkeys(cands[i][2] for i in chosen))
        return ok(Generation(text, sources, f"extractive@{self.version}"))


def _assemble(sentences: list[Sentence]) -> str:
    """Join in order; list items under the same lead share it: "Lead: item one; item two." """
    parts: list[str] = []
    i = 0
    while i < len(sentences):
        s = sentences[i]
        if not s.lead:
            parts.append(_terminated(s.text))
            i += 1
            continue
        j = i
        while j < len(sentences) and sentences[j].lead == s.lead:
            j += 1
        items = "; ".join(x.text.rstrip(".;") for x in sentences[i:j])
        parts.append(_terminated(Sentence(items, s.lead).full))
        i = j
    return " ".join(parts)


def _terminated(sentence: str) -> str:
    return sentence if sentence.rstrip("\"')").endswith((".", "!", "?")) else sentence + "."


@register("generate", "extractive")
def _build_extractive(spec: ComponentSpec, resources: Resources) -> ExtractiveAnswer:
    """config: max_sentences (3), max_articles (2), top_bonus, chunk_weight, keep_ratio, embedder."""
    cfg = spec.config
    opts = typed_options(cfg, {"max_sentences": 3, "max_articles": 2, "top_bonus": 0.05, "chunk_weight": 0.4,
                               "keep_ratio": 0.6})
    return ExtractiveAnswer(shared_embedder(resources, cfg), spec.name, spec.version, **opts)


SYSTEM_ANSWER = (
    "You are a customer-support assistant for Parcelpay. Answer the customer's latest message using ONLY "
    "the numbered knowledge-base excerpts. Cite every fact with its excerpt number in brackets, like [1]. "
    "Do not invent amounts, dates, policies or promises. Keep it to 2-4 sentences. If the excerpts do not "
    "answer the question, reply exactly NO_ANSWER."
)
_CITE = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")


class LLMAnswer:
    """An LLM answer grounded in the numbered hits; ``LLMError`` propagates to the stream layer."""

    stage: ClassVar[str] = "generate"

    def __init__(self, chat: ChatModel, name: str = "openai", version: str = "1", *, max_tokens: int = 300,
                 history_turns: int = 6) -> None:
        self.chat = chat
        self.name, self.version = name, version
        self.max_tokens, self.history_turns = max_tokens, history_turns

    def prompt(self, turn: Turn) -> tuple[str, str]:
        hits = turn.retrieve.hits if turn.retrieve else ()
        history = list(turn.context.history[-self.history_turns :]) if turn.context else []
        if history and history[-1].text == turn.event.text:
            history.pop()  # the current message is shown on its own below
        parts = []
        if history:
            parts.append("Conversation so far:\n" + "\n".join(f"{m.role}: {m.text}" for m in history))
        if turn.context and turn.context.summary:
            parts.append(f"Summary of the customer's issue: {turn.context.summary}")
        parts.append(f"Customer's latest message: {turn.event.text}")
        parts.append("Knowledge-base excerpts:\n" + "\n\n".join(
            f"[{n}] {h.title} ({h.article_id})\n{split_header(h.text)[1]}" for n, h in enumerate(hits, 1)))
        parts.append("Write the answer, citing excerpts like [1].")
        return SYSTEM_ANSWER, "\n\n".join(parts)

    def process(self, turn: Turn) -> Outcome[Generation]:
        if turn.retrieve is None or not turn.retrieve.hits:
            return reject("no retrieved KB articles to answer from")
        hits = turn.retrieve.hits
        system, user = self.prompt(turn)
        reply = self.chat.complete(system, user, max_tokens=self.max_tokens).strip()
        model = f"openai:{self.chat.model}"
        if not reply or reply.upper().startswith("NO_ANSWER"):
            return reject("the model found no answer in the KB excerpts", Generation(reply, (), model))
        cited = [int(n) for group in _CITE.findall(reply) for n in re.split(r"\s*,\s*", group)]
        used = [hits[n - 1].article_id for n in cited if 1 <= n <= len(hits)]
        sources = tuple(dict.fromkeys(used or [h.article_id for h in hits]))
        return ok(Generation(_CITE.sub("", reply).strip(), sources, model))


@register("generate", "openai")
def _build_llm(spec: ComponentSpec, resources: Resources) -> LLMAnswer:
    """config: model (settings.openai_model), max_tokens (300), history_turns (6)."""
    cfg = spec.config
    opts = typed_options(cfg, {"max_tokens": 300, "history_turns": 6})
    return LLMAnswer(chat_model(resources, cfg), spec.name, spec.version, **opts)
