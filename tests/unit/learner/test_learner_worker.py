"""The learn worker's contract without a worker: torch-free imports, request validation; and the GPU
benchmark's shapes (built on the meta device, nothing allocated)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from anytime.contracts.learn import LEARN_TASK, LearnerConfig, LearnRequest
from tests.conftest import REPO


@pytest.mark.parametrize(
    "module",
    [
        "services.learner.worker",
        "anytime.contracts.learn",
        "services.learner.checkpoint",
        "services.learner.settings",
    ],
)
def test_the_control_plane_can_import_the_contract_without_torch(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "print(','.join(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


def test_learn_request_validates_and_round_trips_through_json() -> None:
    assert LEARN_TASK == "anytime.learn.step"
    paths = {"checkpoint_root": Path("/c"), "model_dir": Path("/m")}
    request = LearnRequest(run_id="r", step=3, policy_version=4, config=LearnerConfig(), **paths)
    assert LearnRequest.model_validate_json(request.model_dump_json()) == request
    # The prior travels with the request: the learner reads it, never re-derives it.
    assert request.config.prior == request.config.brpo.budget_prior()
    with pytest.raises(ValueError, match="config"):
        LearnRequest(run_id="r", step=0, policy_version=1, **paths)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="policy_version"):
        LearnRequest(run_id="r", step=0, policy_version=0, config=LearnerConfig(), **paths)
    with pytest.raises(ValueError, match="lr"):
        LearnRequest.model_validate(
            {
                "run_id": "r",
                "step": 0,
                "policy_version": 1,
                "checkpoint_root": "/c",
                "model_dir": "/m",
                "config": {"lr": -1},
            }
        )


def _benchmark():
    spec = importlib.util.spec_from_file_location("learner_gpu", REPO / "benchmarks" / "learner_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["learner_gpu"] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_shapes_are_the_issues() -> None:
    """1.5B-shaped Qwen2 and 8k packed trees with S = 4, A = 4; the model is built on the meta device."""
    import torch

    bench = _benchmark()
    shape = bench.GPU_SHAPE
    assert (len(shape.budgets), shape.num_summaries) == (4, 4)
    assert shape.tree_tokens == 8144 <= shape.sequence_tokens == 8192
    model = bench.build_model(shape, "sdpa", torch.device("meta"))
    params = sum(p.numel() for p in model.parameters())
    assert 1.7e9 < params < 1.8e9  # R1-Distill-Qwen-1.5B: 1.78B with its untied embeddings
    trajectories, verdicts = bench.synthetic_data(shape, problems=1, step=0)
    from anytime.brpo.config import BRPOConfig
    from services.learner.batch import build_step_batch

    brpo = BRPOConfig(b_max=6000, num_budgets=4, num_summaries=4, summary_max_tokens=118, group_size=4)
    batch = build_step_batch(trajectories, verdicts, brpo, brpo.budget_prior())
    assert [tree.length for tree in batch.trees] == [shape.tree_tokens] * 4


class _FakeLearner:
    def __init__(self, version: int) -> None:
        self.policy_version, self.broken, self.device = version, None, "cpu"


def test_learner_holder_keeps_one_learner_per_run_up_to_its_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from services.learner.holder import LearnerHolder
    from services.learner.learner import Learner
    from services.learner.settings import LearnerSettings

    loads: list[str] = []

    def from_model_dir(model_dir: Path, config: LearnerConfig, device: str, parallel: None) -> _FakeLearner:
        loads.append(str(model_dir))
        return _FakeLearner(0)

    monkeypatch.setattr(Learner, "from_model_dir", staticmethod(from_model_dir))
    holder = LearnerHolder(LearnerSettings(max_learners=2))

    def request(run: str) -> LearnRequest:
        return LearnRequest(
            run_id=run,
            step=0,
            policy_version=1,
            checkpoint_root=tmp_path / run,
            model_dir=tmp_path / f"m-{run}",
            config=LearnerConfig(),
        )

    a, b = holder.at_version(request("a"), None), holder.at_version(request("b"), None)  # type: ignore[arg-type]
    assert holder.at_version(request("a"), None) is a and holder.at_version(request("b"), None) is b  # type: ignore[arg-type]
    assert len(loads) == 2  # interleaved runs keep their learners
    holder.at_version(request("c"), None)  # type: ignore[arg-type]
    assert len(holder.learners) == 2 and holder.key(request("a")) not in holder.learners  # a was least recent
    assert holder.at_version(request("b"), None) is b and len(loads) == 3  # type: ignore[arg-type]
