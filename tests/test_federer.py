"""Federer et al. 2020's pieces together: learning-curve t-tests over hand-made histories, the arms'
roles, training with per-epoch test metrics and corrupted labels, the learning-curve statistics and
figure jobs (Fig. 6/7), and a stochastic VOneBlock arm's resume. Expected values are computed by
hand (or by an independent code path), never copied from a run.

The modules' own unit tests: tests/test_neural_rsm.py (RSMs, teachers), test_regularisers_rsm.py,
test_label_noise.py, test_federer2020.py (the statistics), test_figures_federer.py (the panels) and
test_config.py (sweeps and errors)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats as sps

from neurobias.config import validate_config
from neurobias.jobs import figure_federer, stats_learning_curves, tidy_arm
from neurobias.rule_params import federer_roles, learning_curve_arms
from neurobias.neural.rsm import response_rsm
from neurobias.robustness.label_noise import corrupt_labels
from statsmodels.stats.multitest import multipletests

from neurobias.stats import (
    GROUP_KEYS,
    compare_to_baseline,
    learning_curve_records,
)

ROOT = Path(__file__).resolve().parents[1]
FED_TINY = ROOT / "tests" / "configs" / "federer_tiny.yaml"


# -- 1. learning-curve t-tests against scipy ------------------------------------------------------

SEEDS5 = (0, 1, 2, 3, 4)
JIT = (0.01, -0.02, 0.0, 0.015, -0.005)
EPOCHS = (1, 2, 3)


def history(base_acc: float, step: float, seed: int, gen_base: float = 0.2, scale: float = 1.0,
            extra=None) -> pd.DataFrame:
    """A hand-made history.csv: accuracy rising by ``step`` per epoch plus a per-seed jitter."""
    j = JIT[seed] * scale
    rows = []
    for e in EPOCHS:
        row = {"epoch": e, "train_loss": 1.0 / e, "test_accuracy": base_acc + step * (e - 1) + j,
               "generalisation_error": gen_base - 0.05 * e + JIT[(seed + e) % 5]}
        if extra:
            row.update(extra(e, seed))
        rows.append(row)
    return pd.DataFrame(rows)


# (arm, level) -> history parameters. At level 0.5, epoch 3, the teacher arm is far better (**);
# on clean labels the teacher equals the baseline (no mark).
HIST = {
    ("no_neural", 0.0): dict(base_acc=0.50, step=0.10),
    ("v1", 0.0): dict(base_acc=0.50, step=0.10),
    ("no_neural", 0.5): dict(base_acc=0.30, step=0.02),
    ("v1", 0.5): dict(base_acc=0.30, step=0.20),
}


def _tidy() -> pd.DataFrame:
    frames = []
    for (arm, level), kw in HIST.items():
        for seed in SEEDS5:
            # v1's jitter is rotated so the two arms are not identical on clean labels
            h = history(**kw, seed=(seed + (1 if arm == "v1" else 0)) % 5)
            frames.append(learning_curve_records(h, study="fed", arm=arm, seed=seed, label_noise=level,
                                                 r=0.1 if arm == "v1" else 0.0))
    return pd.concat(frames, ignore_index=True)


def test_learning_curve_tests_equal_scipy_welch():
    # compare_to_baseline still runs Welch per epoch when asked (the workflow tests the final epoch)
    tidy = _tidy()
    tests = compare_to_baseline(tidy, baseline="no_neural", by=(*GROUP_KEYS, "epoch"), test="welch")
    assert len(tests) == 2 * len(EPOCHS) * 2  # levels x epochs x metrics, one non-baseline arm
    assert set(tests["arm"]) == {"v1"}
    for _, row in tests.iterrows():
        cell = tidy[(tidy["level"] == row["level"]) & (tidy["epoch"] == row["epoch"])
                    & (tidy["metric"] == row["metric"])]
        a = cell[cell["arm"] == "v1"].sort_values("seed")["value"].to_numpy()
        b = cell[cell["arm"] == "no_neural"].sort_values("seed")["value"].to_numpy()
        assert len(a) == len(b) == 5
        ref = sps.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        assert row["p"] == pytest.approx(ref, rel=1e-10, abs=1e-300)
        assert row["significance"] == ("**" if ref < 0.001 else "*" if ref < 0.05 else "")
        assert row["difference"] == pytest.approx(a.mean() - b.mean())

    def cell(level, epoch, metric="test_accuracy"):
        return tests[(tests["level"] == level) & (tests["epoch"] == epoch) & (tests["metric"] == metric)].iloc[0]

    big = cell(0.5, 3)   # 0.30 + 0.40 vs 0.30 + 0.04, jitter ~0.01: p << 0.001
    assert big["p"] < 0.001 and big["significance"] == "**"
    none = cell(0.0, 3)  # same means, jitter only
    assert none["p"] > 0.05 and none["significance"] == ""
    assert cell(0.5, 1)["significance"] == ""  # identical design at epoch 1


# -- 2. the arms' roles ----------------------------------------------------------------------------

@pytest.fixture
def fed_cfg():
    return yaml.safe_load(FED_TINY.read_text())


def test_tidy_arm_and_roles(fed_cfg):
    study = validate_config(fed_cfg)["studies"]["fed"]
    arms = study["arms"]
    assert tidy_arm("v1_labelnoise0.5", arms["v1_labelnoise0.5"]) == "v1"
    assert tidy_arm("no_neural_labelnoise0.5", arms["no_neural_labelnoise0.5"]) == "no_neural"
    assert tidy_arm("v1_r1", arms["v1_r1"]) == "v1_r1"
    assert tidy_arm("v1", arms["v1"]) == "v1"
    roles = federer_roles(study)
    assert roles == {"baseline": "no_neural", "teacher": "v1", "max_level": 0.5,
                     "teachers": ["no_neural", "v1", "v1_shuffled", "gaussian_v1_stats", "gaussian_other_stats"],
                     "r_arms": ["v1", "v1_r1"]}


# -- 3. training with per-epoch test metrics and corrupted labels ---------------------------------

SUPERCLASS = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.fixture(scope="module")
def small_task():
    from neurobias.data import CLASS_NAMES, make_synthetic_task
    from neurobias.data.synthetic import make_stimulus_images
    from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
    s = make_synthetic_task(5, n_train=128, n_val=32, n_test=60)
    split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
    stim = make_stimulus_images(2, 40)
    target = response_rsm(SimulatedV1(V1PopulationParams(n_neurons=20), 1).mean_rates(stim))
    tiers = np.array(["train"] * 30 + ["test"] * 10)
    return split("train"), split("val"), split("test"), stim, tiers, target


RSM_ARM = {"regulariser": "rsm", "target": "rsm_v1", "r": 0.5, "layer": "V1", "stimulus_batch_size": 8}
TRACK = dict(epochs=1, batch_size=32, lr=0.05, track_test=True, precision="fp32")


def run_small(task, out, arm, superclass=None, seed=0):
    from neurobias.train import TrainingConfig, train_arm
    train, val, test, stim, tiers, target = task
    return train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers,
                     target=target if arm["regulariser"] != "none" else None, diagnostic_target=target,
                     arm=arm, model_cfg={"architecture": "cornet_z", "width": 4},
                     training=TrainingConfig(**TRACK), seed=seed, device="cpu", out_dir=out, progress=False,
                     test=test, superclass_of_class=superclass, context={"rsm_metric": "cosine"})


@pytest.fixture(scope="module")
def rsm_run(small_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("rsm_run")
    return run_small(small_task, out, RSM_ARM, superclass=SUPERCLASS), out


def test_rsm_arm_history_has_test_metrics(rsm_run, small_task):
    from neurobias.models.io import load_classifier
    h, out = rsm_run
    assert list(h["epoch"]) == [1]
    for col in ("test_accuracy", "test_loss", "train_eval_loss", "generalisation_error", "within_superclass_error"):
        assert col in h, col
    row = h.iloc[0]
    assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["within_superclass_error"] <= 1
    assert row["generalisation_error"] == pytest.approx(row["train_eval_loss"] - row["test_loss"], abs=1e-9)
    assert row["train_similarity_loss"] > 0  # the neural term was added on the odd steps
    # recompute from the saved model and the original test labels
    model = load_classifier(out / "model.pt")
    test_x, test_y, _ = small_task[2]
    with torch.no_grad():
        logits = model(test_x.float() / 255.0)
    pred = logits.argmax(1).tolist()
    truth = test_y.tolist()
    wrong = [(p, t) for p, t in zip(pred, truth) if p != t]
    within = sum(1 for p, t in wrong if SUPERCLASS[p] == SUPERCLASS[t])
    share = within / max(len(wrong), 1)
    assert row["within_superclass_error"] == pytest.approx(share, abs=1e-6)
    assert row["test_accuracy"] == pytest.approx(sum(p == t for p, t in zip(pred, truth)) / len(truth), abs=1e-6)
    assert row["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, test_y)), rel=1e-4)
    saved = pd.read_csv(out / "history.csv")
    assert saved["generalisation_error"].iloc[0] == pytest.approx(row["generalisation_error"])


def test_label_noise_corrupts_training_labels_only(small_task, tmp_path):
    from neurobias.models.io import load_classifier
    clean = run_small(small_task, tmp_path / "clean", {"regulariser": "none"})
    noisy = run_small(small_task, tmp_path / "noisy", {"regulariser": "none", "label_noise": 1.0})
    assert not np.isclose(clean["train_loss"].iloc[0], noisy["train_loss"].iloc[0])
    assert not clean.equals(noisy)
    train_x, train_y, _ = small_task[0]
    test_x, test_y, _ = small_task[2]
    corrupted, mask = corrupt_labels(train_y, 1.0, 10, seed=0)
    assert mask.all()
    model = load_classifier(tmp_path / "noisy" / "model.pt")
    with torch.no_grad():
        test_logits = model(test_x.float() / 255.0)
        train_logits = model(train_x.float() / 255.0)
    row = noisy.iloc[0]
    # test metrics use the original test labels
    assert row["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(test_logits, test_y)), rel=1e-4)
    assert row["test_accuracy"] == pytest.approx(float((test_logits.argmax(1) == test_y).float().mean()), abs=1e-6)
    # the training loss of the generalisation error uses the labels the network was trained on
    ce_corrupted = float(torch.nn.functional.cross_entropy(train_logits, corrupted))
    ce_original = float(torch.nn.functional.cross_entropy(train_logits, train_y))
    assert row["train_eval_loss"] == pytest.approx(ce_corrupted, rel=1e-4)
    assert not np.isclose(ce_corrupted, ce_original, rtol=1e-3)
    assert row["train_eval_accuracy"] == pytest.approx(float((train_logits.argmax(1) == corrupted).float().mean()),
                                                       abs=1e-6)


def test_track_test_needs_the_test_split(small_task, tmp_path):
    from neurobias.train import TrainingConfig, train_arm
    train, val, _, stim, tiers, target = small_task
    with pytest.raises(ValueError, match="track_test"):
        train_arm(train=train, val=val, stimuli=stim, stimulus_tiers=tiers, target=None, diagnostic_target=target,
                  arm={"regulariser": "none"}, model_cfg={"architecture": "cornet_z", "width": 4},
                  training=TrainingConfig(**TRACK), seed=0, device="cpu", out_dir=tmp_path, progress=False)


# -- 4. Fig. 6 and Fig. 7 -------------------------------------------------------------------------

# Final-epoch clean-label accuracy per arm (v1 clearly better than the baseline, the others not);
# at 0.5 corrupted labels the teacher arm is better.
FIG_HIST = {
    "no_neural": dict(base_acc=0.40, step=0.10),
    "v1": dict(base_acc=0.50, step=0.15),
    "v1_shuffled": dict(base_acc=0.40, step=0.10),
    "gaussian_v1_stats": dict(base_acc=0.39, step=0.10),
    "gaussian_other_stats": dict(base_acc=0.38, step=0.10),
    "no_neural_labelnoise0.5": dict(base_acc=0.20, step=0.02),
    "v1_labelnoise0.5": dict(base_acc=0.22, step=0.10),
    "v1_r1": dict(base_acc=0.41, step=0.10),
}


@pytest.fixture(scope="module")
def fig_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("federer_stats")
    study = validate_config(yaml.safe_load(FED_TINY.read_text()))["studies"]["fed"]
    study["seeds"] = list(SEEDS5)
    paths = {}
    for k, (arm, kw) in enumerate(FIG_HIST.items()):
        for seed in SEEDS5:
            p = d / f"{arm}_{seed}.csv"
            # each arm's jitter rotated: seeds are paired across arms but not identical
            history(**kw, seed=(seed + k) % len(SEEDS5)).to_csv(p, index=False)
            paths[(arm, seed)] = p
    out = d / "stats"
    runs = list(paths)
    stats_learning_curves(histories=[paths[r] for r in runs], tidy=out / "tidy.csv", summary=out / "summary.csv",
                          tests=out / "tests.csv", study="fed", runs=runs, arms_cfg=learning_curve_arms(study),
                          baseline=study["baseline_arm"], metrics=study["evaluations"]["learning_curves"].get("metrics"),
                          statistics=study["statistics"])
    return study, out / "summary.csv", out / "tests.csv"


def _final_mean(summary, arm, level=0.0, metric="test_accuracy"):
    last = summary["epoch"].max()
    f = summary[(summary["arm"] == arm) & np.isclose(summary["level"], level) & (summary["epoch"] == last)
                & (summary["metric"] == metric)]
    assert len(f) == 1, (arm, level)
    return float(f["mean"].iloc[0])


def test_learning_curve_statistics_tables(fig_inputs):
    study, summary_path, tests_path = fig_inputs
    summary, tests = pd.read_csv(summary_path), pd.read_csv(tests_path)
    # the label-noise copies are shown as their base arm at level 0.5; the r copy keeps its name
    assert set(summary["arm"]) == {"no_neural", "v1", "v1_shuffled", "gaussian_v1_stats", "gaussian_other_stats",
                                   "v1_r1"}
    assert set(summary.loc[summary["arm"] == "v1", "level"]) == {0.0, 0.5}
    assert set(summary.loc[summary["arm"] == "v1_shuffled", "level"]) == {0.0}
    r_of = summary.groupby("arm")["r"].first()
    assert r_of["no_neural"] == 0.0 and r_of["v1"] == 0.1 and r_of["v1_r1"] == 1.0
    # hand mean of v1 at 0.5, last epoch: 0.22 + 2 * 0.10 + mean(JIT) = 0.42
    assert _final_mean(summary, "v1", 0.5) == pytest.approx(0.22 + 0.2 + np.mean(JIT))
    # every test is against no_neural at the same level, at the final epoch only, as the config says
    assert set(tests["baseline"]) == {"no_neural"}
    assert set(tests.loc[tests["level"] == 0.5, "arm"]) == {"v1"}
    assert set(tests["epoch"]) == {max(EPOCHS)} and set(summary["epoch"]) == set(EPOCHS)
    assert study["statistics"] == {"test": "paired", "correction": "holm"}
    assert set(tests["test"]) == {"paired"} and set(tests["correction"]) == {"holm"}
    assert {"p", "p_adjusted", "better", "alternative", "n_pairs", "r"} <= set(tests.columns)
    np.testing.assert_allclose(tests["p_adjusted"], multipletests(tests["p"], method="holm")[1], rtol=1e-10)
    assert len(tests) == (len(FIG_HIST) - 3 + 1) * 2  # clean: 5 arms, 0.5: v1; two metrics


def test_federer_figures_render(fig_inputs, tmp_path):
    study, summary_path, tests_path = fig_inputs
    for fig in ("federer_fig6", "federer_fig7"):
        pdf, png = tmp_path / f"{fig}.pdf", tmp_path / f"{fig}.png"
        figure_federer(summary=summary_path, tests=tests_path, pdf=pdf, png=png, figure=fig, study="fed",
                       roles=federer_roles(study), architecture=study["model"]["architecture"],
                       n_seeds=len(study["seeds"]), note=study["figure_note"])
        assert pdf.read_bytes()[:4] == b"%PDF"
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[1] > img.shape[0] > 200 and float(np.std(img)) > 0
    assert (tmp_path / "provenance_federer_fig7.json").exists()


def test_federer_caption_says_which_test(fig_inputs, tmp_path, monkeypatch):
    import neurobias.figures as figures
    study, summary_path, tests_path = fig_inputs
    seen = {}
    monkeypatch.setitem(figures.FIGURES, "federer_fig6", lambda summary, tests, **kw: seen.update(kw))
    figure_federer(summary=summary_path, tests=tests_path, pdf=tmp_path / "f.pdf", png=tmp_path / "f.png",
                   figure="federer_fig6", study="fed", roles=federer_roles(study), architecture="cornet_z",
                   n_seeds=5, note="")
    note = seen["note"]
    assert "one-tailed paired t-test over seeds vs r = 0 on the same labels" in note
    assert "Holm-adjusted within the 12 comparisons" in note
    assert "higher generalisation_error" in note and "final epoch" in note
    assert "Welch" not in note


# -- checks added after review ------------------------------------------------------------------
def test_a_stochastic_vone_arm_resumes_to_the_same_history(tmp_path):
    from neurobias.data.synthetic import make_synthetic_task
    from neurobias.train import TrainingConfig, train_arm
    splits = make_synthetic_task(seed=1, n_train=64, n_val=16, n_test=16, image_size=32)
    train, val = [(torch.as_tensor(x), torch.as_tensor(y), [str(i) for i in range(10)])
                  for x, y in (splits["train"], splits["val"])]
    stim = np.random.default_rng(0).integers(0, 256, (12, 32, 32)).astype(np.uint8)
    tiers = np.array(["train"] * 8 + ["test"] * 4)
    kw = dict(train=train, val=val, stimuli=stim, stimulus_tiers=tiers, target=None,
              diagnostic_target=np.eye(12, dtype=np.float32), arm={"regulariser": "none"},
              model_cfg={"architecture": "resnet18", "width": 4,
                         "vone": {"simple_channels": 4, "complex_channels": 4, "bottleneck": 4}},
              training=TrainingConfig(epochs=2, batch_size=16, precision="fp32"), seed=0, device="cpu",
              progress=False)
    full = train_arm(out_dir=tmp_path / "full", **kw)
    train_arm(out_dir=tmp_path / "killed", stop_after_epoch=1, **kw)
    resumed = train_arm(out_dir=tmp_path / "killed", **kw)
    pd.testing.assert_frame_equal(full, resumed)
