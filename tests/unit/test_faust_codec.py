"""The Faust codec is the same wire format as the shadowline codec, both ways."""

import pytest
from faust.serializers import codecs

from schemas.codec import SingleObjectCodec
from schemas.faust_codec import register_faust_codecs
from shadowline.errors import DecodeError

EVENT = {"event_id": "e1", "conversation_id": "c1", "role": "agent", "text": "Done!", "ts_ms": 5,
         "channel": "chat", "customer_id": None, "locale": None, "metadata": {}}


def test_registered_codec_round_trips_and_matches_the_wire_format():
    names = register_faust_codecs(SingleObjectCodec())
    assert "avro:ConversationEvent" in names and "avro:TurnState" in names
    data = codecs.dumps("avro:ConversationEvent", EVENT)
    assert data == SingleObjectCodec().encode("ConversationEvent", EVENT)
    assert codecs.loads("avro:ConversationEvent", data) == EVENT


def test_decode_errors_surface_as_shadowline_errors():
    register_faust_codecs(SingleObjectCodec())
    with pytest.raises(DecodeError):
        codecs.loads("avro:ConversationEvent", b"junk")
