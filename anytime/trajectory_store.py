"""Trajectories and verdicts in Redis by stable id (docs/method.md §3.2: at-least-once, idempotent).

Keys (all under one prefix, all with a TTL so an abandoned step does not fill Redis):
- `{prefix}:traj:{trajectory id}` → the trajectory JSON, written with SET NX: a second write of the same id
  (a task that ran twice) keeps the first and reports that nothing new was stored;
- `{prefix}:batch:{run}:{step}` → set of the trajectory ids of one step of a run;
- `{prefix}:verdicts:{trajectory id}` → hash summary id → `VerdictRecord` JSON, written with HSETNX.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from anytime.settings import REDIS_KEY_PREFIX, RETENTION_S, CommonSettings
from anytime.trajectory import Trajectory
from anytime.verdict import VerdictRecord

if TYPE_CHECKING:
    import redis


class TrajectoryStore:
    def __init__(self, client: redis.Redis, prefix: str = REDIS_KEY_PREFIX, ttl_s: int = RETENTION_S) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _traj_key(self, trajectory_id: str) -> str:
        return f"{self.prefix}:traj:{trajectory_id}"

    def _batch_key(self, run_id: str, step: int) -> str:
        return f"{self.prefix}:batch:{run_id}:{step}"

    def _verdict_key(self, trajectory_id: str) -> str:
        return f"{self.prefix}:verdicts:{trajectory_id}"

    def put(self, trajectory: Trajectory) -> bool:
        """Store a trajectory once; returns False when one with this id was already stored (kept as is)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._traj_key(trajectory.id), trajectory.model_dump_json(), nx=True, ex=self.ttl_s)
        pipe.sadd(self._batch_key(trajectory.run_id, trajectory.step), trajectory.id)
        pipe.expire(self._batch_key(trajectory.run_id, trajectory.step), self.ttl_s)
        stored, _, _ = pipe.execute()
        return bool(stored)

    def put_many(self, trajectories: Iterable[Trajectory]) -> int:
        """Store each trajectory once; returns how many were new."""
        return sum(self.put(t) for t in trajectories)

    def get(self, trajectory_id: str) -> Trajectory:
        raw = self.client.get(self._traj_key(trajectory_id))
        if raw is None:
            raise KeyError(f"no trajectory {trajectory_id!r} in Redis (expired, or never written)")
        return Trajectory.model_validate_json(raw)

    def batch_ids(self, run_id: str, step: int) -> list[str]:
        """The ids of a step's trajectories, sorted (stable order for readers)."""
        return sorted(
            m.decode() if isinstance(m, bytes) else m
            for m in self.client.smembers(self._batch_key(run_id, step))
        )

    def batch(self, run_id: str, step: int) -> list[Trajectory]:
        return [self.get(i) for i in self.batch_ids(run_id, step)]

    def put_verdicts(self, trajectory_id: str, verdicts: Mapping[str, VerdictRecord]) -> int:
        """Record verdicts by summary id; a verdict already recorded is kept. Returns how many were new."""
        key = self._verdict_key(trajectory_id)
        pipe = self.client.pipeline(transaction=True)
        for sid, verdict in verdicts.items():
            pipe.hsetnx(key, sid, verdict.model_dump_json(exclude_none=True))
        pipe.expire(key, self.ttl_s)
        results = pipe.execute()
        return sum(int(r) for r in results[:-1])

    def verdicts(self, trajectory_id: str) -> dict[str, VerdictRecord]:
        """The recorded verdicts of a trajectory's summaries, by summary id."""
        raw = self.client.hgetall(self._verdict_key(trajectory_id))
        return {
            (k.decode() if isinstance(k, bytes) else k): VerdictRecord.model_validate_json(v)
            for k, v in raw.items()
        }

    def delete_batch(self, run_id: str, step: int) -> None:
        """Drop a step's trajectories and verdicts once the learner has committed it."""
        ids = self.batch_ids(run_id, step)
        keys = [self._traj_key(i) for i in ids] + [self._verdict_key(i) for i in ids]
        self.client.delete(*keys, self._batch_key(run_id, step))


class WorkerStore:
    """A worker process's Redis client and trajectory store, opened on first use (so after a prefork fork,
    never before). Workers subclass it to keep their own per-process resources beside it."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings

    @cached_property
    def redis(self) -> redis.Redis:
        import redis

        return redis.Redis.from_url(self.settings.broker_url())

    @cached_property
    def store(self) -> TrajectoryStore:
        return TrajectoryStore(self.redis)

    def close(self) -> None:
        if "redis" in self.__dict__:
            self.redis.close()
