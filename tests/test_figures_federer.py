"""Tests for neurobias.figures.federer (Fig. 6 and 7's panels): drawn artists equal the learning-curve
statistics (made by the stats_learning_curves job in tests/test_federer.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurobias.figures.federer import (
    STAR_GID,
    draw_accuracy_vs_label_noise,
    draw_accuracy_vs_r,
    draw_metric_over_epochs,
    draw_teacher_bars,
)
from neurobias.rule_params import federer_roles
from test_federer import EPOCHS, JIT, _final_mean, fig_inputs  # noqa: F401  (fig_inputs: a fixture)


def _ax():
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def test_teacher_bars_heights_and_marks(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    teachers = federer_roles(study)["teachers"]
    ax = draw_teacher_bars(_ax(), summary, tests, metric="test_accuracy", arms=teachers)
    bars = {p.get_gid()[len("arm:"):]: p for p in ax.patches if (p.get_gid() or "").startswith("arm:")}
    assert list(bars) == teachers
    for i, arm in enumerate(teachers):
        assert bars[arm].get_height() == pytest.approx(_final_mean(summary, arm))
        assert bars[arm].get_x() + bars[arm].get_width() / 2 == pytest.approx(i)
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    last = summary["epoch"].max()
    sig = tests[(tests["level"] == 0.0) & (tests["epoch"] == last) & (tests["metric"] == "test_accuracy")
                & (tests["p"] < 0.05)]
    assert set(sig["arm"]) == {"v1"}  # 0.80 vs 0.60 on clean labels; the others are not better
    assert len(stars) == 1
    assert stars[0].get_text() in ("*", "**")
    assert stars[0].xy[0] == pytest.approx(teachers.index("v1"))
    assert stars[0].xy[1] >= bars["v1"].get_height()


def test_curve_marks_only_at_the_final_epoch(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_metric_over_epochs(_ax(), summary, tests, metric="test_accuracy", arms=("no_neural", "v1"),
                                 levels=[0.0, 0.5])
    stars = [t for t in ax.texts if t.get_gid() == STAR_GID]
    assert stars and {t.xy[0] for t in stars} == {max(EPOCHS)}
    final = tests[(tests["arm"] == "v1") & (tests["metric"] == "test_accuracy")]
    assert sorted(t.get_text() for t in stars) == sorted(m for m in final["significance"].fillna("") if m)


def test_panel_c_without_superclasses(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_teacher_bars(_ax(), summary, tests, metric="within_superclass_error",
                           arms=federer_roles(study)["teachers"])
    assert any("no superclasses" in t.get_text() for t in ax.texts)
    assert not [p for p in ax.patches if (p.get_gid() or "").startswith("arm:")]


def test_accuracy_vs_label_noise_lines(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_accuracy_vs_label_noise(_ax(), summary, tests, baseline="no_neural", teacher="v1")
    # errorbar gives its caps the same gid; the data line is the one drawn with a line style
    lines = {l.get_gid()[len("arm:"):]: l for l in ax.get_lines()
             if (l.get_gid() or "").startswith("arm:") and l.get_linestyle() not in ("None", "none", "")}
    assert set(lines) == {"no_neural", "v1"}
    for arm, line in lines.items():
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.0, 0.5])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float),
                                   [_final_mean(summary, arm, 0.0), _final_mean(summary, arm, 0.5)])
    # hand values at the last epoch: no_neural 0.40 + 0.20 and 0.20 + 0.04, plus mean(JIT)
    np.testing.assert_allclose(np.asarray(lines["no_neural"].get_ydata(), float), np.array([0.60, 0.24]) + np.mean(JIT))


def test_metric_over_epochs_and_r_panel(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    ax = draw_metric_over_epochs(_ax(), summary, tests, metric="test_accuracy", arms=("no_neural", "v1"), levels=[0.5])
    lines = {l.get_gid(): l for l in ax.get_lines() if (l.get_gid() or "").startswith("arm:")}
    assert set(lines) == {"arm:no_neural:0.5", "arm:v1:0.5"}
    np.testing.assert_allclose(np.asarray(lines["arm:v1:0.5"].get_xdata(), float), EPOCHS)
    np.testing.assert_allclose(np.asarray(lines["arm:v1:0.5"].get_ydata(), float),
                               [0.22 + 0.1 * k + np.mean(JIT) for k in range(3)])
    ax = draw_accuracy_vs_r(_ax(), summary, tests, baseline="no_neural", arms=["v1", "v1_r1"])
    line, = [l for l in ax.get_lines()
             if l.get_gid() == "arm:r_sweep" and l.get_linestyle() not in ("None", "none", "")]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.1, 1.0])
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float),
                               [_final_mean(summary, "v1"), _final_mean(summary, "v1_r1")])
