"""Engines and sessions: one engine per process, sessions per request or per task.

The repository functions (`anytime.db.repository`) never commit: the caller owns the transaction, either
with `session_scope(factory)` (commits on success, rolls back on error) or by calling `session.commit()`.

SQLite (the embedded default) is shared by the API and the Celery workers, so its connections wait for
each other's locks (`busy_timeout`) instead of failing, use WAL (readers do not block the writer), and
enforce foreign keys (off by default in SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30.0


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other backends and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file (SQLite creates the file, not its folder)."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` (e.g. `settings.resolved_database_url`) with the settings every process needs."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        ensure_sqlite_folder(url)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Rows stay readable after commit (API responses are built after the commit).
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
