"""Readiness: the API can serve when its database and its broker (Redis) answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Engine, text

Check = Callable[[], None]  # raises when the dependency is not usable


def database_check(engine: Engine) -> Check:
    def check() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return check


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
