"""Structured logging: structlog with bound context (`run_id`, `step`, `policy_version`)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from anytime.settings import LogFormat


def configure_logging(level: str = "INFO", fmt: LogFormat = "console") -> None:
    """Configure structlog and the stdlib root logger once per process, on stderr."""
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger with `context` bound to every line it writes."""
    return structlog.get_logger(name).bind(**context)
