"""A training run's configuration as users write it (REST body, `anytime runs create --config FILE.yaml`).

A run config is composed of its sections, each the single declaration of its fields and their defaults:
`method` (the algorithm: `anytime.brpo.config.BRPOConfig`), `rollout` (`RolloutSection`), `learner`
(`anytime.contracts.learn.LearnerSection`) and `evaluation` (`EvalSection`), beside the run's own fields
(model, data, schedule, seed). Class defaults are the paper's; a `preset` names a set of defaults for the
fields a body leaves out: `tiny-cpu` (the default: the embedded tiny model and synthetic task on a CPU) or
`paper-1.5b` (the paper's 1.5B runs). A preset is data (`PRESETS`), never a second class.

Bodies may be written flat, as they always were (`b_max: 128`, `lr: 1e-4`, `eval_dataset: …`): each flat
field is moved into its section before validation (`FLAT_FIELDS`); `RunConfig.flat()` gives that view back.
Setting a field both flat and in its section is refused, saying which to keep.

Validated: a bad value is refused with a message that says how to fix it (the API answers 422 with it).
What the run resolves to (budgets, prior, the jobs' settings) is its plan (`anytime.run_plan.RunPlan`),
built once from a validated config when the run is created, stored with it and carried by every job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.config import BRPOConfig
from anytime.contracts.learn import LearnerSection, OldLogProbs
from anytime.problems import DatasetColumns, ProblemColumns
from anytime.samples import DEFAULT_SAMPLE_PROBLEMS

# b_max becomes budget rows (SQL INTEGER, so no larger); the other token counts and sizes share its bound.
_MAX_SQL_INT = 2**31 - 1

# k when `evaluation.samples` is unset and the evaluation samples (temperature above 0); greedy is 1.
DEFAULT_EVAL_SAMPLES = 4

Preset = Literal["tiny-cpu", "paper-1.5b"]

# Defaults per preset for the fields a body leaves out, by section; the class defaults are the paper's.
PRESETS: Mapping[str, Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        # The embedded default: a tiny model, a synthetic task, a 2-core CPU.
        "tiny-cpu": MappingProxyType(
            {
                "method": MappingProxyType({"b_max": 128, "group_size": 4, "summary_max_tokens": 32}),
                "learner": MappingProxyType({"lr": 1e-5}),
            }
        ),
        # The paper's 1.5B runs (docs/method.md §5.2): b_max 8000, G = 8, 128-token summaries, lr 1e-6.
        "paper-1.5b": MappingProxyType({}),
    }
)


class RolloutSection(BaseModel):
    """How the rollout samples and how far it may run ahead of the learner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of thinking and answers.")
    max_staleness: int = Field(
        default=0,
        ge=0,
        le=8,
        description="k: the rollouts of the next k steps run while the learner trains, on a policy at most k "
        "versions behind (corrected by a truncated importance weight); 0: on-policy, every step waits for "
        "the last update.",
    )
    shards: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Rollout tasks per step, each whole problem groups, shared by the rollout workers; "
        "unset: one per live rollout worker.",
    )


