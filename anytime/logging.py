"""Structured logging: structlog with bound context (`run_id`, `step`, `policy_version`)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from anytime.settings import LogFormat

# Libraries that log every request (httpx's "HTTP Request: GET …") or routine chatter at INFO.
CHATTY_LIBRARIES = ("httpx", "httpcore", "urllib3", "mlflow", "alembic", "git")


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written (not when logging was configured), so a stream
    swapped in and closed later (a test's capture, a daemon's redirect) never strands the loggers."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: LogFormat = "console", library_logs: bool = False) -> None:
    """Configure structlog and the stdlib root logger once per process, on stderr. Colours only on a
    terminal, so log files stay plain text; `CHATTY_LIBRARIES` log warnings only unless `library_logs`."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    show_library_logs(library_logs)


def show_library_logs(show: bool) -> None:
    """Let `CHATTY_LIBRARIES` log at the root logger's level (`show`), or only their warnings."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if show else logging.WARNING)


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger with `context` bound to every line it writes."""
    return structlog.get_logger(name).bind(**context)
