"""A small REST client of the control plane for the CLI (`anytime runs …`): torch-free, httpx only.

Where the API is and its key: `--api` / `ANYTIME_API_URL` (default http://127.0.0.1:8000) and
`--api-key` / `ANYTIME_API_KEY`, else the key `anytime up` wrote to `<ANYTIME_HOME>/api-key`.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from anytime.cli.errors import CliError
from anytime.settings import CommonSettings


class ClientSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_", extra="ignore", frozen=True)

    api_url: str = Field(default="http://127.0.0.1:8000", validation_alias=AliasChoices("ANYTIME_API_URL"))
    api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("ANYTIME_API_KEY"))

    def key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        stored = self.home / "api-key"
        return stored.read_text().strip() if stored.is_file() else None


class ApiClient:
    def __init__(self, url: str, key: str | None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, url: str | None = None, key: str | None = None) -> ApiClient:
        settings = ClientSettings()
        return cls(url or settings.api_url, key or settings.key())

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise CliError(f"cannot reach the API at {self.url} ({err}); is `anytime up` running?") from None
        if response.status_code >= 400:
            raise CliError(f"{method} {path} → {response.status_code}: {_detail(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors: one line per field
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []) if p != 'body')}: {item.get('msg')}"
            for item in detail
        )
    return str(detail)
