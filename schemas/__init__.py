"""Avro contracts for every shadowline topic, and the codecs that read and write them."""

from schemas.catalog import Catalog, default_catalog
from schemas.codec import Codec, SingleObjectCodec, make_codec

__all__ = ["Catalog", "Codec", "SingleObjectCodec", "default_catalog", "make_codec"]
