"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint, through the ``openai`` client.

The one place openai's exceptions are mapped for embeddings: a rejected key or an unknown model is a
``ConfigError`` (retrying will not help, the operator must fix a setting); a connection failure,
timeout, rate limit, server error or an unusable answer is an ``LLMError``. Rows come back
L2-normalised so inner product is cosine similarity, as for every other embedder; some compatible
servers (and text-embedding-3 with ``dimensions``) return vectors that are not unit length.

What the index stores (``config``) is the model and the dimension, never the URL or the key: the
same model behind another gateway gives the same vectors, and secrets must not land in meta.json.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from shadowline.errors import ConfigError, LLMError

__all__ = ["OpenAIEmbedder"]

# OpenAI accepts up to 2048 inputs and 300k tokens per request; 128 short KB chunks stay far below
# the token cap while still cutting a 20k-chunk build to ~160 round trips.
BATCH = 128
DEFAULT_MODEL = "text-embedding-3-small"
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class OpenAIEmbedder:
    """``embed(texts)`` in batches of ``batch`` requests; empty texts are zero rows, never sent.

    ``dim`` defaults to the model's native size for OpenAI's own models and is required otherwise.
    ``send_dimensions`` asks the server to shorten vectors (text-embedding-3 only); by default it is
    sent when ``dim`` differs from the model's native size, since older models and most compatible
    servers reject the parameter.
    """

    version = "1"

    def __init__(self, model: str = DEFAULT_MODEL, dim: int | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, batch: int = BATCH, timeout_s: float = 20.0, max_retries: int = 2,
                 send_dimensions: bool | None = None, http_client: Any = None, settings: Any = None) -> None:
        if base_url is None and api_key is None:
            base_url, api_key = _from_settings(settings)
        if not api_key and not base_url:
            raise ConfigError("embedder 'openai' needs OPENAI_API_KEY or OPENAI_BASE_URL")
        native = _KNOWN_DIMS.get(model)
        dim = int(dim) if dim is not None else native
        if dim is None or dim < 1:
            raise ConfigError(f"embedder 'openai': model {model!r} needs an explicit dim >= 1")
        if batch < 1:
            raise ConfigError(f"embedder 'openai': batch must be >= 1, got {batch}")
        import openai

        self.name, self.model, self.dim, self.batch = "openai", model, dim, int(batch)
        self._send_dimensions = (native is not None and dim != native) if send_dimensions is None else send_dimensions
        # Local OpenAI-compatible servers often need no key, but the client insists on one (as agents/llm.py).
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s,
                                     max_retries=max_retries, http_client=http_client)
        self._config_errors = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        # The client's own response parser raises ValueError on an answer with no data.
        self._errors = (openai.OpenAIError, ValueError)

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, dim={self.dim})"

    @property
    def config(self) -> dict[str, Any]:
        # send_dimensions is part of it: the same model answers other vectors with and without it.
        return {"name": self.name, "model": self.model, "dim": self.dim, "send_dimensions": self._send_dimensions}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # The API rejects empty strings; a zero row matches the hashing embedder's "nothing to say".
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        for start in range(0, len(todo), self.batch):
            rows = todo[start : start + self.batch]
            out[rows] = self._request([texts[i] for i in rows])
        return out

    def _request(self, inputs: list[str]) -> np.ndarray:
        kwargs: dict[str, Any] = {"dimensions": self.dim} if self._send_dimensions else {}
        try:
            resp = self._client.embeddings.create(model=self.model, input=inputs, **kwargs)
        except self._config_errors as exc:
            raise ConfigError(f"embedder 'openai' ({self.model}): {type(exc).__name__}: {exc}"
                              " (check OPENAI_API_KEY, OPENAI_BASE_URL and the model name)") from exc
        except self._errors as exc:
            raise LLMError(f"embedder 'openai' ({self.model}): {type(exc).__name__}: {exc}") from exc
        data = sorted(resp.data or [], key=lambda d: d.index)  # the API does not promise input order
        if [d.index for d in data] != list(range(len(inputs))):
            raise LLMError(f"embedder 'openai' ({self.model}): {len(inputs)} inputs, answer indexes "
                           f"{[d.index for d in data][:8]}")
        try:
            rows = np.asarray([d.embedding for d in data], dtype=np.float32)
        except (TypeError, ValueError) as exc:  # ragged or non-numeric rows
            raise LLMError(f"embedder 'openai' ({self.model}): unusable embeddings: {exc}") from exc
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise LLMError(f"embedder 'openai' ({self.model}): expected {self.dim}-d vectors, got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise LLMError(f"embedder 'openai' ({self.model}): non-finite values in the embeddings")
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.maximum(norms, 1e-12)


def _from_settings(settings: Any) -> tuple[str | None, str | None]:
    """OPENAI_BASE_URL / OPENAI_API_KEY from shadowline's settings, as the chat adapter reads them."""
    if settings is None:
        from shadowline.config import get_settings

        settings = get_settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return settings.openai_base_url, key
