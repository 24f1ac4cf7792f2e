"""A small REST client of the control plane for the CLI (`anytime runs …`): torch-free, httpx only.

Where the API is and its key: `--api` / `ANYTIME_API_URL` (default http://127.0.0.1:8000) and
`--api-key` / `ANYTIME_API_KEY`, else the key `anytime up` wrote to `<ANYTIME_HOME>/api-key`.
Every failure becomes one `CliError` line that says what to do: the API unreachable, the key refused,
or the API's own message for a 4xx/5xx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings
from anytime_cli.errors import CliError

DEFAULT_API_URL = "http://127.0.0.1:8000"

ApiOption = Annotated[
    str | None,
    typer.Option("--api", help=f"API address [env: ANYTIME_API_URL; default: {DEFAULT_API_URL}]."),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key [env: ANYTIME_API_KEY; default: the key `anytime up` wrote to <ANYTIME_HOME>/api-key].",
    ),
]


class ClientSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_", extra="ignore", frozen=True)

    api_url: str = Field(default=DEFAULT_API_URL, validation_alias=AliasChoices("ANYTIME_API_URL"))
    api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("ANYTIME_API_KEY"))

    @property
    def key_file(self) -> Path:
        return self.home / "api-key"

    def key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return self.key_file.read_text().strip() if self.key_file.is_file() else None


class ApiClient:
    def __init__(
        self, url: str, key: str | None, timeout_s: float = 30.0, key_file: Path | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self.has_key = bool(key)
        self.key_file = key_file
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, url: str | None = None, key: str | None = None) -> ApiClient:
        settings = ClientSettings()
        return cls(url or settings.api_url, key or settings.key(), key_file=settings.key_file.resolve())

    def request(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """The response; a CliError for a failure, unless its status is one the caller `allow`s."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise CliError(
                f"cannot reach the API at {self.url} ({err}); start it with `anytime up`, or point "
                "ANYTIME_API_URL (or --api) at a running one"
            ) from None
        if response.status_code == 401:
            raise CliError(f"{method} {path} → 401: {api_message(response)}; {self._key_hint()}")
        if response.status_code >= 400 and response.status_code not in allow:
            raise CliError(f"{method} {path} → {response.status_code}: {api_message(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{method} {path}: {self.url} answered with something other than JSON; is ANYTIME_API_URL "
                "the Anytime API?"
            ) from None

    def _key_hint(self) -> str:
        where = f" ({self.key_file} here)" if self.key_file is not None else ""
        told = "the API refused this key" if self.has_key else "no API key was sent"
        return (
            f"{told}: set ANYTIME_API_KEY (or --api-key) to the key of the API you talk to; `anytime up` "
            f"writes its key to <ANYTIME_HOME>/api-key{where} and prints the export line"
        )


def api_message(response: httpx.Response) -> str:
    """The API's message on one line: FastAPI's `{"detail": …}` (validation errors one field after the
    other), OpenAI's `{"error": {"message": …}}`, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text[:500].split()) or response.reason_phrase
    detail: Any = body
    if isinstance(body, dict):
        error = body.get("error")
        detail = error.get("message", error) if isinstance(error, dict) else body.get("detail", body)
    if isinstance(detail, list):  # FastAPI validation errors: one part per field
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []) if p != 'body')}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return " ".join(str(detail).split())
