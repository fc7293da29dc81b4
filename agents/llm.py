"""The one adapter to OpenAI-compatible chat endpoints. openai's exceptions are mapped here only."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Protocol

from shadowline.errors import ConfigError, LLMError


class ChatModel(Protocol):
    model: str

    def complete(self, system: str, user: str, *, max_tokens: int = 400, json_mode: bool = False) -> str: ...


class OpenAIChat:
    """Chat completions through the ``openai`` client against any OpenAI-compatible base URL."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, timeout_s: float = 20.0) -> None:
        if not api_key and not base_url:
            raise ConfigError("an LLM component needs OPENAI_API_KEY or OPENAI_BASE_URL")
        import openai

        self.model = model
        # Local OpenAI-compatible servers often need no key, but the client insists on one.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=1)
        self._errors = openai.OpenAIError

    def complete(self, system: str, user: str, *, max_tokens: int = 400, json_mode: bool = False) -> str:
        kwargs: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        try:
            resp = self._client.chat.completions.create(
                model=self.model, temperature=0.0, max_tokens=max_tokens,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], **kwargs,
            )
        except (self._errors, ValueError) as exc:  # ValueError: a 200 whose body is not JSON (a proxy's error page)
            raise LLMError(f"{self.model}: {type(exc).__name__}: {exc}") from exc
        if not resp.choices or resp.choices[0].message.content is None:
            raise LLMError(f"{self.model}: empty completion")
        return resp.choices[0].message.content


class FakeChat:
    """A ChatModel driven by a function, for tests and offline demos (like httpx's MockTransport)."""

    def __init__(self, handler: Callable[[str, str], str], model: str = "fake") -> None:
        self.model = model
        self.handler = handler
        self.calls: list[tuple[str, str]] = []

    def complete(self, system: str, user: str, *, max_tokens: int = 400, json_mode: bool = False) -> str:
        self.calls.append((system, user))
        return self.handler(system, user)


def parse_json_reply(text: str) -> dict[str, Any]:
    """Models wrap JSON in prose or code fences; take the outermost object."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise LLMError(f"expected a JSON object, got: {text[:120]!r}")
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise LLMError(f"invalid JSON from model: {exc}") from exc


def prompt_key(model: str, system: str, user: str) -> str:
    """Cache key of an LLM response: same model and prompt, same answer (temperature 0)."""
    return hashlib.sha256(f"{model}\x00{system}\x00{user}".encode()).hexdigest()


def chat_model(resources: Any, config: dict[str, Any]) -> ChatModel:
    """The shared chat model for LLM-backed components; a test may inject one as resources 'chat'."""
    s = resources.settings

    def make() -> ChatModel:
        key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
        return OpenAIChat(config.get("model", s.openai_model), s.openai_base_url, key)

    return resources.get("chat", make)
