"""Confluent Schema Registry wire format (magic 0 + 4-byte schema id + Avro body).

Schemas are registered under the TopicNameStrategy subject ``<topic>-value`` through confluent-kafka's
registry client; bodies are still written and read with fastavro.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from fastavro.schema import parse_schema

from schemas.catalog import Catalog, SchemaVersion, default_catalog, full_name
from schemas.codec import read_body, write_body
from shadowline.errors import DecodeError, TransportError

MAGIC = b"\x00"


class ConfluentCodec:
    def __init__(self, url: str, catalog: Catalog | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.catalog = catalog or default_catalog()
        self.client = SchemaRegistryClient.new_client({"url": url})  # "mock://" gives the in-memory registry
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, SchemaVersion] = {}

    def _register(self, topic: str, version: SchemaVersion) -> int:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        key = (topic, version.name)
        if key not in self._ids:
            try:
                schema_id = self.client.register_schema(f"{topic}-value", Schema(version.canonical, "AVRO"))
            except SchemaRegistryError as exc:
                raise TransportError(f"schema registry refused {version.name}: {exc}") from exc
            self._ids[key] = schema_id
            self._by_id[schema_id] = version
        return self._ids[key]

    def _writer(self, schema_id: int) -> SchemaVersion:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if schema_id not in self._by_id:
            try:
                schema = self.client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                raise DecodeError("unknown_schema", f"registry has no schema id {schema_id}") from exc
            raw = json.loads(schema.schema_str)
            name = full_name(raw["name"] if "." in raw["name"] else f"{raw.get('namespace', '')}.{raw['name']}")
            parsed = parse_schema(raw)
            self._by_id[schema_id] = SchemaVersion(name, parsed, schema.schema_str, b"id%d" % schema_id)
        return self._by_id[schema_id]

    def encode(self, name: str, record: dict[str, Any], topic: str = "") -> bytes:
        version = self.catalog.current(name)
        schema_id = self._register(topic or version.name, version)
        return write_body(version, record, MAGIC + struct.pack(">I", schema_id))

    def decode(self, data: bytes, name: str, topic: str = "") -> dict[str, Any]:
        if len(data) < 5 or data[:1] != MAGIC:
            raise DecodeError("malformed", "not in Confluent wire format (no magic byte 0)")
        writer = self._writer(struct.unpack(">I", data[1:5])[0])
        expected = full_name(name)
        if writer.name != expected:
            raise DecodeError("wrong_schema", f"expected {expected}, got {writer.name}")
        return read_body(data, 5, writer, self.catalog.current(expected))
