"""Heading-aware chunking of Markdown articles, and the sentence splitter everyone shares.

Chunks follow the article's own structure (one ``##`` section rarely mixes two answers), then are
packed sentence by sentence up to ~``max_words`` with a sentence overlap, so no chunk cuts a sentence
in half: the extractive answer and the guardrail both work in whole sentences. Each chunk's text
starts with a ``# Title - Heading`` line so it is self-describing for embeddings and LLM prompts;
being a Markdown heading, ``split_sentences`` skips it, and ``split_header`` takes it off.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, NamedTuple

from kb_index.articles import Article

__all__ = ["Block", "Chunk", "Sentence", "chunk_article", "chunk_articles", "chunk_sentences", "markdown_blocks",
           "split_header", "split_sentences"]

HEADER_SEP = " - "


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_id: str  # "<article_id>#<n>"
    article_id: str
    title: str
    heading: str
    text: str  # "# Title - Heading", blank line, then the section's sentences
    topic: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, r: Mapping[str, Any]) -> Chunk:
        return cls(r["chunk_id"], r["article_id"], r["title"], r["heading"], r["text"], r.get("topic", ""))


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPH = re.compile(r"(\*\*|__|`)")
# A sentence ends at . ! ? (optionally closed by quotes or brackets) followed by space and a capital,
# digit or quote; "e.g. the" and "5.5 days" stay whole.
_SENT_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]])|(?<=[.!?][\"')\]][\"')\]]))\s+(?=[A-Z0-9\"'(\[])")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|etc|vs|approx|incl|Mr|Mrs|Ms|Dr|No)\.$", re.I)


class Block(NamedTuple):
    text: str
    item: bool  # a list item: rendered as "- text" and always its own sentence group


def markdown_blocks(body: str) -> list[tuple[str, list[Block]]]:
    """(heading, blocks) per section: paragraphs and list items, inline markup removed."""
    sections: list[tuple[str, list[Block]]] = [("", [])]
    para: list[str] = []
    item = False

    def flush() -> None:
        if para:
            sections[-1][1].append(Block(" ".join(para), item))
            para.clear()

    in_fence = False
    for raw in body.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            flush()
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            sections.append((_clean(m.group(2)), []))
        elif not line.strip():
            flush()
        elif set(line.strip()) <= set("|-: "):
            continue  # table rule or horizontal rule
        elif _BULLET.match(line):
            flush()
            item = True
            para.append(_clean(_BULLET.sub("", line, count=1)))
        else:
            if not para:
                item = False
            para.append(_clean(line.lstrip("> ")))
    flush()
    return [(h, bs) for h, bs in sections if bs]


def _clean(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _EMPH.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of plain or Markdown text: newlines and list items end one, so do . ! ?"""
    out: list[str] = []
    for _, blocks in markdown_blocks(text):
        for block in blocks:
            out.extend(_split_para(block.text))
    return out


def _split_para(para: str) -> list[str]:
    pieces = _SENT_END.split(para)
    merged: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        if merged and _ABBREV.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def split_header(text: str) -> tuple[str, str]:
    """(header, body) of a chunk's text: the header is the leading ``# Title - Heading`` line."""
    if text.startswith("# "):
        head, _, body = text.partition("\n")
        return head[2:].strip(), body.lstrip("\n")
    return "", text


class Sentence(NamedTuple):
    """A chunk sentence; a list item keeps its ``lead`` (the "...:" line above the list, else the heading)."""

    text: str
    lead: str = ""

    @property
    def full(self) -> str:
        """The sentence as it reads on its own: "What we don't accept: PayPal, Venmo, ..." """
        if not self.lead:
            return self.text
        return f"{self.lead} {self.text}" if self.lead.endswith(("?", "!", ".")) else f"{self.lead}: {self.text}"


def chunk_sentences(text: str, title: str = "") -> list[Sentence]:
    """Sentences of a chunk's text with list items tied to their lead-in, so they still make sense alone."""
    header, body = split_header(text)
    heading = header[len(title) + len(HEADER_SEP):] if title and header.startswith(title + HEADER_SEP) else (
        "" if header == title else header)
    out: list[Sentence] = []
    for _, blocks in markdown_blocks(body):
        pending = ""
        for block in blocks:
            sentences = _split_para(block.text)
            if block.item:
                out.extend(Sentence(s, pending or heading) for s in sentences)
            else:
                out.extend(Sentence(s) for s in sentences)
                pending = sentences[-1].rstrip(":") if sentences and sentences[-1].endswith(":") else ""
    return out


def chunk_article(article: Article, max_words: int = 120, overlap_words: int = 30) -> list[Chunk]:
    """Split by headings, then pack whole sentences up to ~max_words, repeating ~overlap_words."""
    if max_words < 10 or not 0 <= overlap_words < max_words:
        raise ValueError(f"need max_words >= 10 and 0 <= overlap_words < max_words, got {max_words}/{overlap_words}")
    chunks: list[Chunk] = []
    for heading, blocks in markdown_blocks(article.body):
        if heading.lower() == article.title.lower():
            heading = ""  # an H1 repeating the title adds nothing
        units = [_Unit(piece, n, b.item) for n, b in enumerate(blocks) for s in _split_para(b.text)
                 for piece in _cut(s, max_words)]
        header = "# " + article.title + (HEADER_SEP + heading if heading else "")
        for group in _pack(units, max_words, overlap_words):
            chunks.append(Chunk(f"{article.article_id}#{len(chunks)}", article.article_id, article.title,
                                heading, header + "\n\n" + _render(group), article.topic))
    return chunks


def chunk_articles(articles: Iterable[Article], max_words: int = 120, overlap_words: int = 30) -> list[Chunk]:
    return [c for a in articles for c in chunk_article(a, max_words, overlap_words)]


class _Unit(NamedTuple):
    text: str
    block: int
    item: bool


def _cut(sentence: str, max_words: int) -> list[str]:
    # A sentence longer than a chunk is cut by words, as a last resort.
    words = sentence.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def _render(units: list[_Unit]) -> str:
    """Markdown again, so split_sentences on the chunk finds the same sentences."""
    out: list[str] = []
    for i, u in enumerate(units):
        if i and u.block == units[i - 1].block:
            out[-1] += " " + u.text
        else:
            sep = "\n" if i and u.item and units[i - 1].item else "\n\n"
            out.append((sep if i else "") + ("- " if u.item else "") + u.text)
    return "".join(out)


def _pack(units: list[_Unit], max_words: int, overlap_words: int) -> list[list[_Unit]]:
    size = [len(u.text.split()) for u in units]
    groups: list[list[_Unit]] = []
    start = 0
    while start < len(units):
        end, count = start, 0
        while end < len(units) and (end == start or count + size[end] <= max_words):
            count += size[end]
            end += 1
        groups.append(units[start:end])
        if end >= len(units):
            break
        # Step back over trailing sentences worth <= overlap_words, but always advance.
        back, words = end, 0
        while back - 1 > start and words + size[back - 1] <= overlap_words:
            back -= 1
            words += size[back]
        start = back
    return groups
