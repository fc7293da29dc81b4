"""Immutable settings read once from the environment (prefix ``SHADOWLINE_``) and an optional .env.

Secrets are ``SecretStr`` so they never show up in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shadowline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHADOWLINE_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(default=REPO_ROOT / ".shadowline", description="cache, logs, pids, indexes")
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = 19093
    redis_url: str = "redis://127.0.0.1:16379/0"
    topic_prefix: str = ""
    partitions: int = Field(default=3, ge=1)
    max_text_bytes: int = Field(default=8192, ge=1, description="longer texts are dead-lettered")
    history_turns: int = Field(default=12, ge=1)
    history_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    pipeline_config: Path | None = None
    kb_dir: Path = REPO_ROOT / "samples" / "kb"
    kb_follow: bool = Field(default=True, description="workers follow kb.articles and CURRENT live (docs/kb.md)")
    samples_dir: Path = REPO_ROOT / "samples"
    # Standard OpenAI client variables are read without the prefix, as users expect.
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_model: str = "gpt-4o-mini"
    schema_registry_url: str | None = Field(default=None, validation_alias="SCHEMA_REGISTRY_URL")
    runtime: Literal["kafka", "faust"] = Field(default="kafka", description="worker runtime: the confluent-kafka batch loop (streams.kafka_loop) or faust-streaming")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from exc
