"""Errors a person can fix, raised by the core and the services' command-line entry points alike.

Each message says what went wrong and what to do. Whoever runs the command (the CLI's `main`) reports a
`UserError` as one line and a non-zero exit, never a traceback. They live in the core so that services
raise them without importing the CLI that drives them.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the person running the command can fix; the message says how."""


class InputError(UserError):
    """The input is wrong: an option, a setting, a file or folder named on the command line."""


class SetupError(UserError):
    """The installation or the machine cannot do what was asked (a missing extra, a stuck process)."""
