"""The API's inference state: the models it serves (loaded on first use) and the requests in flight.

A model is named by the client: the configured `inference_model_name` (ANYTIME_API_INFERENCE_MODEL, loaded
at start-up), or `run:<id>` for that run's promoted checkpoint (its folder, loaded on first request). At most
`inference_max_models` engines stay loaded; the least recently used one is closed to make room.

What `reasoning_effort` means for a model is read from SQL when its card or a request needs it: a run's
model is calibrated from the evaluation of its promoted checkpoint's policy version (`effort.py`); the
configured model has no evaluation and keeps ¼/1/4 × the default budget.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from anytime.db import repository
from anytime.db.models import Checkpoint, Run
from anytime.logging import get_logger
from services.api.deps import RUN_ID_PATTERN
from services.api.inference.anytime_job import AnytimeJob, FailedEvent, FinishedEvent, JobEvent
from services.api.inference.effort import EffortMapping, curve_of, effort_mapping
from services.api.inference.engines import ServedModel, load_served_model
from services.api.inference.schemas import ReasoningEffortCard, ServedModelCard
from services.api.settings import ApiSettings

log = get_logger(__name__)

RUN_PREFIX = "run:"


class ModelNotServed(LookupError):
    """The request names a model this API cannot serve (the route answers 404 with this message)."""


class ModelUnavailable(RuntimeError):
    """The model is served here but its engine could not be loaded (the route answers 503)."""


@dataclass
class RunningJob:
    """A job and its bridge to the event loop: events land in `events`, the end in `done`."""

    job: AnytimeJob
    events: asyncio.Queue[JobEvent]
    done: asyncio.Future[JobEvent]
    served: ServedModel


@dataclass
class InferenceService:
    settings: ApiSettings
    loader: Callable[[str, ApiSettings], ServedModel] = load_served_model
    _models: OrderedDict[str, ServedModel] = field(default_factory=OrderedDict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _running: dict[str, RunningJob] = field(default_factory=dict)
    _started: int = field(default_factory=lambda: int(time.time()))

    async def start(self) -> None:
        if self.settings.inference_model:
            await self._load(self.settings.inference_model)

    def cards(self, session: Session) -> list[ServedModelCard]:
        """What `model` can name: the configured model, then every run's promoted checkpoint still on disk
        (oldest run first)."""
        cards = []
        if self.settings.inference_model:
            cards.append(self._configured_card(self.settings.inference_model_name))
        promoted = session.execute(
            select(Run.id, Checkpoint)
            .join(Checkpoint, Checkpoint.id == Run.promoted_checkpoint_id)
            .order_by(Run.created_at, Run.id)
        )
        for run_id, checkpoint in promoted:
            if checkpoint.path in self._models or repository.checkpoint_on_disk(checkpoint.path):
                cards.append(self._run_card(run_id, checkpoint, session))
        return cards

    def card(self, name: str, session: Session) -> ServedModelCard:
        """One model's entry; `ModelNotServed` (with what to ask for instead) when `name` is not served."""
        if name.startswith(RUN_PREFIX):
            run_id = name.removeprefix(RUN_PREFIX)
            return self._run_card(run_id, self._promoted(run_id, session), session)
        self.model_path(name, session)
        return self._configured_card(name)

    def efforts(self, name: str, session: Session) -> EffortMapping:
        """What `reasoning_effort` and `min_accuracy` mean for model `name`; `ModelNotServed` as `card`."""
        if name.startswith(RUN_PREFIX):
            run_id = name.removeprefix(RUN_PREFIX)
            return checkpoint_efforts(session, run_id, self._promoted(run_id, session), self.settings)
        self.model_path(name, session)
        return self._configured_efforts(name)

    def _configured_efforts(self, name: str) -> EffortMapping:
        return effort_mapping(
            None,
            self.settings.effort_tolerances,
            self.settings.inference_default_budget,
            f"the configured model {name!r} (ANYTIME_API_INFERENCE_MODEL) has no evaluation",
        )

    def _configured_card(self, name: str) -> ServedModelCard:
        efforts = ReasoningEffortCard.of(self._configured_efforts(name))
        return ServedModelCard(id=name, created=self._started, reasoning_effort=efforts)

    def _run_card(self, run_id: str, checkpoint: Checkpoint, session: Session) -> ServedModelCard:
        efforts = checkpoint_efforts(session, run_id, checkpoint, self.settings)
        return ServedModelCard(
            id=f"{RUN_PREFIX}{run_id}",
            created=int(checkpoint.created_at.timestamp()),
            policy_version=checkpoint.policy_version,
            reasoning_effort=ReasoningEffortCard.of(efforts),
        )

    def close(self) -> None:
        for served in self._models.values():
            served.close()
        self._models.clear()

    def model_path(self, name: str, session: Session) -> str:
        """The folder a request's `model` names; `ModelNotServed` says what can be asked for instead."""
        configured = self.settings.inference_model
        if configured and name in (self.settings.inference_model_name, configured):
            return configured
        if name.startswith(RUN_PREFIX):
            return self._promoted(name.removeprefix(RUN_PREFIX), session).path
        names = [f'"{self.settings.inference_model_name}"'] if configured else []
        names.append('"run:<run id>" (a run\'s promoted checkpoint)')
        raise ModelNotServed(
            f"model {name!r} is not served here; ask for {' or '.join(names)} (GET /v1/models lists them)"
        )

    def _promoted(self, run_id: str, session: Session) -> Checkpoint:
        """The run's promoted checkpoint, if it can be served."""
        run = repository.get_run(session, run_id) if re.match(RUN_ID_PATTERN, run_id) else None
        if run is None:
            raise ModelNotServed(f"run {run_id} not found")
        if run.promoted_checkpoint_id is None:
            raise ModelNotServed(
                f"run {run_id} has no promoted checkpoint; promote one with POST /v1/runs/{run_id}/promote"
            )
        checkpoint = session.get(Checkpoint, run.promoted_checkpoint_id)
        if checkpoint is None:
            raise ModelNotServed(f"run {run_id}'s promoted checkpoint is gone; promote another")
        if checkpoint.path not in self._models and not repository.checkpoint_on_disk(checkpoint.path):
            raise ModelNotServed(
                f"run {run_id}'s promoted checkpoint (policy version {checkpoint.policy_version}) is no "
                f"longer on disk: checkpoint retention deleted it; promote another with "
                f"POST /v1/runs/{run_id}/promote"
            )
        return checkpoint

    async def model(self, path: str) -> ServedModel:
        served = self._models.get(path)
        if served is not None:
            self._models.move_to_end(path)
            return served
        return await self._load(path)

    async def _load(self, path: str) -> ServedModel:
        async with self._locks.setdefault(path, asyncio.Lock()):
            if path in self._models:
                return self._models[path]
            log.info("loading inference model", path=path, engine=self.settings.inference_engine)
            try:
                served = await asyncio.to_thread(self.loader, path, self.settings)
            except Exception as err:  # torch, transformers and vLLM raise many kinds; all mean "not loaded"
                log.exception("inference model failed to load", path=path)
                raise ModelUnavailable(
                    f"the model at {path} could not be loaded ({type(err).__name__}: {err})"
                ) from err
            self._models[path] = served
            while len(self._models) > self.settings.inference_max_models:
                old_path, old = self._models.popitem(last=False)
                log.info("unloading inference model", path=old_path)
                await asyncio.to_thread(old.close)
            return served

    def new_job_id(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    def bridge(
        self, job_id: str
    ) -> tuple[Callable[[JobEvent], None], asyncio.Queue[JobEvent], asyncio.Future[JobEvent]]:
        """A thread-safe sink for a job's events, the queue they land in, and a future for the end."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[JobEvent] = asyncio.Queue()
        done: asyncio.Future[JobEvent] = loop.create_future()

        def deliver(event: JobEvent) -> None:
            events.put_nowait(event)
            if isinstance(event, FinishedEvent | FailedEvent) and not done.done():
                done.set_result(event)

        def sink(event: JobEvent) -> None:
            loop.call_soon_threadsafe(deliver, event)

        return sink, events, done

    def run(self, served: ServedModel, running: RunningJob) -> None:
        self._running[running.job.job_id] = running
        running.done.add_done_callback(lambda _: self._running.pop(running.job.job_id, None))
        served.batcher.submit(running.job)

    def running(self, job_id: str) -> RunningJob | None:
        return self._running.get(job_id)


def checkpoint_efforts(
    session: Session, run_id: str, checkpoint: Checkpoint, settings: ApiSettings
) -> EffortMapping:
    """The efforts of a run's checkpoint, from the evaluation of its policy version (its own budgets), or
    the default with why when there is none (or it cannot be read as a curve)."""
    version = checkpoint.policy_version
    evaluation = repository.evaluation_of_policy(session, run_id, version)
    tolerances, default = settings.effort_tolerances, settings.inference_default_budget
    if evaluation is None:
        why = f"run {run_id}'s checkpoint of policy version {version} has no evaluation yet"
        return effort_mapping(None, tolerances, default, why)
    try:
        curve = curve_of(
            version,
            evaluation.budgets,
            evaluation.accuracy,
            evaluation.accuracy_ci_low,
            evaluation.accuracy_ci_high,
        )
    except ValueError as exc:  # a row no evaluation task writes; serve the default rather than fail
        log.warning("evaluation is not a curve", run_id=run_id, policy_version=version, error=str(exc))
        why = f"run {run_id}'s evaluation of policy version {version} is not a usable curve ({exc})"
        return effort_mapping(None, tolerances, default, why)
    return effort_mapping(curve, tolerances, default, "")
