"""CLI errors: one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure; the message says what went wrong and how to fix it."""
