"""CLI errors: one line on stderr and a non-zero exit, never a traceback.

The CLI's name for the core's `anytime.errors.UserError`, which the services' entry points raise as
`InputError` or `SetupError`: `main` catches this one type and so reports both the same way.
"""

from __future__ import annotations

from anytime.errors import UserError as CliError

__all__ = ["CliError"]
