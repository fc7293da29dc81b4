"""Knowledge-base articles and the loaders that read them from disk.

Three formats, because KBs arrive from different places: a directory of Markdown files with YAML
front matter (what the demo ships and humans edit), a JSON list and JSONL (what exports and the
``kb.articles`` topic dump produce). A bad file fails loudly with its path, since a silently skipped
article is a support answer nobody can find.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from shadowline.errors import ComponentError

__all__ = ["Article", "load_articles", "load_markdown_dir", "load_markdown", "load_json", "load_jsonl",
           "articles_digest"]


@dataclass(frozen=True, slots=True)
class Article:
    article_id: str
    title: str
    topic: str
    body: str
    updated: str = ""

    @classmethod
    def from_mapping(cls, r: Mapping[str, Any], where: str) -> Article:
        """Accept ``article_id`` or ``id``; title and body are required."""
        article_id = r.get("article_id", r.get("id"))
        missing = [k for k, v in (("article_id", article_id), ("title", r.get("title")), ("body", r.get("body")))
                   if v is None or (isinstance(v, str) and not v.strip())]
        if missing:
            raise ComponentError(f"{where}: article is missing {', '.join(missing)}")
        return cls(str(article_id).strip(), str(r["title"]).strip(), str(r.get("topic") or "general").strip(),
                   str(r["body"]), _date_text(r.get("updated", r.get("updated_ms", ""))))

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _date_text(value: Any) -> str:
    # YAML turns `updated: 2024-05-01` into a date object; keep the ISO text.
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def load_markdown(path: Path) -> Article:
    """One article: YAML front matter (id, title, topic, updated) then a Markdown body.

    ``id`` defaults to the file name and ``title`` to the first ``#`` heading, so a plain Markdown
    file still loads; a file with neither a title nor a heading is an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ComponentError(f"{path}: cannot read article: {exc}") from exc
    meta: Mapping[str, Any] = {}
    body = text
    m = _FRONT.match(text)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            raise ComponentError(f"{path}: invalid YAML front matter: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ComponentError(f"{path}: front matter must be a mapping, got {type(loaded).__name__}")
        meta = loaded or {}
        body = text[m.end():]
    elif text.startswith("---"):
        raise ComponentError(f"{path}: front matter opened with '---' is never closed")
    record = dict(meta)
    record.setdefault("id", path.stem)
    if not record.get("title"):
        h1 = _H1.search(body)
        record["title"] = h1.group(1) if h1 else None
    record["body"] = body.strip()
    return Article.from_mapping(record, str(path))


def load_markdown_dir(directory: Path) -> list[Article]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ComponentError(f"{directory}: KB directory does not exist")
    return _unique((load_markdown(p) for p in sorted(directory.glob("*.md"))), str(directory))


def load_json(path: Path) -> list[Article]:
    """A JSON list of article objects."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ComponentError(f"{path}: cannot read articles: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ComponentError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ComponentError(f"{path}: expected a JSON list of articles, got {type(data).__name__}")
    return _unique((_from_obj(obj, f"{path}[{i}]") for i, obj in enumerate(data)), str(path))


def load_jsonl(path: Path) -> list[Article]:
    """One article object per line; blank lines are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ComponentError(f"{path}: cannot read articles: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ComponentError(f"{path}:{n}: invalid JSON: {exc}") from exc
        out.append(_from_obj(obj, f"{path}:{n}"))
    return _unique(out, str(path))


def load_articles(path: Path) -> list[Article]:
    """Dispatch on what ``path`` is: a directory of .md files, or a .md / .json / .jsonl file."""
    path = Path(path)
    if path.is_dir():
        return load_markdown_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".md":
        return [load_markdown(path)]
    if suffix == ".json":
        return load_json(path)
    if suffix == ".jsonl":
        return load_jsonl(path)
    if not path.exists():
        raise ComponentError(f"{path}: no such KB file or directory")
    raise ComponentError(f"{path}: unknown KB format {suffix or '(none)'} (use .md, .json, .jsonl or a directory)")


def articles_digest(articles: Iterable[Article]) -> str:
    """Content hash of a KB, order-independent: tells whether a saved index is stale."""
    h = hashlib.sha256()
    for a in sorted(articles, key=lambda a: a.article_id):
        h.update(json.dumps(a.to_dict(), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _from_obj(obj: Any, where: str) -> Article:
    if not isinstance(obj, dict):
        raise ComponentError(f"{where}: expected an article object, got {type(obj).__name__}")
    return Article.from_mapping(obj, where)


def _unique(articles: Iterable[Article], where: str) -> list[Article]:
    seen: set[str] = set()
    out = []
    for a in articles:
        if a.article_id in seen:
            raise ComponentError(f"{where}: duplicate article id {a.article_id!r}")
        seen.add(a.article_id)
        out.append(a)
    return out
