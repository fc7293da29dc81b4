"""`shadowline kb`: build and inspect KB index versions, and publish article changes to running workers.

``build`` saves a new immutable version under ``settings.home/kb`` and switches ``CURRENT``, which
running workers pick up hot; ``publish`` and ``delete`` put article changes on ``kb.articles``, which
workers apply within a second without a rebuild (see docs/kb.md).
"""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="The knowledge base: build versions, search, stats, publish live changes.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)

SNIPPET_CHARS = 160


class KbFormat(str, Enum):
    auto = "auto"
    markdown = "markdown"
    json = "json"
    jsonl = "jsonl"
    dstc11 = "dstc11"


FORMAT_HELP = "auto (by path: .md directory, .md, .json, .jsonl), markdown, json, jsonl or dstc11 (knowledge.json)."


def load_source(path: Path, fmt: KbFormat) -> list[Any]:
    """The articles of a KB source in ``fmt``."""
    from kb_index import articles

    if fmt is KbFormat.dstc11:
        from kb_index.dstc11 import load_knowledge

        return load_knowledge(path)
    if fmt is KbFormat.markdown:
        return articles.load_markdown_dir(path) if path.is_dir() else [articles.load_markdown(path)]
    if fmt is KbFormat.json:
        return articles.load_json(path)
    if fmt is KbFormat.jsonl:
        return articles.load_jsonl(path)
    return articles.load_articles(path)


def _root() -> Path:
    from shadowline.config import get_settings

    return Path(get_settings().home) / "kb"


def _load_current(version: str | None = None) -> Any:
    from kb_index.index import KbIndex, current_version
    from shadowline.errors import ConfigError

    root = _root()
    if version is None and current_version(root) is None:
        raise ConfigError(f"no KB index under {root}; build one with `shadowline kb build`")
    return KbIndex.load(root, version)


@app.command()
def build(
    source: Optional[Path] = typer.Option(None, "--source", help="KB to index (default: settings.kb_dir)."),
    fmt: KbFormat = typer.Option(KbFormat.auto, "--format", help=FORMAT_HELP),
    embedder: str = typer.Option("hashing", "--embedder", help="Embedder name (hashing, minilm)."),
    max_words: int = typer.Option(120, "--max-words", min=10, help="Words per chunk, about."),
    overlap_words: int = typer.Option(30, "--overlap-words", min=0, help="Words repeated between chunks, about."),
) -> None:
    """Build a new index version from a KB source, save it and switch CURRENT to it."""
    from kb_index.embedder import get_embedder
    from kb_index.index import KbIndex
    from shadowline.config import get_settings
    from shadowline.errors import ConfigError

    if overlap_words >= max_words:
        raise ConfigError(f"--overlap-words ({overlap_words}) must be below --max-words ({max_words})")
    started = time.perf_counter()
    path = Path(source or get_settings().kb_dir)
    articles = load_source(path, fmt)
    index = KbIndex.build(articles, get_embedder(embedder), max_words=max_words, overlap_words=overlap_words)
    # Marks the version as built on purpose: workers serve it as is instead of rebuilding from kb_dir.
    index.meta["source"] = {"path": str(path.resolve()), "format": fmt.value}
    version = index.save(_root())
    st = index.stats()
    console.print(f"version {version}: {st['articles']} articles, {st['chunks']} chunks, {st['embedder']} "
                  f"({st['dim']}-d), {time.perf_counter() - started:.2f} s; CURRENT -> {escape(str(_root() / version))}",
                  highlight=False)


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", "--k", min=1, help="How many hits."),
    version: Optional[str] = typer.Option(None, "--version", help="A saved version (default: CURRENT)."),
) -> None:
    """Search the CURRENT (or a given) index version: ranked hits with score, article, title, snippet."""
    from kb_index.chunker import split_header

    index = _load_current(version)
    table = Table("#", "score", "article", "title", "snippet", title=f"{index.version}: {escape(query)}")
    for rank, hit in enumerate(index.search(query, k), 1):
        text = " ".join(split_header(hit.text)[1].split())
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 3].rstrip() + "..."
        table.add_row(str(rank), f"{hit.score:.3f}", escape(hit.article_id), escape(hit.title), escape(snippet))
    console.print(table)


@app.command()
def stats() -> None:
    """The CURRENT version's stats, and every version on disk."""
    index = _load_current()
    st = index.stats()
    source = index.meta.get("source") or {}
    console.print(f"CURRENT {st['version']}: {st['articles']} articles, {st['chunks']} chunks, {st['embedder']} "
                  f"({st['dim']}-d), {st.get('index', 'flat')} index, built {st['built_at']} in {st['build_s']:.2f} s"
                  + (f" from {escape(source['path'])} ({source['format']})" if source else " (kept in step with kb_dir)"),
                  highlight=False)
    console.print("topics: " + ", ".join(f"{t} {n}" for t, n in st["topics"].items()), highlight=False)
    table = Table("", "version", "articles", "chunks", "embedder", "built_at")
    for version, meta in _versions(_root()):
        table.add_row("*" if version == st["version"] else "", version, str(meta.get("articles", "?")),
                      str(meta.get("chunks", "?")), str((meta.get("embedder") or {}).get("name", "?")),
                      str(meta.get("built_at", "?")))
    console.print(table)


def _versions(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(version, meta) of every saved version, oldest first; an unreadable meta.json shows as {}."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        out.append((d.name, meta))
    return out


@app.command()
def publish(
    source: Path = typer.Option(..., "--source", help="Articles to upsert (same formats as build)."),
    fmt: KbFormat = typer.Option(KbFormat.auto, "--format", help=FORMAT_HELP),
) -> None:
    """Publish article upserts to kb.articles: running workers serve them within a second."""
    from kb_index.live import ArticleChange
    from streams.messages import now_ms

    articles = load_source(source, fmt)
    at = now_ms()
    topic = publish_changes([ArticleChange.upsert(a, at) for a in articles])
    console.print(f"published {len(articles)} upsert(s) to {topic}", highlight=False)


@app.command()
def delete(article_id: str = typer.Argument(..., help="The article to remove.")) -> None:
    """Publish an article delete to kb.articles: running workers stop serving it within a second."""
    from kb_index.live import ArticleChange
    from shadowline.errors import ConfigError
    from streams.messages import now_ms

    if not article_id.strip():
        raise ConfigError("ARTICLE_ID must not be empty")
    topic = publish_changes([ArticleChange(article_id.strip(), "delete", now_ms())])
    console.print(f"published a delete of {escape(article_id.strip())} to {topic}", highlight=False)


def publish_changes(changes: list[Any]) -> str:
    """KbArticle records keyed by article id (the topic is compacted by key). A delete stays a record
    rather than a null tombstone: the base index may still hold the article, and a tombstone is dropped
    from the log after delete.retention.ms, after which a restarted worker would serve it again."""
    from schemas.codec import make_codec
    from schemas.topics import Topics
    from shadowline.config import get_settings
    from streams.admin import ensure_topics
    from streams.publisher import Publisher

    s = get_settings()
    topics = Topics(s.topic_prefix)
    # Created compacted if missing; a broker's auto-created topic would expire old changes.
    ensure_topics(s.kafka_bootstrap, [spec for spec in topics.specs() if spec.name == topics.kb_articles], s.partitions)
    with Publisher(s.kafka_bootstrap, make_codec(s.schema_registry_url), topics) as pub:
        for change in changes:
            pub.send(topics.kb_articles, "KbArticle", change.to_record(), change.article_id)
    return topics.kb_articles
