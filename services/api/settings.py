"""API settings (`ANYTIME_API_` prefix) on top of the shared ones."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

import anytime
from anytime.settings import CommonSettings
from services.api.inference.effort import EffortTolerances

_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "dev"}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# The repository's `build/` folder: where `anytime model tiny` and `anytime data synth` write by default.
_REPOSITORY_BUILD = Path(anytime.__file__).resolve().parents[1] / "build"


class ApiSettings(CommonSettings):
    # A refused setting must not print the others (the API key among them) into the start-up error.
    model_config = SettingsConfigDict(
        env_prefix="ANYTIME_API_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: str = Field(default="development", description="development | production")
    api_key: SecretStr = Field(default=SecretStr("dev"), description="Key for every call but health.")
    host: str = Field(
        default="127.0.0.1",
        description="The address the API binds to; keep it equal to uvicorn's --host (the placeholder "
        "key and open reads are only allowed on loopback).",
    )
    port: int = Field(default=8000, ge=1, le=65535)
    open_reads: bool = Field(
        default=False,
        description="GET calls without the key; only honoured when `host` is loopback.",
    )
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Seconds /readyz waits for Redis.")
    allow_hub: bool = Field(
        default=True,
        description="Take run configs that name a hub model (OWNER/NAME) or a hub dataset (hf:OWNER/NAME), "
        "which the workers download; false: only model folders and datasets under the data roots (a box "
        "that must not download, or whose workers cannot), refused at the door with a 422 saying so.",
    )
    data_roots: Annotated[tuple[Path, ...] | None, NoDecode] = Field(
        default=None,
        validation_alias=AliasChoices("ANYTIME_DATA_ROOTS"),
        description="Folders a run config's model and datasets must lie under: a JSON list, or paths "
        "separated by commas or the OS path separator; unset: home and the repository's build/ folder.",
    )

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
    inference_default_budget: int = Field(
        default=1024,
        ge=1,
        description="Thinking tokens for a request that gives no `budget`, `budgets` or `reasoning_effort` "
        "(so none thinks to the end of the context by accident), and the unit of `reasoning_effort` on a "
        "model without an evaluation (low = 1/4, medium = 1, high = 4 times it). Lowered to what the "
        "context leaves after the prompt and the answer; a value at least the model's context means "
        '"until </think> or the context is full".',
    )
    inference_effort_low_tolerance: float = Field(
        default=0.10,
        ge=0.0,
        lt=1.0,
        description="`reasoning_effort: low` on a model with an evaluation: the smallest evaluated budget "
        "whose accuracy is at least best × (1 - this), relative to the best accuracy (0.10: within 10 %).",
    )
    inference_effort_medium_tolerance: float = Field(
        default=0.03,
        ge=0.0,
        lt=1.0,
        description="`reasoning_effort: medium`, as the low tolerance (0.03: within 3 % of the best); "
        "`high` is the smallest budget reaching the best. At most the low tolerance.",
    )
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

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        parts = [part.strip() for part in re.split(f"[,{re.escape(os.pathsep)}]", text)]
        return [part for part in parts if part] or None

    @model_validator(mode="after")
    def _safe_outside_loopback(self) -> ApiSettings:
        placeholder = self.api_key.get_secret_value() in _PLACEHOLDER_KEYS
        if placeholder and self.environment != "development":
            raise ValueError("ANYTIME_API_API_KEY must be set to a real secret outside development")
        if placeholder and not self.loopback:
            raise ValueError(
                f"ANYTIME_API_API_KEY must be set to a real secret when the API binds to {self.host!r}; "
                "the placeholder key is only accepted on loopback (127.0.0.1, ::1, localhost)"
            )
        if self.open_reads and not self.loopback:
            raise ValueError(
                f"ANYTIME_API_OPEN_READS=true opens every GET to anyone who can reach {self.host!r}: it is "
                "only allowed when ANYTIME_API_HOST is loopback (127.0.0.1, ::1, localhost); unset it"
            )
        medium, low = self.inference_effort_medium_tolerance, self.inference_effort_low_tolerance
        if medium > low:
            raise ValueError(
                f"ANYTIME_API_INFERENCE_EFFORT_MEDIUM_TOLERANCE ({medium}) is above "
                f"ANYTIME_API_INFERENCE_EFFORT_LOW_TOLERANCE ({low}): `medium` would think less than `low`; "
                "make the medium tolerance at most the low one"
            )
        return self

    @property
    def effort_tolerances(self) -> EffortTolerances:
        """`reasoning_effort`'s tolerances on the evaluation curve (`services.api.inference.effort`)."""
        return EffortTolerances(
            low=self.inference_effort_low_tolerance, medium=self.inference_effort_medium_tolerance
        )

    @property
    def loopback(self) -> bool:
        return self.host.strip("[]").lower() in LOOPBACK_HOSTS

    @property
    def resolved_data_roots(self) -> tuple[Path, ...]:
        """The data roots with `~`, symlinks and `..` resolved (containment is checked against these)."""
        roots = self.data_roots if self.data_roots else (self.home, _REPOSITORY_BUILD)
        return tuple(dict.fromkeys(root.expanduser().resolve() for root in roots))


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
