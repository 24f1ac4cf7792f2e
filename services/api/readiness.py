"""Readiness: the API can serve when its database answers at the migrations' head revision and its broker
(Redis) answers.

The API never migrates (`services/api/app.py`); a database behind the code's migrations is "not ready", and a
query that fails on it is a 503 saying how to migrate rather than a bare 500 (`database_unready_reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

Check = Callable[[], None]  # raises when the dependency is not usable

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MIGRATE_HINT = (
    "run `alembic upgrade head` (`make migrate`) with the API's ANYTIME_DATABASE_URL, then retry "
    "(`anytime up` migrates before it starts the API)"
)


class SchemaNotMigrated(RuntimeError):
    """The database's Alembic revision is not the migrations' head."""


@dataclass(frozen=True)
class SchemaVersion:
    """The database's Alembic revision against the head of the migrations this code ships with."""

    engine: Engine
    heads: frozenset[str]

    @classmethod
    def of(cls, engine: Engine, migrations: Path = MIGRATIONS) -> SchemaVersion:
        """Reads the migrations' head (no database access)."""
        return cls(engine, frozenset(ScriptDirectory(str(migrations)).get_heads()))

    def problem(self) -> str | None:
        """What is wrong with the schema (None: at head); raises when the database does not answer."""
        with self.engine.connect() as connection:
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
        if current == self.heads:
            return None
        at = ", ".join(sorted(current)) or "no revision (an empty database)"
        head = ", ".join(sorted(self.heads))
        return f"the database schema is not migrated: it is at {at}, this API needs {head}; {MIGRATE_HINT}"

    def check(self) -> None:
        """/readyz's database check: the database answers and its schema is at the migrations' head."""
        problem = self.problem()
        if problem is not None:
            raise SchemaNotMigrated(problem)


def database_unready_reason(schema: SchemaVersion) -> str | None:
    """Why a query failed, when the database's state is the reason (not migrated, not answering); None when
    it answers at head (the failure is then a bug, and stays a 500)."""
    try:
        return schema.problem()
    except SQLAlchemyError as err:
        return f"the database does not answer ({type(err).__name__}: {getattr(err, 'orig', None) or err})"


def redis_check(url: str | None, timeout_s: float) -> tuple[Check, Callable[[], None]]:
    """A Redis ping and the function that closes its client."""
    if url is None:

        def unset() -> None:
            raise RuntimeError("ANYTIME_REDIS_URL is not set")

        return unset, lambda: None
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)

    def check() -> None:
        client.ping()

    return check, client.close


class Readiness:
    """Named checks; `run()` gives each one's outcome ("ok" or the error)."""

    def __init__(self, checks: Mapping[str, Check]) -> None:
        self.checks = dict(checks)

    def run(self) -> dict[str, str]:
        outcomes = {}
        for name, check in self.checks.items():
            try:
                check()
            except Exception as err:  # any failure means "not ready"; the message says which and why
                outcomes[name] = f"error: {type(err).__name__}: {err}"
            else:
                outcomes[name] = "ok"
        return outcomes
