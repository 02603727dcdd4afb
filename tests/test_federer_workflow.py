"""Federer 2020 through the snakemake CLI: the tiny study end to end (teacher RSMs, sweeps,
per-epoch test metrics, statistics, Fig. 6 and 7) and the preset's dry run."""

from __future__ import annotations

import itertools
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread
from scipy import stats

from conftest import ROOT, TINY, assert_nothing_to_do, dry_run_counts, snakemake, training_jobs
from neurobias.neural.recording import Recording
from neurobias.neural.rsm import response_rsm

FED = ROOT / "tests" / "configs" / "federer_tiny.yaml"
PRESET = ROOT / "studies" / "federer2020.yaml"
ARMS = ["no_neural", "v1", "v1_shuffled", "gaussian_v1_stats", "gaussian_other_stats",
        "no_neural_labelnoise0.5", "v1_labelnoise0.5", "v1_r1"]


@pytest.fixture(scope="module")
def fed_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("federer_run")
    r = snakemake(d, config=FED)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


def test_every_arm_and_seed_trained_with_per_epoch_test_metrics(fed_run):
    cfg = yaml.safe_load(FED.read_text())["studies"]["fed"]
    for arm, seed in itertools.product(ARMS, cfg["seeds"]):
        h = pd.read_csv(fed_run / f"results/train/fed/{arm}/seed{seed}/history.csv")
        assert list(h["epoch"]) == [1, 2]
        assert np.allclose(h["generalisation_error"], h["train_eval_loss"] - h["test_loss"])
        assert h["test_accuracy"].between(0, 1).all()
    # the corrupted-label copy trained on other labels: its training accuracy differs
    clean = pd.read_csv(fed_run / "results/train/fed/v1/seed0/history.csv")
    noisy = pd.read_csv(fed_run / "results/train/fed/v1_labelnoise0.5/seed0/history.csv")
    assert not np.allclose(clean["train_eval_accuracy"], noisy["train_eval_accuracy"])


def test_teacher_rsms_are_what_their_names_say(fed_run):
    rec = Recording.load(fed_run / "results/neural/tinyv1/recording.npz")
    v1 = np.load(fed_run / "results/similarity/fed/rsm_v1.npy")
    assert np.allclose(v1, response_rsm(rec.trial_average(), "cosine"), atol=1e-6)
    iu = np.triu_indices(len(v1), 1)
    shuffled = np.load(fed_run / "results/similarity/fed/rsm_v1_shuffle.npy")
    assert np.allclose(np.sort(shuffled[iu]), np.sort(v1[iu]))          # same values ...
    assert np.corrcoef(shuffled[iu], v1[iu])[0, 1] < 0.5                # ... other pairs
    other = np.load(fed_run / "results/similarity/fed/rsm_gaussian_other.npy")
    assert abs((1 - other[iu]).mean() - (1 - 100 / 101)) < 0.005       # N(10, 1): cos ~ 100/101


def test_statistics_are_paired_t_tests_against_r0_on_the_same_labels_at_the_final_epoch(fed_run):
    tidy = pd.read_csv(fed_run / "results/stats/fed/learning_curves.csv")
    tests = pd.read_csv(fed_run / "results/stats/fed/learning_curves_tests.csv")
    # the label-noise copies are shown as their base arm at level 0.5
    assert set(tidy.loc[tidy["level"] == 0.5, "arm"]) == {"no_neural", "v1"}
    assert set(tests["baseline"]) == {"no_neural"}
    assert set(tests["epoch"]) == {tidy["epoch"].max()}  # curves are descriptive; tests at the final epoch
    row = tests[(tests["arm"] == "v1") & (tests["level"] == 0.5) & (tests["metric"] == "test_accuracy")].iloc[0]
    sel = (tidy["metric"] == "test_accuracy") & (tidy["epoch"] == 2) & (tidy["level"] == 0.5)
    a = tidy.loc[sel & (tidy["arm"] == "v1")].sort_values("seed")["value"]
    b = tidy.loc[sel & (tidy["arm"] == "no_neural")].sort_values("seed")["value"]
    expected = stats.ttest_rel(a.to_numpy(), b.to_numpy(), alternative="greater").pvalue
    assert row["test"] == "paired" and row["p"] == pytest.approx(expected, nan_ok=True)
    assert row["p_adjusted"] >= row["p"] or np.isnan(row["p"])
    assert tests.loc[tests["arm"] == "v1_r1", "r"].unique().tolist() == [1.0]
    # every non-baseline arm is tested on clean labels at the final epoch for both metrics
    clean = tests[tests["level"] == 0.0]
    assert len(clean) == (len(ARMS) - 3) * 2  # arms without the two noisy copies and r = 0; metrics


def test_figures_are_rendered_images(fed_run):
    for fig in ("federer_fig6", "federer_fig7"):
        png = imread(fed_run / f"figures/fed/{fig}.png")
        assert png.shape[1] > 2 * png.shape[0]  # a row of panels
        assert png[..., :3].std() > 0.05        # not blank
        assert (fed_run / f"figures/fed/{fig}.pdf").read_bytes().startswith(b"%PDF")


def test_rerun_has_nothing_to_do(fed_run):
    assert_nothing_to_do(fed_run, FED)


def test_preset_dry_run_lists_both_architectures_without_data(tmp_path):
    counts = dry_run_counts(tmp_path, PRESET)
    # 2 architectures x (5 arms + 2 arms x 10 label-noise fractions + 2 r values) x 10 seeds = 540
    # models, trained 10 to a job (pack: 10): tens of jobs, not hundreds
    assert "train" not in counts and training_jobs(counts) == 2 * 27
    assert counts["figure_federer"] == "4"
    # per study: 4 teachers and the data and shuffle S the target diagnostics compare against, made
    # from the responses; plus Li's model S (every arm's held-out diagnostic), read from the V1 model
    assert counts["similarity"] == str(2 * 6) and counts["similarity__from_network"] == str(2 * 1)
    assert not (tmp_path / "results").exists()


def _report(workdir, config, tmp_path):
    out = tmp_path / "report.zip"
    r = snakemake(workdir, "--report", str(out), config=config, cores=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith("report.html"))).decode()
    return names, html


def test_report_has_every_figure_with_its_caption_and_the_tables(fed_run, tmp_path):
    names, html = _report(fed_run, FED, tmp_path)
    files = {n.rsplit("/", 1)[-1] for n in names}
    assert {"federer_fig6.png", "federer_fig7.png", "learning_curves_tests.csv"} <= files
    assert "after Federer et al. 2020, Fig. 6" in html and "after Federer et al. 2020, Fig. 7" in html
    assert re.search(r"over(\s|\\n)+2 seeds", html)  # n from the config (JSON-escaped newline)
    assert "positive control" in html


def test_report_of_the_noise_study(tiny_local_run, tmp_path):
    names, html = _report(tiny_local_run, TINY, tmp_path)
    files = {n.rsplit("/", 1)[-1] for n in names}
    assert {"noise_robustness.png", "gaussian_noise_tests.csv"} <= files
    assert "Accuracy under additive Gaussian pixel noise" in html
    assert "none, neural_model, neural_data, shuffle" in html  # the arms, from the config
