"""Avro codecs on fastavro.

Default: Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body), so no
registry server is needed; the reader finds the writer schema by fingerprint in the catalog and
resolves it against the current schema. With ``SCHEMA_REGISTRY_URL`` set, the Confluent wire format
is used instead (see ``schemas.confluent``).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer

from schemas.catalog import Catalog, SchemaVersion, default_catalog, full_name
from shadowline.errors import DecodeError, SchemaError

MARKER = b"\xc3\x01"
HEADER_LEN = 10


class Codec(Protocol):
    def encode(self, name: str, record: dict[str, Any], topic: str = "") -> bytes: ...

    def decode(self, data: bytes, name: str, topic: str = "") -> dict[str, Any]: ...


def read_body(data: bytes, offset: int, writer: SchemaVersion, reader: SchemaVersion) -> dict[str, Any]:
    """Decode an Avro body, mapping fastavro's assorted exceptions to DecodeError reasons."""
    bio = BytesIO(data)
    bio.seek(offset)
    try:
        if writer.fingerprint == reader.fingerprint:
            record = schemaless_reader(bio, writer.parsed, None)
        else:
            record = schemaless_reader(bio, writer.parsed, reader.parsed)
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", f"{reader.name}: {exc.reason}") from exc
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, SchemaResolutionError...
        raise DecodeError("malformed", f"{reader.name}: {type(exc).__name__}: {exc}") from exc
    if bio.tell() != len(data):
        raise DecodeError("malformed", f"{reader.name}: {len(data) - bio.tell()} trailing bytes")
    return record


def write_body(version: SchemaVersion, record: dict[str, Any], prefix: bytes) -> bytes:
    bio = BytesIO()
    bio.write(prefix)
    try:
        schemaless_writer(bio, version.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaError(f"record does not fit {version.name}: {exc}") from exc
    return bio.getvalue()


class SingleObjectCodec:
    """Avro single-object encoding with writer schemas resolved from the catalog."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or default_catalog()

    def encode(self, name: str, record: dict[str, Any], topic: str = "") -> bytes:
        version = self.catalog.current(name)
        return write_body(version, record, MARKER + version.fingerprint)

    def decode(self, data: bytes, name: str, topic: str = "") -> dict[str, Any]:
        if len(data) < HEADER_LEN or data[:2] != MARKER:
            raise DecodeError("malformed", "not Avro single-object encoded (no C3 01 marker)")
        writer = self.catalog.by_fingerprint(bytes(data[2:HEADER_LEN]))
        if writer is None:
            raise DecodeError("unknown_schema", f"fingerprint {bytes(data[2:HEADER_LEN]).hex()} is in no known schema")
        expected = full_name(name)
        if writer.name != expected:
            raise DecodeError("wrong_schema", f"expected {expected}, got {writer.name}")
        return read_body(data, HEADER_LEN, writer, self.catalog.current(expected))


def make_codec(registry_url: str | None = None, catalog: Catalog | None = None) -> Codec:
    """Single-object encoding unless a schema registry is configured."""
    if registry_url:
        from schemas.confluent import ConfluentCodec

        return ConfluentCodec(registry_url, catalog)
    return SingleObjectCodec(catalog)
