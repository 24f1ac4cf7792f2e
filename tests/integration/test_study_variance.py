"""`anytime study variance` end to end on the warm-started tiny model: rollout, verifier, ratios, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import anytime_cli

pytestmark = pytest.mark.integration

NAMES = ("brpo", "v1", "v2")


@pytest.mark.slow
def test_variance_study_writes_consistent_ratios_table_and_figure(
    warm_model_dir: Path, tmp_path: Path
) -> None:
    data, out = tmp_path / "problems.jsonl", tmp_path / "study"
    anytime_cli("data", "synth", "--n", "6", "--seed", "2", "--out", str(data))
    # b_max 64 over 4 budgets: the warm start's thoughts end anywhere in it, so the mask bites.
    result = anytime_cli(
        "study", "variance", "--model", str(warm_model_dir), "--data", str(data), "--out", str(out),
        "--problems", "6", "--group", "4", "--summaries", "2", "--b-max", "64", "--num-budgets", "4",
        "--summary-tokens", "24", "--resamples", "300", "--seed", "0",
    )  # fmt: skip
    assert "Var(Q − V)/Var(Q)" in result.stdout and "brpo 0.34, v1 0.36, v2 0.61" in result.stdout
    assert (out / "variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "variance.json").read_text())
    assert report["budgets"] == [16, 32, 48, 64] and report["problems"] == 6 and report["temperature"] == 0.6
    assert all(0 <= a <= 1 for a in report["accuracy"])

    traces = [e["traces"] for e in report["ratios"]["brpo"]]
    assert traces[0] == 6 * 4 and traces == sorted(traces, reverse=True)  # every trace thinks at first
    defined = 0
    for name in NAMES:
        estimates = report["ratios"][name]
        assert [e["traces"] for e in estimates] == traces  # one mask for every baseline
        for e in [*estimates, report["summary"][name]]:
            if e["ratio"] is None:
                continue
            defined += 1
            assert 0 <= e["ratio"] < math.inf
            assert e["low"] <= e["ratio"] + 1e-9 and e["ratio"] <= e["high"] + 1e-9
        # The summary is the mask-count-weighted mean of the defined per-budget ratios.
        pairs = [(e["ratio"], e["traces"]) for e in estimates if e["ratio"] is not None]
        if pairs:
            weighted = sum(r * n for r, n in pairs) / sum(n for _, n in pairs)
            assert report["summary"][name]["ratio"] == pytest.approx(weighted)
    assert defined > 0, "no ratio was defined: every masked return was equal at every budget"
    # V1 is 0 at the first budget: nothing is removed there.
    if report["ratios"]["v1"][0]["ratio"] is not None:
        assert report["ratios"]["v1"][0]["ratio"] == pytest.approx(1.0)


def test_bad_grid_is_refused_before_loading_anything(tmp_path: Path) -> None:
    result = anytime_cli(
        "study", "variance", "--model", str(tmp_path), "--data", str(tmp_path / "x.jsonl"), "--b-max", "10",
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "b_max must be a positive multiple" in result.stderr
