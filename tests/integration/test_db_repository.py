"""The repository on SQLite and on a real PostgreSQL, both migrated by Alembic: status transitions,
cancel, idempotent worker writes, pagination and filters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.verify import BudgetReward
from anytime.db import repository
from anytime.db.models import Run, RunStatus
from anytime.db.repository import InvalidTransition, RunNotFound
from anytime.db.session import make_engine, make_session_factory, session_scope
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.verdict import Status
from tests.fixtures.servers import PostgresServer

REPO = Path(__file__).resolve().parents[2]
CONFIG = RunConfig(model="models/tiny", dataset="data/train.jsonl", b_max=64, num_budgets=4, name="r")
Q, R, S, F, C = (
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)


def migrate(url: str) -> None:
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def fresh_postgres_database(server: PostgresServer, name: str) -> str:
    """A new empty database on the session's server (tests of other modules keep theirs)."""
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer) -> str:
    url = fresh_postgres_database(postgres_server, "anytime_repository")
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        database = tmp_path / "anytime.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), database)
        engine = make_engine(f"sqlite:///{database}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
    try:
        yield engine
    finally:
        with engine.begin() as connection:
            connection.execute(delete(Run))  # children go with their run (ON DELETE CASCADE)
        engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def new_run(sessions: sessionmaker[Session], *path: RunStatus) -> str:
    with session_scope(sessions) as session:
        run_id = repository.create_run(session, CONFIG).id
        for status in path:
            repository.set_status(session, run_id, status)
    return run_id


def rewards(problems: int = 3, budgets: int = 4, reward: float = 1.0) -> list[BudgetReward]:
    return [
        BudgetReward(
            problem_id=f"p{p}",
            trace_index=t,
            budget_index=b,
            summary_index=a,
            cut=16 * (b + 1),
            inserted_start=20,
            inserted_end=23,
            answer="42",
            status=Status.CORRECT,
            reward=reward,
        )
        for p in range(problems)
        for t in range(2)
        for b in range(budgets)
        for a in range(2)
    ]


def test_create_run_stores_the_config_and_the_budget_prior(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions)
    with sessions() as session:
        run = repository.require_run(session, run_id)
        assert run.status is Q and run.step == -1 and run.policy_version == 0 and not run.cancel_requested
        assert run.run_config() == CONFIG and run.name == "r"
        assert run.created_at.tzinfo is not None
        prior = RunPlan.from_config(CONFIG).prior
        budgets = repository.list_budgets(session, run_id)
        assert [b.tokens for b in budgets] == list(prior.budgets)
        assert [b.probability for b in budgets] == pytest.approx(list(prior.probs))
        assert repository.get_run(session, "missing") is None


ALLOWED = [(Q, R), (Q, C), (Q, F), (R, S), (R, F), (R, C), (F, Q), (C, Q)]
PATHS = {Q: [], R: [R], S: [R, S], F: [R, F], C: [C]}


@pytest.mark.parametrize("source", list(RunStatus))
def test_transitions_follow_the_table(sessions: sessionmaker[Session], source: RunStatus) -> None:
    for target in RunStatus:
        run_id = new_run(sessions, *PATHS[source])
        with session_scope(sessions) as session:
            if (source, target) in ALLOWED:
                assert repository.set_status(session, run_id, target).status is target
            else:
                with pytest.raises(InvalidTransition, match=f"is {source}; it cannot become {target}") as err:
                    repository.set_status(session, run_id, target)
                assert err.value.current is source
                assert repository.require_run(session, run_id).status is source


def test_timestamps_errors_and_resume(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions, R)
    with session_scope(sessions) as session:
        started = repository.require_run(session, run_id).started_at
        assert started is not None
        failed = repository.set_status(session, run_id, F, error="ValueError: bad batch")
        assert failed.error == "ValueError: bad batch" and failed.finished_at is not None
    with session_scope(sessions) as session:
        queued = repository.set_status(session, run_id, Q)
        assert queued.error is None and queued.finished_at is None and queued.started_at == started
        running = repository.set_status(session, run_id, R)
        assert running.started_at == started  # a resumed run keeps its first start
    with pytest.raises(RunNotFound), session_scope(sessions) as session:
        repository.set_status(session, "missing", R)


def test_cancel(sessions: sessionmaker[Session]) -> None:
    queued, running, done = new_run(sessions), new_run(sessions, R), new_run(sessions, R, S)
    with session_scope(sessions) as session:
        now = repository.request_cancel(session, queued)
        assert now.status is C and now.finished_at is not None
        later = repository.request_cancel(session, running)
        assert later.status is R and later.cancel_requested
        assert repository.request_cancel(session, running).cancel_requested  # asking twice is harmless
        with pytest.raises(InvalidTransition, match="is succeeded"):
            repository.request_cancel(session, done)
        with pytest.raises(RunNotFound):
            repository.request_cancel(session, "missing")
        # the driver stops the running one at its next boundary
        assert repository.set_status(session, running, C).status is C
        assert repository.set_status(session, running, Q).cancel_requested is False


def test_status_changes_compare_and_set_so_no_update_is_lost(sessions: sessionmaker[Session]) -> None:
    """The API read a running run; the driver finishes it; the API's cancel must see the new status."""
    run_id = new_run(sessions, R)
    with sessions() as api, sessions() as driver:
        assert repository.require_run(api, run_id).status is R
        repository.set_status(driver, run_id, S)
        driver.commit()
        with pytest.raises(InvalidTransition, match="is succeeded"):
            repository.request_cancel(api, run_id)
        api.rollback()
        assert repository.require_run(api, run_id).status is S


def test_worker_writes_are_idempotent(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions, R)
    with session_scope(sessions) as session:
        first = repository.record_step(session, run_id, 0, 1, {"loss": 0.25, "grad_norm": float("nan")})
        assert first.metrics == {"loss": 0.25, "grad_norm": None}
        assert repository.record_step(session, run_id, 0, 1, {"loss": 9.0}).metrics == first.metrics
        assert repository.record_rewards(session, run_id, 0, rewards()) == 48
        assert repository.record_rewards(session, run_id, 0, rewards(reward=0.0)) == 0
        assert repository.record_rewards(session, run_id, 0, rewards(problems=4)) == 16
        checkpoint = repository.record_checkpoint(session, run_id, 1, 0, "/ckpt/v1")
        again = repository.record_checkpoint(session, run_id, 1, 0, "/elsewhere")
        assert (again.id, again.path) == (checkpoint.id, "/ckpt/v1")
        evaluation = repository.record_evaluation(session, run_id, 1, 0, [16, 32], [0.25, 0.5], 0.4)
        again_eval = repository.record_evaluation(session, run_id, 1, 0, [16, 32], [0.0, 0.0], 0.0)
        assert again_eval.id == evaluation.id and again_eval.accuracy == [0.25, 0.5]
        with pytest.raises(ValueError, match="one accuracy per budget"):
            repository.record_evaluation(session, run_id, 2, 1, [16, 32], [0.5], 0.5)
    with sessions() as session:
        rows, total = repository.list_rewards(session, run_id, limit=1000)
        assert total == 64 and all(r.reward == 1.0 for r in rows)


def test_many_rewards_in_one_call(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions, R)
    rows = rewards(problems=70)  # 1120 rows: more than one INSERT chunk
    with session_scope(sessions) as session:
        assert repository.record_rewards(session, run_id, 0, rows) == len(rows)
        assert repository.record_rewards(session, run_id, 0, rows) == 0


def test_policy_pointer_never_moves_back(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions, R)
    with session_scope(sessions) as session:
        assert (repository.set_policy_version(session, run_id, 2, 1).step, 2) == (1, 2)
        stale = repository.set_policy_version(session, run_id, 1, 0)
        assert (stale.policy_version, stale.step) == (2, 1)
        assert repository.set_mlflow_run_id(session, run_id, "abc123").mlflow_run_id == "abc123"
        with pytest.raises(RunNotFound):
            repository.set_policy_version(session, "missing", 1, 0)
        with pytest.raises(RunNotFound):
            repository.set_mlflow_run_id(session, "missing", "x")


def test_readers_page_filter_and_order(sessions: sessionmaker[Session]) -> None:
    ids = [new_run(sessions) for _ in range(4)]
    with session_scope(sessions) as session:
        repository.set_status(session, ids[2], R)
        for step in (1, 0):
            repository.record_rewards(session, ids[2], step, rewards())
            repository.record_step(session, ids[2], step, step + 1, {"loss": float(step)})
            repository.record_checkpoint(session, ids[2], step + 1, step, f"/v{step + 1}")
        repository.record_evaluation(session, ids[2], 2, 1, [16], [0.5], 0.5)
        repository.record_evaluation(session, ids[2], 0, -1, [16], [0.1], 0.1)
    with sessions() as session:
        runs, total = repository.list_runs(session, offset=1, limit=2)
        assert total == 4 and [r.id for r in runs] == [ids[2], ids[1]]
        running, total = repository.list_runs(session, status=R)
        assert total == 1 and running[0].id == ids[2]
        assert [s.step for s in repository.list_steps(session, ids[2])[0]] == [0, 1]
        page, total = repository.list_rewards(session, ids[2], step=1, budget_index=3, offset=2, limit=3)
        assert total == 12 and len(page) == 3
        assert all((r.step, r.budget_index) == (1, 3) for r in page)
        assert [(r.problem_id, r.trace_index, r.summary_index) for r in page] == [
            ("p0", 1, 0),
            ("p0", 1, 1),
            ("p1", 0, 0),
        ]
        assert [c.policy_version for c in repository.list_checkpoints(session, ids[2])] == [1, 2]
        latest = repository.latest_checkpoint(session, ids[2])
        assert latest is not None and latest.path == "/v2"
        assert repository.latest_checkpoint(session, ids[0]) is None
        assert [e.policy_version for e in repository.list_evaluations(session, ids[2])] == [0, 2]
        with pytest.raises(ValueError, match="limit"):
            repository.list_runs(session, limit=0)


def test_deleting_a_run_deletes_what_it_produced(sessions: sessionmaker[Session]) -> None:
    run_id = new_run(sessions, R)
    with session_scope(sessions) as session:
        repository.record_rewards(session, run_id, 0, rewards())
        repository.record_step(session, run_id, 0, 1, {"loss": 1.0})
        repository.record_checkpoint(session, run_id, 1, 0, "/v1")
    with session_scope(sessions) as session:
        session.execute(delete(Run).where(Run.id == run_id))
    with sessions() as session:
        assert repository.list_rewards(session, run_id)[1] == 0
        assert repository.list_budgets(session, run_id) == []
        assert repository.list_checkpoints(session, run_id) == []


def test_writes_for_an_unknown_run_are_refused(sessions: sessionmaker[Session]) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        repository.record_step(session, "missing", 0, 1, {"loss": 1.0})
