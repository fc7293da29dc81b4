"""Loads the .avsc files kept in ``schemas/avro`` (current) and ``schemas/avro/history`` (older writers).

Every schema is parsed fully expanded, so a record's fingerprint changes whenever any nested type
changes, and old writer schemas stay resolvable by fingerprint: that is what makes evolution work
without a registry server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro.schema import (
    SchemaParseException,
    fingerprint,
    parse_schema,
    to_parsing_canonical_form,
)

from shadowline.errors import SchemaError

AVRO_DIR = Path(__file__).resolve().parent / "avro"
NAMESPACE = "shadowline"


@dataclass(frozen=True)
class SchemaVersion:
    name: str  # full name, e.g. "shadowline.TurnState"
    parsed: Any  # fastavro parsed, expanded schema
    canonical: str
    fingerprint: bytes  # CRC-64-AVRO, little-endian, as single-object encoding writes it


def full_name(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaError(f"cannot read schema {path.name}: {exc}") from exc


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _inline(schema: Any, raw: dict[str, dict[str, Any]], defined: set[str], namespace: str = NAMESPACE) -> Any:
    """Replace references to named types by their definitions, first use only (Avro allows one
    definition per name). The result is self-contained, so its fingerprint covers every nested type."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        name = schema if "." in schema else f"{namespace}.{schema}"
        if name in defined:
            return name
        if name not in raw:
            raise SchemaError(f"unknown type {name}")
        return _inline(raw[name], raw, defined, namespace)
    if isinstance(schema, list):
        return [_inline(s, raw, defined, namespace) for s in schema]
    kind = schema.get("type")
    if kind in ("record", "enum", "fixed"):
        ns = schema.get("namespace", namespace)
        name = schema["name"] if "." in schema["name"] else f"{ns}.{schema['name']}"
        if name in defined:
            return name
        defined.add(name)
        out = dict(schema)
        if kind == "record":
            out["fields"] = [dict(f, type=_inline(f["type"], raw, defined, ns)) for f in schema["fields"]]
        return out
    if kind == "array":
        return dict(schema, items=_inline(schema["items"], raw, defined, namespace))
    if kind == "map":
        return dict(schema, values=_inline(schema["values"], raw, defined, namespace))
    return schema


def _version(name: str, schema: dict[str, Any], raw: dict[str, dict[str, Any]]) -> SchemaVersion:
    try:
        parsed = parse_schema(_inline(schema, raw, set()))
    except SchemaParseException as exc:
        raise SchemaError(f"invalid schema {name}: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little")
    return SchemaVersion(name=name, parsed=parsed, canonical=canonical, fingerprint=fp)


class Catalog:
    """Current schema per record name plus every known writer schema by fingerprint."""

    def __init__(self, directory: Path = AVRO_DIR) -> None:
        raw = {full_name(p.stem): _read(p) for p in sorted(directory.glob("*.avsc"))}
        if not raw:
            raise SchemaError(f"no .avsc files in {directory}")
        self._current = {n: _version(n, s, raw) for n, s in raw.items() if s.get("type") == "record"}
        self._by_fp = {v.fingerprint: v for v in self._current.values()}
        for path in sorted((directory / "history").glob("*.avsc")):
            old = _read(path)
            name = full_name(old["name"] if "." in old["name"] else f"{old.get('namespace', NAMESPACE)}.{old['name']}")
            version = _version(name, old, raw)
            self._by_fp.setdefault(version.fingerprint, version)

    def current(self, name: str) -> SchemaVersion:
        try:
            return self._current[full_name(name)]
        except KeyError:
            raise SchemaError(f"no schema named {name}") from None

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fp.get(fp)

    def names(self) -> list[str]:
        return sorted(self._current)

    def versions(self, name: str) -> list[SchemaVersion]:
        name = full_name(name)
        return [v for v in self._by_fp.values() if v.name == name]


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return Catalog()
