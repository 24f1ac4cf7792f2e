"""SQL storage: the declarative base, with every table of `anytime.db.models` and
`anytime.db.experiments` registered on its metadata.

Kept for imports that predate `anytime.db`; new code imports from `anytime.db`.
"""

from __future__ import annotations

from anytime.db import experiments as _experiments  # noqa: F401  (registers the tables on Base.metadata)
from anytime.db import models as _models  # noqa: F401
from anytime.db.base import NAMING_CONVENTION, Base

__all__ = ["NAMING_CONVENTION", "Base"]
