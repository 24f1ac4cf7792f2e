"""Each knob of a run is declared once, with one default: a walk over every config model of `RunConfig`."""

from __future__ import annotations

import inspect
from collections import Counter

from pydantic import BaseModel

from anytime.brpo.config import BRPOConfig
from anytime.contracts.learn import LearnerConfig, LearnerSection
from anytime.contracts.rollout import RolloutConfig
from anytime.run_config import FLAT_FIELDS, PRESETS, EvalSection, RolloutSection, RunConfig


def _config_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """`model` and every model its fields hold, depth first (each once)."""
    found: list[type[BaseModel]] = [model]
    for field in model.model_fields.values():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in found:
            found += [m for m in _config_models(kind) if m not in found]
    return found


def _declared(model: type[BaseModel]) -> set[str]:
    """The fields the class itself declares (not those it inherits)."""
    return set(inspect.get_annotations(model))


def test_the_walk_finds_every_section() -> None:
    models = _config_models(RunConfig)
    assert {RunConfig, BRPOConfig, RolloutSection, LearnerSection, EvalSection} <= set(models)


def test_no_knob_is_declared_in_two_config_models() -> None:
    """Every field of the tree has one name a user writes it by (its flat name: `b_max`, `eval_seed`,
    `learner.weight_decay`), and no two fields share one."""
    sections = {
        "method": BRPOConfig,
        "rollout": RolloutSection,
        "learner": LearnerSection,
        "evaluation": EvalSection,
    }
    flat_of = {(section, field): flat for flat, (section, field) in FLAT_FIELDS.items()}
    names: list[str] = [name for name in _declared(RunConfig) if name not in sections]
    for section, model in sections.items():
        for field in model.model_fields:
            names.append(flat_of.get((section, field), f"{section}.{field}"))
    assert [name for name, n in Counter(names).items() if n > 1] == []
    # A model of the tree declares each of its fields itself or inherits it: never both.
    for model in _config_models(RunConfig):
        inherited = {name for base in model.__mro__[1:] for name in inspect.get_annotations(base)}
        assert not _declared(model) & inherited, model


def test_a_job_contract_re_declares_no_default_of_the_config() -> None:
    """The rollout's part of the plan carries resolved values: G, A and the summary cap are required there,
    their one default being `BRPOConfig`'s; the learner's job inherits its knobs from `LearnerSection`."""
    for name in ("group_size", "num_summaries", "summary_max_tokens"):
        assert RolloutConfig.model_fields[name].is_required(), name
    assert issubclass(LearnerConfig, LearnerSection)
    assert not _declared(LearnerConfig) & set(LearnerSection.model_fields)


def test_every_preset_names_fields_of_its_sections() -> None:
    sections = {
        "method": BRPOConfig,
        "learner": LearnerSection,
        "rollout": RolloutSection,
        "evaluation": EvalSection,
    }
    for preset, by_section in PRESETS.items():
        for section, defaults in by_section.items():
            assert set(defaults) <= set(sections[section].model_fields), (preset, section)
