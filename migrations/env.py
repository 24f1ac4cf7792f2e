"""Alembic environment: the database URL from settings, the metadata from `anytime.db`.

`make migrate` (alembic upgrade head) reads ANYTIME_DATABASE_URL (default: a SQLite file in ANYTIME_HOME).
Code that already holds a connection (tests, `anytime up`) passes it as `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Connection

from anytime.db import experiments, models, samples  # noqa: F401  (every table onto Base.metadata)
from anytime.db.base import Base
from anytime.db.session import ensure_sqlite_folder
from anytime.settings import CommonSettings

config = context.config
if not config.get_main_option("sqlalchemy.url"):
    config.set_main_option("sqlalchemy.url", CommonSettings().resolved_database_url)


def _configure(connection: Connection) -> None:
    # Batch mode: SQLite alters a table by copying it, so later revisions can change columns there too.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url:
        ensure_sqlite_folder(url)
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        _configure(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
