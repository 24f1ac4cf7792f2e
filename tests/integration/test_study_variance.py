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
    assert "Corr(V, R) and Var(R − V)/Var(R)" in result.stdout
    assert "ratio V1 0.36, V2 0.61, BRPO 0.34" in result.stdout
    assert "the paper's ordering BRPO ≤ V1 < V2" in result.stdout and "past the 4th budget" in result.stdout
    assert (out / "variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "variance.json").read_text())
    assert report["budgets"] == [16, 32, 48, 64] and report["problems"] == 6 and report["temperature"] == 0.6
    assert report["discount"] == 2.0 and report["prior"] == "uniform"
    assert all(0 <= a <= 1 for a in report["accuracy"])
    rows = report["per_budget"]
    traces = [row["traces"] for row in rows]
    assert traces[0] == 6 * 4 and traces == sorted(traces, reverse=True)  # every trace thinks at first
    thinking = report["thinking"]
    assert thinking["traces"] == 6 * 4
    assert [round(share * 24) for share in thinking["past_budget"][:3]] == traces[
        1:
    ]  # the mask is the lengths
    defined = 0
    for name in NAMES:
        for row in rows:
            for stat, bounds in (("ratio", (0, math.inf)), ("corr", (-1, 1))):
                e = row[name][stat]
                if e["value"] is None:
                    assert e["low"] is None and e["high"] is None
                    continue
                defined += 1
                assert bounds[0] <= e["value"] <= bounds[1]
                assert e["low"] <= e["value"] + 1e-9 and e["value"] <= e["high"] + 1e-9
        # The summary is the mask-count-weighted mean of the defined per-budget ratios.
        pairs = [
            (row[name]["ratio"]["value"], row["traces"])
            for row in rows
            if row[name]["ratio"]["value"] is not None
        ]
        if pairs:
            weighted = sum(r * n for r, n in pairs) / sum(n for _, n in pairs)
            assert report["summary"][name]["value"] == pytest.approx(weighted)
    assert defined > 0, "no statistic was defined: every masked return was equal at every budget"
    # V1 is 0 at the first budget: nothing is removed there, and it has no correlation with anything.
    assert rows[0]["v1"]["corr"]["value"] is None
    if rows[0]["v1"]["ratio"]["value"] is not None:
        assert rows[0]["v1"]["ratio"]["value"] == pytest.approx(1.0)
        assert report["first"]["brpo_equals_v2"] is True
    assert report["largest"]["budget"] == 64 and sorted(report["largest"]["order"]) == sorted(NAMES)


def test_bad_grid_is_refused_before_loading_anything(tmp_path: Path) -> None:
    result = anytime_cli(
        "study", "variance", "--model", str(tmp_path), "--data", str(tmp_path / "x.jsonl"), "--b-max", "10",
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "b_max must be a positive multiple" in result.stderr
