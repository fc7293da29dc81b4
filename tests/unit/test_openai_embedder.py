"""OpenAI-compatible embeddings through the real openai client over an httpx MockTransport: no network.

The handler plays the server: it decodes the request the client really sends and answers in the
wire format the client asked for (base64 float32 by default), so batching, ordering, normalisation
and error mapping are tested against the client's actual behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from kb_index.embedder import Embedder, get_embedder
from kb_index.openai_embedder import OpenAIEmbedder
from shadowline.config import Settings
from shadowline.errors import ConfigError, LLMError, ShadowlineError

BASE_URL = "http://embeddings.test/v1"


def vector_for(text: str, dim: int) -> np.ndarray:
    """A deterministic, deliberately non-unit vector per text (servers need not normalise)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little"))
    return (rng.normal(size=dim) * 3.0).astype(np.float32)


class FakeServer:
    """Answers POST /embeddings like an OpenAI-compatible server; records every request body."""

    def __init__(self, native_dim: int = 8, shuffle: bool = True) -> None:
        self.native_dim = native_dim
        self.shuffle = shuffle
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings" and request.method == "POST"
        body = json.loads(request.content)
        self.requests.append(body)
        dim = body.get("dimensions", self.native_dim)
        data = []
        for i, text in enumerate(body["input"]):
            assert text, "empty strings must never be sent"
            vec = vector_for(text, self.native_dim)[:dim]
            payload = (base64.b64encode(vec.tobytes()).decode() if body.get("encoding_format") == "base64"
                       else vec.tolist())
            data.append({"object": "embedding", "index": i, "embedding": payload})
        if self.shuffle:
            data.reverse()  # the client must restore input order from "index"
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"],
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})


def embedder_with(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> OpenAIEmbedder:
    kw.setdefault("model", "local-embed")
    kw.setdefault("dim", 8)
    return OpenAIEmbedder(base_url=BASE_URL, api_key="sk-test", max_retries=0,
                          http_client=httpx.Client(transport=httpx.MockTransport(handler)), **kw)


def test_batches_keep_input_order_and_rows_are_unit_norm() -> None:
    server = FakeServer()
    emb = embedder_with(server, batch=3)
    assert isinstance(emb, Embedder)
    texts = [f"question number {i}" for i in range(7)]
    vecs = emb.embed(texts)
    assert vecs.dtype == np.float32 and vecs.shape == (7, 8)
    assert [len(r["input"]) for r in server.requests] == [3, 3, 1]
    assert all(r["model"] == "local-embed" and "dimensions" not in r for r in server.requests)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    for text, row in zip(texts, vecs):  # order restored although the server answered reversed
        want = vector_for(text, 8)
        np.testing.assert_allclose(row, want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)


def test_empty_texts_are_zero_rows_and_never_sent() -> None:
    server = FakeServer()
    emb = embedder_with(server)
    vecs = emb.embed(["", "refund please", "   "])
    assert not vecs[0].any() and not vecs[2].any() and abs(float(np.linalg.norm(vecs[1])) - 1.0) < 1e-6
    assert [r["input"] for r in server.requests] == [["refund please"]]
    assert emb.embed([]).shape == (0, 8) and len(server.requests) == 1


def test_dimensions_sent_only_when_shortening_a_text_embedding_3_model() -> None:
    server = FakeServer(native_dim=1536)
    short = embedder_with(server, model="text-embedding-3-small", dim=256)
    assert short.embed(["hello there"]).shape == (1, 256)
    assert server.requests[-1]["dimensions"] == 256
    native = embedder_with(server, model="text-embedding-3-small", dim=None)
    assert native.dim == 1536 and native.embed(["hello there"]).shape == (1, 1536)
    assert "dimensions" not in server.requests[-1]
    assert short.config == {"name": "openai", "model": "text-embedding-3-small", "dim": 256, "send_dimensions": True}


def test_config_rebuilds_the_same_embedder_and_holds_no_secret() -> None:
    emb = embedder_with(FakeServer())
    assert "sk-test" not in json.dumps(emb.config) and BASE_URL not in json.dumps(emb.config)
    settings = Settings(OPENAI_BASE_URL=BASE_URL, OPENAI_API_KEY="sk-from-env")
    again = get_embedder(**emb.config, settings=settings)  # what KbIndex.load does with meta.json
    assert isinstance(again, OpenAIEmbedder) and again.config == emb.config


def test_settings_are_read_like_the_chat_adapter() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY or OPENAI_BASE_URL"):
        OpenAIEmbedder("local-embed", 8, settings=Settings(OPENAI_BASE_URL=None, OPENAI_API_KEY=None))
    with pytest.raises(ConfigError, match="needs an explicit dim"):
        OpenAIEmbedder("some-local-model", base_url=BASE_URL)
    with pytest.raises(ConfigError, match="bad options for embedder 'openai'"):
        get_embedder("openai", model="m", dim=8, base_url=BASE_URL, colour="blue")


@pytest.mark.parametrize("status, error, match", [
    (401, ConfigError, "AuthenticationError.*check OPENAI_API_KEY"),
    (404, ConfigError, "NotFoundError"),
    (429, LLMError, "RateLimitError"),
    (500, LLMError, "InternalServerError"),
    (400, LLMError, "BadRequestError"),
])
def test_http_errors_are_mapped(status: int, error: type[ShadowlineError], match: str) -> None:
    emb = embedder_with(lambda req: httpx.Response(status, json={"error": {"message": "nope", "type": "x"}}))
    with pytest.raises(error, match=match) as err:
        emb.embed(["a question"])
    assert isinstance(err.value, ShadowlineError) and err.value.__cause__ is not None


def test_connection_failure_and_bad_answers_are_llm_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LLMError, match="APIConnectionError"):
        embedder_with(refuse).embed(["a question"])

    def answer(data: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
        return lambda req: httpx.Response(200, json={"object": "list", "data": data, "model": "m",
                                                     "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    wrong_dim = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
    with pytest.raises(LLMError, match="expected 8-d vectors"):
        embedder_with(answer(wrong_dim)).embed(["a question"])
    missing_row = [{"object": "embedding", "index": 0, "embedding": [0.1] * 8}]
    with pytest.raises(LLMError, match="2 inputs, answer indexes"):
        embedder_with(answer(missing_row)).embed(["one", "two"])
    with pytest.raises(LLMError):
        embedder_with(answer([])).embed(["one"])  # the client's own parser refuses an empty answer
    nan_row = [{"object": "embedding", "index": 0, "embedding": [float("nan")] * 8}]  # JSON NaN, as Python writes it
    body = json.dumps({"object": "list", "data": nan_row, "model": "m"}).encode()
    with pytest.raises(LLMError, match="non-finite"):
        embedder_with(lambda req: httpx.Response(200, content=body, headers={"content-type": "application/json"})
                      ).embed(["one"])
