"""Codec: single-object encoding, schema evolution by fingerprint, decode failures as reasons."""

import json
from io import BytesIO

import pytest
from fastavro import schemaless_writer

from schemas.catalog import AVRO_DIR, Catalog
from schemas.codec import MARKER, SingleObjectCodec, make_codec
from shadowline.errors import DecodeError, SchemaError

EVENT = {
    "event_id": "e1", "conversation_id": "c1", "role": "customer", "text": "Where is my order?",
    "ts_ms": 1_700_000_000_000, "channel": "chat", "customer_id": None, "locale": "en", "metadata": {"src": "web"},
}


@pytest.fixture(scope="module")
def codec():
    return SingleObjectCodec(Catalog())


def test_round_trip_and_header(codec):
    data = codec.encode("ConversationEvent", EVENT)
    assert data[:2] == MARKER
    assert data[2:10] == codec.catalog.current("ConversationEvent").fingerprint
    assert codec.decode(data, "ConversationEvent") == EVENT


def test_fingerprint_is_crc64_avro_of_canonical_form(codec):
    # The Avro spec's test vector: the canonical form "int" has fingerprint 0x7275d51a3f395c8f.
    from fastavro.schema import fingerprint

    assert fingerprint('"int"', "CRC-64-AVRO") == "8f5c393f1ad57572"
    version = codec.catalog.current("ConversationEvent")
    assert int(fingerprint(version.canonical, "CRC-64-AVRO"), 16).to_bytes(8, "little") == version.fingerprint


def test_old_writer_schema_is_resolved_by_fingerprint(codec):
    """Version 1 producers (no locale, no metadata) stay readable; new fields take their defaults."""
    v1_raw = json.loads((AVRO_DIR / "history" / "ConversationEvent.v1.avsc").read_text())
    versions = codec.catalog.versions("ConversationEvent")
    old = next(v for v in versions if v.fingerprint != codec.catalog.current("ConversationEvent").fingerprint)
    bio = BytesIO()
    bio.write(MARKER + old.fingerprint)
    old_record = {k: EVENT[k] for k in ("event_id", "conversation_id", "role", "text", "ts_ms", "channel", "customer_id")}
    schemaless_writer(bio, old.parsed, old_record)
    decoded = codec.decode(bio.getvalue(), "ConversationEvent")
    assert decoded == old_record | {"locale": None, "metadata": {}}
    assert v1_raw["name"] == "ConversationEvent" and "locale" not in {f["name"] for f in v1_raw["fields"]}


def test_nested_type_change_changes_the_outer_fingerprint(tmp_path):
    for p in AVRO_DIR.glob("*.avsc"):
        (tmp_path / p.name).write_text(p.read_text())
    hit = json.loads((tmp_path / "Hit.avsc").read_text())
    hit["fields"].append({"name": "extra", "type": "int", "default": 0})
    (tmp_path / "Hit.avsc").write_text(json.dumps(hit))
    assert Catalog(tmp_path).current("TurnState").fingerprint != Catalog().current("TurnState").fingerprint


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "malformed"),
        (b"{\"json\": true}", "malformed"),
        (MARKER + b"\x01" * 8 + b"\x00", "unknown_schema"),
    ],
)
def test_bad_payloads_have_reasons(codec, payload, reason):
    with pytest.raises(DecodeError) as info:
        codec.decode(payload, "ConversationEvent")
    assert info.value.reason == reason


def test_truncated_body_is_malformed(codec):
    data = codec.encode("ConversationEvent", EVENT)
    with pytest.raises(DecodeError) as info:
        codec.decode(data[:-5], "ConversationEvent")
    assert info.value.reason == "malformed"


def test_trailing_garbage_is_malformed(codec):
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode("ConversationEvent", EVENT) + b"xx", "ConversationEvent")
    assert info.value.reason == "malformed"


def test_invalid_utf8_is_its_own_reason(codec):
    good = codec.encode("ConversationEvent", EVENT | {"text": "ab"})
    # The text field is "ab" (zigzag length 4, then 61 62): replace it with an invalid UTF-8 pair.
    bad = good.replace(b"\x04ab", b"\x04\xff\xfe", 1)
    with pytest.raises(DecodeError) as info:
        codec.decode(bad, "ConversationEvent")
    assert info.value.reason == "invalid_utf8"


def test_wrong_record_type_is_rejected(codec):
    data = codec.encode("KbArticle", {"article_id": "a", "op": "delete", "title": None, "topic": None, "body": None, "updated_ms": 1})
    with pytest.raises(DecodeError) as info:
        codec.decode(data, "ConversationEvent")
    assert info.value.reason == "wrong_schema"


def test_record_that_does_not_fit_raises_schema_error(codec):
    with pytest.raises(SchemaError):
        codec.encode("ConversationEvent", {k: v for k, v in EVENT.items() if k != "text"})


def test_every_topic_record_has_a_schema():
    from schemas.topics import Topics

    catalog = Catalog()
    for spec in Topics().specs():
        catalog.current(spec.record)


def test_confluent_wire_format_with_the_libraries_mock_registry():
    codec = make_codec("mock://shadowline-test")
    data = codec.encode("ConversationEvent", EVENT, "conv.events")
    assert data[0] == 0 and len(data) > 5
    assert codec.decode(data, "ConversationEvent", "conv.events") == EVENT
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00\x00\x00\x99\x99rest", "ConversationEvent", "conv.events")
    assert info.value.reason == "unknown_schema"