class EvalSection(BaseModel):
    """The held-out evaluation: which problems, how often, on which budget grid, how sampled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str | None = Field(default=None, description="Held-out problems; unset: no evaluation.")
    dataset_columns: DatasetColumns = Field(
        default_factory=ProblemColumns,
        description="Where the held-out records keep the problem and its answer (as `dataset_columns`).",
    )
    interval: int = Field(
        default=0,
        ge=0,
        le=_MAX_SQL_INT,
        description="Evaluate every N steps (and at the end); 0: only before and after.",
    )
    problems: int = Field(default=64, ge=1, le=_MAX_SQL_INT)
    num_budgets: int = Field(default=4, ge=1, le=64, description="Uniform evaluation grid size.")
    samples: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=f"k: traces per eval problem (one summary per trace and budget); unset: "
        f"{DEFAULT_EVAL_SAMPLES}, 1 if greedy.",
    )
    temperature: float = Field(
        default=0.6,
        ge=0,
        le=10,
        description="Evaluation sampling temperature (the authors' 0.6); 0: greedy, one trace per problem.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Eval sampling seed: same seed and policy, same numbers; keep it across compared arms.",
    )
    sample_problems: int = Field(
        default=DEFAULT_SAMPLE_PROBLEMS,
        ge=0,
        le=64,
        description="Eval problems whose traces every evaluation keeps in full (GET /v1/runs/{id}/samples "
        "?kind=eval, MLflow); the first ones of the eval set; 0: none.",
    )

    @model_validator(mode="after")
    def _valid_sampling(self) -> EvalSection:
        if self.temperature == 0 and self.samples not in (None, 1):
            raise ValueError(
                f"eval_temperature 0 is greedy: its {self.samples} eval_samples would be one trace "
                "repeated; leave eval_samples unset (or 1), or sample at a temperature above 0 (e.g. 0.6)"
            )
        return self

    @property
    def resolved_samples(self) -> int:
        """k: the set value, else one trace when greedy and `DEFAULT_EVAL_SAMPLES` when sampling."""
        if self.samples is not None:
            return self.samples
        return 1 if self.temperature == 0 else DEFAULT_EVAL_SAMPLES


# The sections, by name, and the flat field names that live in each: flat name → the section's field.
_SECTIONS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {"method": BRPOConfig, "rollout": RolloutSection, "learner": LearnerSection, "evaluation": EvalSection}
)
FLAT_FIELDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        **{name: ("method", name) for name in BRPOConfig.model_fields},
        "temperature": ("rollout", "temperature"),
        "max_staleness": ("rollout", "max_staleness"),
        "rollout_shards": ("rollout", "shards"),
        "lr": ("learner", "lr"),
        **{f"eval_{name}": ("evaluation", name) for name in EvalSection.model_fields},
    }
)
# Keys the `learner:` section took before they moved to another section (old bodies keep working).
_LEARNER_KEYS_MOVED: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "clip_low": ("method", "clip_low"),
        "clip_high": ("method", "clip_high"),
        "discount": ("method", "discount"),
        "max_policy_lag": ("rollout", "max_staleness"),
    }
)


def nest_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A run config body with its flat fields moved into their sections (what `RunConfig` validates).

    Raises `ValueError` when a field is set twice (flat and in its section), saying which to keep.
    """
    nested: dict[str, Any] = {k: v for k, v in body.items() if k not in FLAT_FIELDS}
    sections: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        value = nested.pop(name, None)
        if value is None:
            sections[name] = {}
        elif isinstance(value, Mapping):
            sections[name] = dict(value)
        else:
            nested[name] = value  # not a mapping: let the section's validation say so
    learner = sections["learner"]
    for key, where in (("temperature", "rollout.temperature"), ("seed", "the run's seed")):
        if key in learner:
            raise ValueError(f"learner.{key} is not a learner knob: set {where} (or a top-level {key})")
    for key, (section, field) in _LEARNER_KEYS_MOVED.items():
        if key in learner:
            value = learner.pop(key)
            if value is not None:
                _place(sections, section, field, value, f"learner.{key}")
    for key, (section, field) in FLAT_FIELDS.items():
        if key in body:
            _place(sections, section, field, body[key], key)
    for name, fields in sections.items():
        nested.setdefault(name, fields)
    return nested


def _place(sections: dict[str, dict[str, Any]], section: str, field: str, value: Any, given_as: str) -> None:
    if field in sections[section] and sections[section][field] != value:
        raise ValueError(
            f"{given_as} and {section}.{field} are one field set twice with different values; "
            f"keep {section}.{field} only"
        )
    sections[section][field] = value


def flat_location(loc: Sequence[str | int], body: Any) -> tuple[str | int, ...]:
    """Where in `body` a validation error of its section's field is, as the body wrote it: a sectioned
    location (`method`, `group_size`) becomes the flat one (`group_size`) when the body set the field flat,
    and an error of a whole section the body did not write is an error of the body (`()`)."""
    if len(loc) == 0 or loc[0] not in _SECTIONS or not isinstance(body, Mapping):
        return tuple(loc)
    section = str(loc[0])
    if len(loc) > 1:
        for flat, (owner, field) in FLAT_FIELDS.items():
            if (owner, field) == (section, loc[1]) and flat in body:
                return (flat, *loc[2:])
    elif section not in body:
        return ()
    return tuple(loc)


