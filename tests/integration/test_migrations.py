"""Alembic migrations: one head, date-named files, upgrade → schema equals the models → downgrade → upgrade,
on SQLite and PostgreSQL; and the API never migrates on start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from anytime.db import Base
from anytime.db import experiments as _experiments  # noqa: F401  (its tables onto Base.metadata)
from anytime.db import samples as _samples  # noqa: F401
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.fixtures.servers import PostgresServer

REPO = Path(__file__).resolve().parents[2]
TABLES = {"runs", "budgets", "steps", "rewards", "checkpoints", "evaluations"}


def alembic_config(url: str) -> Config:
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_one_head_and_date_named_files() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"several heads {script.get_heads()}: merge them (alembic merge)"
    files = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert files, "no revision"
    for name in files:
        assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\d{4}-[0-9a-f]{12}_\w+\.py", name), name


def _round_trip(url: str) -> None:
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        command.upgrade(config, "head")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= TABLES
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"the migrated schema differs from the models: {diff}"
        command.downgrade(config, "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_sqlite_upgrade_matches_models_and_downgrades(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'anytime.db'}")


@pytest.mark.integration
def test_postgres_upgrade_matches_models_and_downgrades(postgres_server: PostgresServer) -> None:
    admin = create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text('DROP DATABASE IF EXISTS "anytime_migrations"'))
            connection.execute(text('CREATE DATABASE "anytime_migrations"'))
    finally:
        admin.dispose()
    _round_trip(postgres_server.url.rsplit("/", 1)[0] + "/anytime_migrations")


def test_the_api_never_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    settings = ApiSettings(ANYTIME_DATABASE_URL=url, api_key="k")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
    finally:
        engine.dispose()
