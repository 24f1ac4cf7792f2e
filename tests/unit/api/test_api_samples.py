"""`GET /v1/runs/{id}/samples` on a migrated SQLite file: stored once, filtered, paged, behind the key."""

from __future__ import annotations

from anytime.db import samples as stored_samples
from anytime.db.session import session_scope
from anytime.samples import RolloutSample, rollout_sample
from anytime.verdict import Status, VerdictRecord
from tests.fixtures.synthetic import make_trajectory
from tests.unit.api.test_api_routes import AUTH, Api, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses


def sample(run_id: str, step: int, problem: str, trace: int, kind: str = "train") -> RolloutSample:
    trajectory = make_trajectory(
        run_id=run_id, step=max(step, 0), problem_id=problem, trace_index=trace, prompt_ids=[1],
        thinking_ids=[10, 11, 12], finish_reason="length", budgets=[2, 4], num_summaries=1,
        ellipsis_ids=[90], delimiter_ids=[91], summaries=[[[40]], [[41]]], policy_version=step + 1,
    )  # fmt: skip
    verdicts = {
        trajectory.summary_id(c, 0): VerdictRecord(
            status=Status.CORRECT, formatted=True, reward=1.0, extracted=str(c)
        )
        for c in range(2)
    }
    advantages = (
        {}
        if kind == "eval"
        else {"thinking_advantages": [0.5, -0.5], "summary_advantages": [[0.25], [-0.25]]}
    )
    return rollout_sample(
        trajectory, verdicts, lambda ids: " ".join(map(str, ids)), kind=kind, step=step, **advantages
    )


def store(api: Api, run_id: str, samples: list[RolloutSample]) -> int:
    with session_scope(api.sessions) as session:
        return stored_samples.record_samples(session, run_id, samples)


def test_samples_are_stored_once_and_served_in_step_problem_trace_order(api: Api) -> None:
    run_id = api.create()["id"]
    written = [sample(run_id, step, p, g) for step in (1, 0) for p in ("b", "a") for g in (1, 0)]
    assert store(api, run_id, written) == 8
    assert store(api, run_id, written[:3]) == 0  # a re-delivered step stores nothing twice
    assert store(api, run_id, [sample(run_id, -1, "a", 0, kind="eval")]) == 1
    page = api.client.get(f"/v1/runs/{run_id}/samples", headers=AUTH).json()
    assert page["total"] == 8
    assert [(s["step"], s["problem_id"], s["trace_index"]) for s in page["items"]] == [
        (0, "a", 0), (0, "a", 1), (0, "b", 0), (0, "b", 1),
        (1, "a", 0), (1, "a", 1), (1, "b", 0), (1, "b", 1),
    ]  # fmt: skip
    first = page["items"][0]
    assert [c["cut"] for c in first["cuts"]] == [2, 3]
    assert first["cuts"][0]["thinking"] == "10 11" and first["cuts"][0]["thinking_advantages"] == [0.5]
    assert [a["advantage"] for a in first["cuts"][1]["answers"]] == [-0.25]
    one = api.client.get(
        f"/v1/runs/{run_id}/samples",
        params={"step": 1, "problem": "b", "limit": 1, "offset": 1},
        headers=AUTH,
    ).json()
    assert one["total"] == 2 and [(s["step"], s["trace_index"]) for s in one["items"]] == [(1, 1)]
    evaluation = api.client.get(f"/v1/runs/{run_id}/samples", params={"kind": "eval"}, headers=AUTH).json()
    assert [(s["kind"], s["step"]) for s in evaluation["items"]] == [("eval", -1)]
    assert evaluation["items"][0]["cuts"][0]["thinking_advantages"] is None


def test_samples_need_the_key_a_known_run_and_valid_filters(api: Api) -> None:
    run_id = api.create()["id"]
    assert api.anonymous.get(f"/v1/runs/{run_id}/samples").status_code == 401
    missing = api.client.get("/v1/runs/0123456789abcdef/samples", headers=AUTH)
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    for params in ({"kind": "both"}, {"step": -2}, {"limit": 0}, {"limit": 201}, {"problem": ""}):
        response = api.client.get(f"/v1/runs/{run_id}/samples", params=params, headers=AUTH)
        assert response.status_code == 422, (params, response.text)
    empty = api.client.get(f"/v1/runs/{run_id}/samples", headers=AUTH).json()
    assert (empty["items"], empty["total"]) == ([], 0)
