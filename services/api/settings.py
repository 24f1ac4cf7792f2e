"""API settings (`ANYTIME_API_` prefix) on top of the shared ones."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings

_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "dev"}


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_API_", extra="ignore", frozen=True)

    environment: str = Field(default="development", description="development | production")
    api_key: SecretStr = Field(default=SecretStr("dev"), description="Key for mutating calls.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Seconds /readyz waits for Redis.")

    # Inference (`/v1/chat/completions`, `/v1/completions`): off until a model is configured or a run's
    # promoted checkpoint is asked for (`model: "run:<id>"`); engines load lazily, never at import.
    inference_model: str | None = Field(
        default=None, description="Hugging Face model folder served by default; loaded at start-up."
    )
    inference_model_name: str = Field(
        default="anytime", description="The `model` name clients send for `inference_model`."
    )
    inference_engine: Literal["transformers", "vllm"] = Field(
        default="transformers", description="transformers (CPU, tests) or vllm (GPU, prefix caching)."
    )
    inference_max_budgets: int = Field(default=16, ge=1, description="Most budgets in one request.")
    inference_answer_max_tokens: int = Field(
        default=128, ge=1, description="Answer (summary) tokens when a request sets no max_tokens."
    )
    inference_segment_tokens: int = Field(
        default=256,
        ge=1,
        description="Thinking tokens per scheduling round: how soon a new request joins the batch and a "
        "stop takes effect (each round re-submits the prefix; vLLM's prefix cache makes that cheap).",
    )
    inference_batch_wait_ms: float = Field(
        default=5.0, ge=0, description="How long a round waits for concurrent requests to batch together."
    )
    inference_max_models: int = Field(default=2, ge=1, description="Engines kept loaded (least recent go).")
    inference_vllm_gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    inference_vllm_max_model_len: int | None = Field(default=None, ge=16)

    @model_validator(mode="after")
    def _real_key_outside_development(self) -> ApiSettings:
        if self.environment != "development" and self.api_key.get_secret_value() in _PLACEHOLDER_KEYS:
            raise ValueError("ANYTIME_API_API_KEY must be set to a real secret outside development")
        return self


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
