"""SQL storage of the control plane: tables (`models`), engines and sessions (`session`), and the reads and
writes the API and the run driver share (`repository`). Torch-free."""

from __future__ import annotations

from anytime.db.base import Base
from anytime.db.models import Budget, Checkpoint, Evaluation, Reward, Run, RunStatus, Step
from anytime.db.repository import InvalidTransition, RunNotFound
from anytime.db.session import make_engine, make_session_factory, session_scope

__all__ = [
    "Base",
    "Budget",
    "Checkpoint",
    "Evaluation",
    "InvalidTransition",
    "Reward",
    "Run",
    "RunNotFound",
    "RunStatus",
    "Step",
    "make_engine",
    "make_session_factory",
    "session_scope",
]
