"""The Celery application every worker and the API share: broker, routing by queue, delivery guarantees.

Tasks are named `anytime.<queue>.<action>` and routed to the queue in their name, so the API sends work by
name (`send_task`) and never imports torch. Every task is idempotent (ids are stable, stores are
write-once), which is what makes `acks_late` + `reject_on_worker_lost` safe: a worker that dies mid-task
leaves its message unacknowledged and another worker runs it again, one visibility timeout (a minute)
later; a live worker keeps its messages from being re-delivered however long they run
(`anytime.delivery_lease`), and a task that already succeeded is not run again (deduplication).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from celery import Celery
from kombu import Queue as KombuQueue
from pydantic import BaseModel, ValidationError

from anytime import delivery_lease
from anytime.queues import Queue
from anytime.settings import RETENTION_S, CommonSettings

# How long after its worker died a task is re-delivered. Healthy tasks of any length are safe: their
# worker refreshes their delivery time every DELIVERY_LEASE_FRACTION of this (`anytime.delivery_lease`).
DEFAULT_VISIBILITY_TIMEOUT_S = 60
DELIVERY_LEASE_FRACTION = 6


def route_by_name(name: str, *_args: object, **_kwargs: object) -> dict[str, str] | None:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "anytime" and parts[1] in {q.value for q in Queue}:
        return {"queue": parts[1]}
    return None


def make_celery(
    broker_url: str, name: str = "anytime", visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
) -> Celery:
    # Sweep for abandoned messages a few times per visibility timeout (kombu's default is every 100 s).
    restore_interval_s = max(1, min(10, visibility_timeout_s // 3))
    transport = {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    app = Celery(name, broker=broker_url, backend=broker_url)
    app.conf.update(
        task_queues=[KombuQueue(q.value) for q in Queue],
        task_routes=(route_by_name,),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # our structured logs go to the worker's log as they are
        result_expires=RETENTION_S,
        task_track_started=True,
        # A re-delivered message whose task already succeeded (its worker died before the ack) is skipped.
        worker_deduplicate_successful_tasks=True,
        # A result written while Redis restarts is retried, not lost.
        result_backend_always_retry=True,
        result_backend_max_retries=30,
    )
    delivery_lease.install(app, interval_s=max(1.0, visibility_timeout_s / DELIVERY_LEASE_FRACTION))
    return app


def celery_from_settings(settings: CommonSettings, name: str = "anytime") -> Celery:
    return make_celery(settings.broker_url(), name, settings.visibility_timeout_s)


def lazy_app_attribute(module: str, default_app: Callable[[], Celery]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds the worker's `app` when Celery first asks for it (`-A module:app`),
    so importing a worker module reads no settings and opens nothing."""

    def attribute(name: str) -> Any:
        if name == "app":
            return default_app()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute


Arguments = TypeVar("Arguments", bound=BaseModel)


def task_arguments(model: type[Arguments], kwargs: Mapping[str, Any], what: str) -> Arguments:
    """A task's keyword arguments, validated; a bad one fails the task before any work, with a reason that
    survives the JSON result backend (pydantic's own error does not)."""
    try:
        return model.model_validate(dict(kwargs))
    except ValidationError as error:
        raise ValueError(f"bad {what}: {' '.join(str(error).split())}") from None
