"""`prompt_suffix`: the text the authors put after every problem reaches every rollout job's problems."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from anytime.problems import Problem, with_prompt_suffix
from tests.unit.control.test_step_pipeline import RecordingTasks, _drive, sessions

__all__ = ["sessions"]  # fixtures this module uses

AUTHORS = " Let's think step by step and output the final answer within \\boxed{}."


def test_every_rollout_problem_carries_the_suffix(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    tasks = RecordingTasks()
    _drive(sessions, tmp_path, tasks, steps=1, prompt_suffix=AUTHORS)
    problems = [p for job in tasks.rollouts for p in job.problems]
    assert len(problems) == 4 and all(p.problem == "x" + AUTHORS for p in problems)


def test_an_empty_suffix_leaves_the_problems_alone() -> None:
    problems = [Problem(id="a", problem="2+2?", answer="4")]
    assert with_prompt_suffix(problems, "") == problems
    assert with_prompt_suffix(problems, " Box it.")[0].problem == "2+2? Box it."
