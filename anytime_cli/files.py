"""Files the CLI writes (reports, plots): checked before the API is asked anything, written whole or not
at all, and every failure one `CliError` line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from anytime_cli.errors import CliError


def check_writable(target: Path) -> None:
    """Before asking the API anything: the file's folder must exist and the file must not be a folder."""
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"cannot write {target}: folder {folder} does not exist; create it first")
    if target.is_dir():
        raise CliError(f"cannot write {target}: it is a folder; give a file name")


def _file_mode(target: Path) -> int:
    """The mode `open()` would give a new file (0o666 less the umask), or the one `target` has."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` whole or not at all: a temporary file in the same folder, renamed over it,
    with the mode a plain write would leave (not mkstemp's 0600)."""
    check_writable(target)
    mode = _file_mode(target)
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise CliError(f"cannot write {target}: {err.strerror or err}") from None
