"""Settings: environment → one object per process, validated with messages that say how to fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.settings import CommonSettings
from services.api.settings import ApiSettings


def test_redis_url_reads_the_plain_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/1")
    assert CommonSettings().redis_url == "redis://example:6380/1"


def test_local_defaults_are_sqlite_files_in_home(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ANYTIME_HOME", str(tmp_path))
    settings = CommonSettings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'anytime.db'}"
    assert settings.resolved_mlflow_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_bad_log_level_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYTIME_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="one of DEBUG, INFO"):
        CommonSettings()


def test_api_refuses_placeholder_key_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYTIME_API_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="ANYTIME_API_API_KEY"):
        ApiSettings()
    monkeypatch.setenv("ANYTIME_API_API_KEY", "s3cret-value")
    assert ApiSettings().api_key.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(ApiSettings())
