"""Schemathesis against the API: every operation in the OpenAPI schema, fuzzed with the key set, answers
without a 5xx and as its schema says (status codes, content types, bodies, auth enforced).

The app runs on a migrated SQLite file with a recording scheduler (no broker), as in test_api_routes. One
run exists, with steps, rewards, an evaluation and two checkpoints (one still on disk, one deleted by
retention); operations on a run are pointed at it, so the reads return real bodies to check rather than
only 404s (unknown ids are covered in test_api_routes).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema

from anytime.contracts.verify import BudgetReward
from anytime.db import repository
from anytime.db.session import make_engine, make_session_factory, session_scope
from anytime.run_config import RunConfig
from anytime.verdict import Status
from services.api.app import create_app
from services.api.deps import get_readiness, get_scheduler
from services.api.readiness import Readiness
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import AUTH, CONFIG, KEY, RecordingScheduler, migrated_db, write_inputs

__all__ = ["migrated_db"]  # a fixture this module uses

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 15  # per operation and mode: about 400 requests
# Bodies with rules JSON Schema cannot state, so schema-valid data may still be a 422: a run config names
# files that must exist under the data roots (test_api_inputs) and has cross-field rules (probs sum to 1);
# inference budgets must ascend, and `budget` excludes `budgets` (test_inference_* cover those).
CHECKED_BEYOND_SCHEMA = {
    "POST /v1/runs",
    "POST /v1/experiments",
    "POST /v1/chat/completions",
    "POST /v1/completions",
}


@dataclass
class Fuzzed:
    app: FastAPI
    run_id: str


@pytest.fixture(scope="module")
def fuzzed(migrated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    folder = tmp_path_factory.mktemp("fuzz")
    database = folder / "anytime.db"
    shutil.copy(migrated_db, database)
    write_inputs(folder)
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        run = repository.create_run(
            session, RunConfig.model_validate({**CONFIG, "model": str(folder / "models" / "tiny")})
        )
        kept = folder / "checkpoints" / "policy-000002" / "model"
        kept.mkdir(parents=True)
        for version, path in [(1, folder / "checkpoints" / "policy-000001" / "model"), (2, kept)]:
            repository.record_step(session, run.id, version - 1, version, {"loss": 0.5, "reward/mean": 0.25})
            repository.record_checkpoint(session, run.id, version, version - 1, str(path))
            repository.record_evaluation(session, run.id, version, version - 1, [32, 64], [0.25, 0.5], 0.375)
        reward = BudgetReward(
            problem_id="p0",
            trace_index=0,
            budget_index=0,
            summary_index=0,
            cut=32,
            inserted_start=10,
            inserted_end=12,
            answer="7",
            status=Status.CORRECT,
            reward=1.0,
        )
        repository.record_rewards(session, run.id, 0, [reward])
        run_id = run.id
    engine.dispose()
    settings_ = ApiSettings(
        ANYTIME_DATABASE_URL=url,
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        ANYTIME_DATA_ROOTS=str(folder),
        api_key=KEY,
    )
    app = create_app(settings_)
    scheduler = RecordingScheduler()
    app.dependency_overrides[get_scheduler] = lambda: scheduler
    # No broker here: /readyz would be a (deliberate) 503; its down path is tested in test_api_routes.
    app.dependency_overrides[get_readiness] = lambda: Readiness({"redis": lambda: None})
    yield Fuzzed(app, run_id)
    # Schemathesis keeps an app's lifespan running until the process exits; end this one's now.
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app, headers=AUTH)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_no_answer_outside_the_schema(
    api_schema: BaseSchema, fuzzed: Fuzzed, mode: GenerationMode
) -> None:
    """Each operation in turn (schemathesis's pytest plugin does not load a schema from a fixture under
    pytest 9, so the operations are fuzzed here with their Hypothesis strategies)."""
    failures: dict[str, str] = {}
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), [r for r in results if not isinstance(r, Ok)]  # schema errors
    routes = [r for r in fuzzed.app.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert {op.label for op in operations} == {f"{m} {r.path}" for r in routes for m in r.methods}
    for operation in operations:
        try:
            fuzz(operation, mode, fuzzed.run_id)
        except Unsatisfiable:  # negative mode: the operation takes nothing that could be made invalid
            assert mode is GenerationMode.NEGATIVE and not operation.path_parameters
        except Exception as failure:  # one operation's failure is reported with the others, not alone
            failures[operation.label] = str(failure)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def fuzz(operation: APIOperation, mode: GenerationMode, run_id: str) -> None:
    """Generated requests to `operation` (any `run_id` is the seeded run), each checked by schemathesis."""
    takes_run = any(p.name == "run_id" for p in operation.path_parameters)
    strategy = operation.as_strategy(mode, path_parameters={"run_id": run_id} if takes_run else None)
    excluded = [positive_data_acceptance] if operation.label in CHECKED_BEYOND_SCHEMA else []

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, excluded_checks=excluded)

    call()