def merge_bodies(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override`'s fields over `base`'s, section by section (flat or nested, as either is written)."""
    merged = nest_body(base)
    for key, value in nest_body(override).items():
        if key in _SECTIONS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",  # no control characters (PostgreSQL refuses a NUL in text)
        description="A label for lists and MLflow.",
    )
    model: str = Field(min_length=1, description="A Hugging Face model folder, or a hub name (GPU use).")
    dataset: str = Field(
        min_length=1,
        description="Training problems: a .jsonl, .json or .parquet file, a Hugging Face dataset folder "
        "(save_to_disk) or hf:OWNER/NAME[:SPLIT] from the hub.",
    )
    dataset_columns: DatasetColumns = Field(
        default_factory=ProblemColumns,
        description="Where the training records keep the problem and its answer: a preset (deepscaler: "
        "problem / answer; verl: the prompt chat / reward_model.ground_truth; math: problem / the last "
        "\\boxed{} of solution) or {problem: COLUMN, answer: COLUMN, answer_from: value | last_boxed}.",
    )
    preset: Preset = Field(
        default="tiny-cpu",
        description="Defaults for the fields left out: tiny-cpu (b_max 128, G 4, summaries of 32 tokens, "
        "lr 1e-5) | paper-1.5b (the paper's: b_max 8000, G 8, 128, 1e-6).",
    )
    steps: int = Field(default=4, ge=1, le=100_000, description="Policy updates (rollout → verify → learn).")
    problems_per_step: int = Field(default=8, ge=1, le=4096)
    prompt_suffix: str = Field(
        default="",
        max_length=1000,
        pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$",  # no control characters but tab and newline
        description="Text after every training and evaluation problem, inside the user turn (the authors': "
        '" Let\'s think step by step and output the final answer within \\boxed{}."); empty: the problem '
        "alone. Leave it empty for verl parquets, whose prompts carry it already.",
    )
    samples_per_step: int = Field(
        default=DEFAULT_SAMPLE_PROBLEMS,
        ge=0,
        le=64,
        description="Problems per step whose traces are kept in full (the prompt, the thinking cut at its "
        "budgets, every answer with its verdict, reward and advantages): GET /v1/runs/{id}/samples, "
        "`anytime runs samples`, MLflow; 0: none.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="What torch and numpy seeds take.")
    method: BRPOConfig = Field(
        default_factory=BRPOConfig, description="The algorithm: budgets, prior, G, A, estimators, PPO clips."
    )
    rollout: RolloutSection = RolloutSection()
    learner: LearnerSection = Field(
        default_factory=LearnerSection, description="The optimiser, batching, precision and checkpoint knobs."
    )
    evaluation: EvalSection = EvalSection()

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Flat fields into their sections, then the preset's defaults for what is left out."""
        if not isinstance(data, Mapping):
            return data
        nested = nest_body(data)
        preset = nested.get("preset", cls.model_fields["preset"].default)
        for section, defaults in PRESETS.get(preset, {}).items():
            fields = nested.get(section)
            if isinstance(fields, dict):
                nested[section] = {**defaults, **fields}
        return nested

    @model_validator(mode="after")
    def _valid_grid(self) -> RunConfig:
        if self.evaluation.dataset is not None and self.method.b_max % self.evaluation.num_budgets:
            raise ValueError(
                f"b_max ({self.method.b_max}) must be a multiple of eval_num_budgets "
                f"({self.evaluation.num_budgets}) so the evaluation budgets are whole tokens"
            )
        return self

    @model_validator(mode="after")
    def _valid_staleness(self) -> RunConfig:
        temperature = self.rollout.temperature
        if self.rollout.max_staleness and temperature != 1.0:
            raise ValueError(
                f"max_staleness {self.rollout.max_staleness} needs temperature 1: stale trajectories are "
                "corrected with the engine's recorded log-probs, which are the untempered distribution's, "
                f"not the sampling policy's at temperature {temperature}; set max_staleness 0 or "
                "temperature 1"
            )
        if self.learner.old_logprobs is OldLogProbs.ROLLOUT and temperature != 1.0:
            raise ValueError(
                "old_logprobs 'rollout' needs temperature 1: engines record the untempered distribution's "
                f"log-probs, which is not the sampling policy at temperature {temperature}; "
                "use old_logprobs 'recompute'"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """The config as JSON with every sectioned field under its flat name (`FLAT_FIELDS`), the learner's
        other knobs under `learner`: the form bodies have always been written in."""
        dumped = self.model_dump(mode="json")
        flat = {k: v for k, v in dumped.items() if k not in _SECTIONS}
        for key, (section, field) in FLAT_FIELDS.items():
            flat[key] = dumped[section][field]
        flat["learner"] = {k: v for k, v in dumped["learner"].items() if k != "lr"}
        return flat
