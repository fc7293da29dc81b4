"""One root exception for shadowline.

Third-party errors (confluent-kafka, redis, faiss, openai, fastavro) are caught at the adapter that
calls the library and re-raised as one of these with ``raise X(...) from exc``, so callers only ever
handle ``ShadowlineError``.
"""

from __future__ import annotations


class ShadowlineError(Exception):
    """Root of every error shadowline raises on purpose."""


class ConfigError(ShadowlineError):
    """A setting, a config file or a CLI argument is invalid."""


class SchemaError(ShadowlineError):
    """A schema file is missing or invalid, or a record does not fit its schema."""


class DecodeError(ShadowlineError):
    """A payload could not be turned into a record; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TransportError(ShadowlineError):
    """Kafka could not be reached or refused a request."""


class PublishError(TransportError):
    """A produced message was not acknowledged by the broker."""


class StoreError(ShadowlineError):
    """Redis could not be reached or refused a request."""


class ComponentError(ShadowlineError):
    """A component failed to load or to process an input."""


class LLMError(ComponentError):
    """An OpenAI-compatible endpoint failed or answered something unusable."""


class InfraError(ShadowlineError):
    """Local Kafka or Redis could not be installed, started or stopped."""
