"""`anytime runs samples`: the last sampled step by default, cuts as rules, every answer's verdict."""

from __future__ import annotations

import json

from tests.unit.api.test_api_routes import Api, api, migrated_db
from tests.unit.api.test_api_samples import sample, store
from tests.unit.cli.test_cli_runs import Cli, cli, one_line_error

__all__ = ["api", "cli", "migrated_db"]  # fixtures this module uses


def test_samples_show_the_last_step_with_its_cuts_and_verdicts(api: Api, cli: Cli) -> None:
    run_id = api.create()["id"]
    store(api, run_id, [sample(run_id, step, "p3", g) for step in (0, 1) for g in (0, 1)])
    code, out, err = cli("runs", "samples", run_id)
    assert code == 0, err
    assert out.count("train step 1 · policy v2 · problem p3") == 2 and "train step 0" not in out
    assert "cut at 2 tokens · budget 2 · thinking advantage +0.500" in out
    assert "cut at 3 tokens · budget 4 · thinking advantage -0.500" in out
    assert "correct" in out and "+0.250" in out and "gold 0" in out
    assert "2 of 2 traces of train step 1" in out
    code, out, _ = cli("runs", "samples", run_id, "--step", "0", "--json")
    assert code == 0 and [s["step"] for s in json.loads(out)] == [0, 0]


def test_samples_of_a_run_without_any_say_so(api: Api, cli: Cli) -> None:
    run_id = api.create()["id"]
    code, _, err = cli("runs", "samples", run_id)
    assert "has no train samples yet" in one_line_error(code, err)
    store(api, run_id, [sample(run_id, 0, "p", 0)])
    code, _, err = cli("runs", "samples", run_id, "--step", "5")
    assert "no train samples at step 5" in one_line_error(code, err)
    code, _, err = cli("runs", "samples", run_id, "--eval")
    assert "no eval samples" in one_line_error(code, err)
