"""The paper's Figure 3 as drawn here: two panels (Corr(V, R) left, Var(R − V)/Var(R) right), banded lines."""

from __future__ import annotations

import struct

import pytest

from anytime.variance_plot import Banded, BaselineSeries, variance_figure, variance_png

BUDGETS = [16, 32, 48]


def _series() -> list[BaselineSeries]:
    v1 = BaselineSeries(
        "V1 only",
        BUDGETS,
        Banded([None, 0.4, 0.6], [None, 0.3, 0.5], [None, 0.5, 0.7]),  # undefined at the first budget: a gap
        Banded([1.0, 0.8, 0.5], [1.0, 0.7, 0.4], [1.0, 0.9, 0.6]),
    )
    v2 = BaselineSeries(
        "V2 only (GRPO-like)",
        BUDGETS,
        Banded([0.9, 0.8, 0.6], [0.85, 0.7, 0.5], [0.95, 0.9, 0.7]),
        Banded([0.2, 0.4, 0.7], [0.1, 0.3, 0.6], [0.3, 0.5, 0.8]),
    )
    return [v1, v2]


def test_figure_has_the_two_panels_with_a_line_and_band_per_baseline() -> None:
    figure = variance_figure(_series(), "tiny: 2 problems")
    assert len(figure.axes) == 2
    corr, ratio = figure.axes
    assert corr.get_ylabel() == "Corr(V, R)" and ratio.get_ylabel() == "Var(R − V) / Var(R)"
    for axes in (corr, ratio):
        labels = [line.get_label() for line in axes.get_lines() if not line.get_label().startswith("_")]
        assert labels == ["V1 only", "V2 only (GRPO-like)"]
        assert len(axes.collections) == 2  # one band each
    legend = ratio.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == [
        "V1 only",
        "V2 only (GRPO-like)",
    ]


def test_png_is_a_valid_png_of_the_figure_size() -> None:
    data = variance_png(_series(), "tiny")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1100, 420)
    assert data.endswith(b"IEND\xaeB`\x82")


def test_one_value_and_band_edge_per_budget() -> None:
    with pytest.raises(ValueError, match="per budget"):
        BaselineSeries("x", BUDGETS, Banded([0.1], [0.0], [0.2]), Banded([1.0] * 3, [1.0] * 3, [1.0] * 3))
