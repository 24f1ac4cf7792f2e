"""Batching in front of one engine: concurrent inference requests run together in rounds.

One thread owns the engine. A round takes every job that is waiting (new requests that arrived within
`batch_wait_s`, and jobs whose thought goes on) and runs one `Engine.generate` call over all their
thinking segments; an answer a segment asks for joins that same call as a follow-up (vLLM adds it to its
running batch; the transformers engine runs it in its next wave). A thought longer than a segment goes
on in the next round, so a request that arrives while a round runs waits at most one segment
(`segment_tokens` thinking tokens plus an answer) before it joins the batch. Jobs with different sampling
settings run in separate `generate` calls of the same round.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Sequence

from anytime.contracts.sampling import SamplingConfig
from anytime.logging import get_logger
from services.api.inference.anytime_job import AnytimeJob
from services.engines.seam import Engine, GenerationRequest, Sample

log = get_logger(__name__)

_CLOSE = object()


class RoundBatcher:
    def __init__(self, engine: Engine, batch_wait_s: float = 0.005, name: str = "inference") -> None:
        self.engine = engine
        self.batch_wait_s = batch_wait_s
        self._inbox: queue.Queue[object] = queue.Queue()
        self._round = 0
        self._thread = threading.Thread(target=self._loop, name=f"{name}-rounds", daemon=True)
        self._thread.start()

    def submit(self, job: AnytimeJob) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("this engine's round thread has stopped; restart the API")
        self._inbox.put(job)

    def close(self, timeout_s: float = 30.0) -> None:
        self._inbox.put(_CLOSE)
        self._thread.join(timeout_s)

    @property
    def rounds(self) -> int:
        """Rounds run so far (a test reads it to see that concurrent requests shared rounds)."""
        return self._round

    def _loop(self) -> None:
        active: list[AnytimeJob] = []
        while True:
            if not active:
                first = self._inbox.get()
                if first is _CLOSE:
                    return
                active.append(first)  # type: ignore[arg-type]
                if self.batch_wait_s:
                    threading.Event().wait(self.batch_wait_s)  # let concurrent requests arrive
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    for job in active:
                        job.fail("the inference engine is shutting down")
                    return
                active.append(item)  # type: ignore[arg-type]
            self._run_round(active)
            active = [job for job in active if not job.finished]

    def _run_round(self, jobs: Sequence[AnytimeJob]) -> None:
        self._round += 1
        groups: dict[SamplingConfig, list[tuple[AnytimeJob, list[GenerationRequest]]]] = defaultdict(list)
        for job in jobs:
            requests = job.next_requests()
            if requests:
                groups[job.sampling].append((job, requests))
        for sampling, members in groups.items():
            requests = [r for _, job_requests in members for r in job_requests]
            try:
                self.engine.generate(requests, sampling, JobDispatch(members), seed=self._round)
            except Exception as exc:  # one bad round fails its requests, never the API
                log.exception("inference round failed", round=self._round)
                for job, _ in members:
                    job.fail(f"generation failed: {type(exc).__name__}: {exc}")


class JobDispatch:
    """The engine's follow-up hook for one `generate` call: hands each finished request to its job."""

    def __init__(self, members: Sequence[tuple[AnytimeJob, list[GenerationRequest]]]) -> None:
        self.owner = {r.key: job for job, requests in members for r in requests}

    def __call__(self, request: GenerationRequest, samples: list[Sample]) -> list[GenerationRequest]:
        job = self.owner[request.key]
        more = job.on_samples(request, samples)
        self.owner.update((r.key, job) for r in more)
        return more
