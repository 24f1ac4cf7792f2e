"""The server fixtures start real, correctly configured servers that this pytest process owns.

Everything else in the integration suite builds on these fixtures, so a broken fixture should fail here,
with an obvious name, rather than as a confusing error in a Celery or database test.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.servers import PostgresServer, RedisServer

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine

pytestmark = pytest.mark.integration

PROC = Path("/proc")


def _parent_pid(pid: int) -> int:
    """The parent pid from /proc/<pid>/stat (field 4; the command name in field 2 may contain spaces)."""
    stat = (PROC / str(pid) / "stat").read_text()
    after_name = stat.rsplit(")", 1)[1].split()
    return int(after_name[1])


def _state(pid: int) -> str:
    """The one-letter process state (R, S, Z, ...) from /proc/<pid>/stat."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]


def _assert_live_child(pid: int | None, expected_exe_name: str) -> None:
    """The server runs, is not a zombie, is our direct child, and is the program we think it is."""
    if pid is None:
        pytest.skip("external server from the environment: no process of ours to inspect")
    if not PROC.is_dir():
        pytest.skip("needs Linux /proc to inspect processes")
    assert (PROC / str(pid)).exists(), f"server pid {pid} is not running"
    assert _state(pid) != "Z", f"server pid {pid} is a zombie"
    assert _parent_pid(pid) == os.getpid(), f"server pid {pid} is not a child of this pytest process"
    assert Path(os.readlink(PROC / str(pid) / "exe")).name == expected_exe_name


def test_redis_set_get_round_trips(redis_client: redis.Redis) -> None:
    assert redis_client.set("anytime:probe", "hello") is True
    assert redis_client.get("anytime:probe") == "hello"


def test_redis_client_starts_with_an_empty_db(redis_client: redis.Redis) -> None:
    # Runs after the round-trip test in file order: the fixture's FLUSHDB must have removed its key.
    assert redis_client.dbsize() == 0


def test_redis_never_evicts(redis_client: redis.Redis) -> None:
    # Celery queues live in Redis; under memory pressure it must refuse writes, not drop tasks.
    assert redis_client.info("memory")["maxmemory_policy"] == "noeviction"


def test_redis_has_no_persistence(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    if redis_server.external:
        pytest.skip("persistence of an external Redis is not ours to check")
    assert redis_client.config_get("save") == {"save": ""}
    assert redis_client.config_get("appendonly") == {"appendonly": "no"}


def test_redis_server_describes_loopback_url(redis_server: RedisServer) -> None:
    if redis_server.external:
        pytest.skip("REDIS_URL is used as given")
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_redis_server_is_our_child(redis_server: RedisServer) -> None:
    _assert_live_child(redis_server.pid, "redis-server")


def test_postgres_reports_its_version(postgres_engine: Engine) -> None:
    from sqlalchemy import text

    with postgres_engine.connect() as conn:
        version = conn.execute(text("select version()")).scalar_one()
    assert "PostgreSQL" in version


def test_postgres_uses_the_test_database(postgres_server: PostgresServer, postgres_engine: Engine) -> None:
    if postgres_server.external:
        pytest.skip("ANYTIME_TEST_POSTGRES_URL may name any database")
    from sqlalchemy import text

    assert (
        postgres_server.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/anytime_test"
    )
    with postgres_engine.connect() as conn:
        assert conn.execute(text("select current_database()")).scalar_one() == "anytime_test"


def test_postgres_table_create_insert_select(postgres_engine: Engine) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

    metadata = MetaData()
    table = Table(
        f"probe_{uuid.uuid4().hex[:12]}",  # unique, so an external database or a rerun never collides
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
    )
    metadata.create_all(postgres_engine)
    try:
        with postgres_engine.begin() as conn:
            conn.execute(insert(table), [{"name": "alpha"}, {"name": "beta"}])
        with postgres_engine.connect() as conn:
            names = conn.execute(select(table.c.name).order_by(table.c.id)).scalars().all()
        assert names == ["alpha", "beta"]
    finally:
        metadata.drop_all(postgres_engine)


def test_postgres_server_is_our_child(postgres_server: PostgresServer) -> None:
    _assert_live_child(postgres_server.pid, "postgres")
