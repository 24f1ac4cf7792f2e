"""Anytime rollout of a batch of problems (docs/method.md §2.3) on any engine of the seam.

1. G thinking traces per problem, each stopping at `</think>`, EOS or `b_S`;
2. as soon as a trace is done, one summary request per distinct cut `c_j = min(b_j, len(z))` with
   A × (budgets the cut serves) samples, at most `summary_max_tokens`, stopping only at EOS (a summary
   that writes `</think>` fails the format rule later, it is not cut short here);
3. every trace becomes one `Trajectory` record with the policy version that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anytime.brpo.cuts import Cut, finish_reason, trace_cuts
from anytime.contracts.rollout import RolloutConfig
from anytime.problems import Problem
from anytime.prompting import prompt_ids
from anytime.trajectory import CutRecord, SummarySample, Trajectory, trajectory_id
from services.engines.seam import Engine, GenerationRequest, Sample


@dataclass
class _Trace:
    problem: Problem
    index: int
    prompt: tuple[int, ...]
    thought: Sample | None = None
    cuts: list[Cut] | None = None


def rollout(
    engine: Engine,
    problems: Sequence[Problem],
    config: RolloutConfig,
    run_id: str,
    step: int,
    seed: int = 0,
) -> list[Trajectory]:
    """Trajectories of every (problem, trace), in problem order then trace order."""
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids must be unique within a rollout batch")
    facts = engine.facts
    version = engine.policy_version
    traces: dict[str, _Trace] = {}
    requests = []
    for number, problem in enumerate(problems):
        prompt = tuple(prompt_ids(engine.tokenizer, problem.problem))
        for g in range(config.group_size):
            key = f"think/{number}/{g}"
            traces[key] = _Trace(problem, g, prompt)
            requests.append(
                GenerationRequest(key, prompt, 1, config.b_max, (facts.think_end_id, facts.eos_id))
            )

    overlap = (config.summary_sampling or config.sampling) == config.sampling

    def record_thought(request: GenerationRequest, samples: list[Sample]) -> list[GenerationRequest]:
        trace = traces.get(request.key)
        if trace is None:  # a summary request finished: nothing follows it
            return []
        trace.thought = samples[0]
        trace.cuts = trace_cuts(trace.thought.ids, config.budgets, facts)
        # With one sampling config the summaries start while other traces still think.
        return _summary_requests(trace, request.key, config, facts.eos_id) if overlap else []

    results = engine.generate(requests, config.sampling, record_thought, seed=seed)
    if not overlap:
        summaries = [r for key, t in traces.items() for r in _summary_requests(t, key, config, facts.eos_id)]
        results.update(engine.generate(summaries, config.summary_sampling or config.sampling, seed=seed + 1))
    return [
        _trajectory(engine, trace, key, results, config, run_id, step, version)
        for key, trace in traces.items()
    ]


def _summary_requests(trace: _Trace, key: str, config: RolloutConfig, eos_id: int) -> list[GenerationRequest]:
    """One request per distinct cut, sampled A × (budgets it serves) times, stopping only at EOS."""
    assert trace.thought is not None and trace.cuts is not None
    return [
        GenerationRequest(
            f"{key}/cut/{c}",
            tuple(cut.summary_prompt(trace.prompt, trace.thought.ids)),
            cut.num_samples(config.num_summaries),
            config.summary_max_tokens,
            (eos_id,),
        )
        for c, cut in enumerate(trace.cuts)
    ]


def _trajectory(
    engine: Engine,
    trace: _Trace,
    key: str,
    results: dict[str, list[Sample]],
    config: RolloutConfig,
    run_id: str,
    step: int,
    version: int,
) -> Trajectory:
    assert trace.thought is not None and trace.cuts is not None
    decode = engine.tokenizer.decode
    cuts = []
    for c, cut in enumerate(trace.cuts):
        opening = list(cut.block_prefix_ids)
        summaries = [
            SummarySample(
                ids=list(s.ids),
                logprobs=list(s.logprobs),
                text=decode(list(s.ids), skip_special_tokens=True),
                response=decode([*opening, *s.ids], skip_special_tokens=True),
                finish_reason="eos" if s.finish == "stop" else "length",
            )
            for s in results[f"{key}/cut/{c}"]
        ]
        cuts.append(
            CutRecord(
                budget_indices=list(cut.budget_indices),
                budgets=[config.budgets[j] for j in cut.budget_indices],
                cut=cut.cut,
                inserted_ids=list(cut.inserted_ids),
                delimiter_ids=list(cut.delimiter_ids),
                summaries=summaries,
            )
        )
    thought = trace.thought
    return Trajectory(
        id=trajectory_id(run_id, step, trace.problem.id, trace.index),
        run_id=run_id,
        step=step,
        policy_version=version,
        problem_id=trace.problem.id,
        trace_index=trace.index,
        answer=trace.problem.answer,
        budgets=list(config.budgets),
        num_summaries=config.num_summaries,
        prompt_ids=list(trace.prompt),
        thinking_ids=list(thought.ids),
        thinking_logprobs=list(thought.logprobs),
        finish_reason=finish_reason(thought.ids, engine.facts.think_end_id, engine.facts.eos_id),
        cuts=cuts,
    )
