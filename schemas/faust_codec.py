"""A Faust codec over shadowline's Avro codec, for Faust apps that want records rather than bytes.

Register once, then use ``value_serializer="avro:TurnState"`` on a topic. shadowline's own stage agents
read raw bytes and decode in the processor instead, because a decode failure must become a dead letter
with the original bytes, not an exception inside Faust's consumer.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from schemas.catalog import default_catalog
from schemas.codec import Codec, make_codec


class AvroCodec(codecs.Codec):
    def __init__(self, record: str, codec: Codec | None = None, **kwargs: Any) -> None:
        super().__init__(record=record, codec=codec, **kwargs)
        self.record = record
        self.codec = codec or make_codec()

    def _dumps(self, obj: Any) -> bytes:
        return self.codec.encode(self.record, obj)

    def _loads(self, s: bytes) -> Any:
        return self.codec.decode(s, self.record)


def register_faust_codecs(codec: Codec | None = None) -> list[str]:
    """Register ``avro:<Record>`` for every record in the catalog; returns the names."""
    codec = codec or make_codec()
    names = []
    for full in default_catalog().names():
        name = f"avro:{full.rsplit('.', 1)[-1]}"
        codecs.register(name, AvroCodec(full.rsplit(".", 1)[-1], codec))
        names.append(name)
    return names
