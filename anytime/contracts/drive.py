"""The `control` queue's task: drive one run to its end (`services.control.worker`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from anytime.queues import Queue, task_name

DRIVE_TASK = task_name(Queue.CONTROL, "drive")


class DriveRequest(BaseModel):
    """The task's keyword arguments. Its result is the run's final status (or `skipped`, `stopped`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
