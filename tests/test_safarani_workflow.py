"""Safarani 2021 through the snakemake CLI: the tiny study end to end (response targets, MTL and
oracle arms, the oracle readout, corruption evaluation, robustness scores with bootstrap
intervals, the 2-factor regression, Fig. 2 and 3, the report) and the preset's dry run."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import torch
import yaml
from matplotlib.image import imread

from conftest import ROOT, assert_nothing_to_do, dry_run_counts, snakemake, training_jobs
from neurobias.config import validate_config
from neurobias.data import load_split
from neurobias.jobs import safarani_arms_table
from neurobias.rule_params import corruption_arms
from neurobias.neural.recording import Recording
from neurobias.neural.v1_model import load_v1_model, predict_responses
from neurobias.robustness.corruptions import CATEGORIES
from neurobias.stats import robustness_scores
from neurobias.models.io import load_classifier

SAF = ROOT / "tests" / "configs" / "safarani_tiny.yaml"
PRESET = ROOT / "studies" / "safarani2021.yaml"


@pytest.fixture(scope="module")
def study():
    return validate_config(yaml.safe_load(SAF.read_text()))["studies"]["saf"]


@pytest.fixture(scope="module")
def saf_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("safarani_run")
    r = snakemake(d, config=SAF)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


def test_every_arm_and_seed_trained_with_its_own_columns(saf_run, study):
    assert len(study["arms"]) == 9
    for arm, cfg in study["arms"].items():
        for seed in study["seeds"]:
            h = pd.read_csv(saf_run / f"results/train/saf/{arm}/seed{seed}/history.csv")
            if cfg["regulariser"] == "mtl":
                assert h["neural_r_target"].between(-1, 1).all() and "log_var_neural" in h
                blob = torch.load(saf_run / f"results/train/saf/{arm}/seed{seed}/model.pt", weights_only=True)
                assert "readout.mu" in blob["neural_head"]
            if cfg["regulariser"] == "oracle":
                assert h["stage"].tolist() == ["pretraining", "retraining", "retraining"]
            assert h["restored"].sum() == 1  # the plateau schedule kept one epoch's weights


def test_response_targets(saf_run):
    rec = Recording.load(saf_run / "results/neural/tinyv1/recording.npz")
    model = np.load(saf_run / "results/similarity/saf/responses_model.npy")
    expected = predict_responses(load_v1_model(saf_run / "results/v1model/tinyv1/model.pt"), rec.images)
    assert np.allclose(model, expected, atol=1e-5)
    shuffled = np.load(saf_run / "results/similarity/saf/responses_shuffle.npy")
    assert sorted(map(tuple, shuffled.round(5))) == sorted(map(tuple, model.round(5)))
    assert not np.allclose(shuffled, model)
    oracle = np.load(saf_run / "results/similarity/saf/responses_oracle.npy")
    assert oracle.shape == model.shape and np.isfinite(oracle).all() and (oracle > 0).all()
    prov = json.loads((saf_run / "results/similarity/saf/provenance_responses_oracle.json").read_text())
    assert -1 <= prov["metrics"]["heldout_r"] <= 1


def test_corruption_accuracies_are_what_the_models_do(saf_run, study):
    spec = study["evaluations"]["corruptions"]
    tidy = pd.read_csv(saf_run / "results/eval/saf/corruptions/mtl_monkey.csv")
    acc = tidy[tidy["metric"] == "accuracy"]
    assert len(acc) == len(study["seeds"]) * (1 + 3 * 3)
    assert set(acc["category"]) == {"clean", "noise", "digital"}
    with np.load(saf_run / "results/eval/saf/corruptions/mtl_monkey_correct.npz") as z:
        correct, seeds = z["correct"], z["seeds"].tolist()
        conditions = list(zip(z["corruption"].tolist(), z["severity"].tolist()))
    assert seeds == study["seeds"] and conditions[0] == ("clean", 0)
    for s, seed in enumerate(seeds):
        for k, (c, sev) in enumerate(conditions):
            row = acc[(acc["seed"] == seed) & (acc["condition"] == c) & (acc["level"] == sev)]
            assert float(row["value"].iloc[0]) == pytest.approx(correct[s, k].mean())
    # the clean accuracy is the saved model's accuracy on the test images
    images, labels, _ = load_split(saf_run / "results/data/tinygrey/test.pt")
    model = load_classifier(saf_run / f"results/train/saf/mtl_monkey/seed{seeds[0]}/model.pt")
    with torch.no_grad():
        pred = model(images.float() / 255).argmax(1)
    assert correct[0, 0].tolist() == (pred == labels).tolist()
    # the neural prediction performance is the kept epoch's
    h = pd.read_csv(saf_run / f"results/train/saf/mtl_monkey/seed{seeds[0]}/history.csv")
    r = tidy[(tidy["seed"] == seeds[0]) & (tidy["metric"] == "neural_prediction_r")]["value"].iloc[0]
    assert r == pytest.approx(h.loc[h["restored"], "neural_r_target"].iloc[0])
    # every arm was scored under the same conditions, in the same order, on the same images
    with np.load(saf_run / "results/eval/saf/corruptions/baseline_correct.npz") as z:
        assert list(zip(z["corruption"].tolist(), z["severity"].tolist())) == conditions
        assert z["correct"].shape == correct.shape
    assert conditions[1:] == [(c, s) for c in spec["corruptions"] for s in spec["severities"]]


def test_robustness_scores_intervals_and_regression(saf_run, study):
    tidy = pd.concat([pd.read_csv(saf_run / f"results/eval/saf/corruptions/{a}.csv") for a in study["arms"]])
    scores = pd.read_csv(saf_run / "results/stats/saf/robustness_scores.csv")
    expected = robustness_scores(tidy, "baseline", CATEGORIES)
    merged = scores.merge(expected, on=["arm", "category"], suffixes=("", "_tidy"))
    assert len(merged) == len(expected) > 0
    assert np.allclose(merged["score"], merged["score_tidy"])
    base = scores[scores["arm"] == "baseline"]
    assert np.allclose(base["score"], 1.0)
    ok = scores.dropna(subset=["ci_low"])
    assert (ok["ci_low"] <= ok["score"] + 1e-12).all() and (ok["score"] <= ok["ci_high"] + 1e-12).all()
    assert set(scores["repetitions"]) == {50}
    # relative to the control arm: the same scores with MTL-shuffled as the reference
    contrasts = pd.read_csv(saf_run / "results/stats/saf/robustness_scores_vs_controls.csv")
    assert set(contrasts["reference"]) == {"mtl_shuffled"}
    against = robustness_scores(tidy, "mtl_shuffled", CATEGORIES)
    merged = contrasts.merge(against, on=["arm", "category"], suffixes=("", "_tidy"))
    assert len(merged) == len(against) == len(scores)
    assert np.allclose(merged["score"], merged["score_tidy"])
    control = contrasts[contrasts["arm"] == "mtl_shuffled"]
    assert np.allclose(control[["score", "ci_low", "ci_high"]], 1.0)
    # the intervals are the paired bootstrap with MTL-shuffled as the reference, recomputed here
    from neurobias.jobs.analysis import _load_correct
    from neurobias.stats import bootstrap_robustness
    per_image, conditions = _load_correct({a: saf_run / f"results/eval/saf/corruptions/{a}_correct.npz"
                                           for a in study["arms"]})
    boot = study["evaluations"]["corruptions"]["bootstrap"]
    expected = bootstrap_robustness(per_image, conditions, "mtl_shuffled", CATEGORIES,
                                    repetitions=boot["repetitions"], seed=boot["seed"], study="saf")
    pd.testing.assert_frame_equal(contrasts.drop(columns="reference"), expected, check_dtype=False,
                                  check_exact=False, rtol=1e-6)
    assert not np.allclose(contrasts["ci_low"], scores["ci_low"], equal_nan=True)  # not the baseline's
    # the regression, recomputed from the model table with statsmodels
    models = pd.read_csv(saf_run / "results/stats/saf/robustness_models.csv")
    assert len(models) == len(study["arms"]) * len(study["seeds"])
    reg = pd.read_csv(saf_run / "results/stats/saf/robustness_regression.csv")
    assert set(reg["pool"]) == {"mtl_monkey", "mtl_shuffled"}
    pool = models[models["pool"] == "mtl_monkey"]
    assert len(pool) == 3 * len(study["seeds"])  # ratios 1, 0.5, 2
    fit = smf.ols("robustness ~ neural_prediction_r + clean_accuracy", data=pool).fit()
    row = reg[(reg["pool"] == "mtl_monkey") & (reg["term"] == "neural_prediction_r")].iloc[0]
    assert row["coef"] == pytest.approx(fit.params["neural_prediction_r"], rel=1e-6, abs=1e-9)
    assert row["p"] == pytest.approx(fit.pvalues["neural_prediction_r"], rel=1e-6, abs=1e-9)
    table = safarani_arms_table(corruption_arms(study)).set_index("arm")
    assert table.loc["mtl_monkey_ratio0.5", "base_arm"] == "mtl_monkey"
    assert table.loc["mtl_monkey_ratio0.5", "batch_ratio"] == 0.5 and np.isnan(table.loc["oracle", "batch_ratio"])


def test_figures_are_rendered_images(saf_run):
    for fig in ("safarani_fig2", "safarani_fig3a", "safarani_fig3b", "safarani_fig3c"):
        png = imread(saf_run / f"figures/saf/{fig}.png")
        assert png[..., :3].std() > 0.05, fig
        assert (saf_run / f"figures/saf/{fig}.pdf").read_bytes().startswith(b"%PDF")
    prov = json.loads((saf_run / "figures/saf/provenance_safarani_fig2.json").read_text())
    chosen = prov["config"]["corruptions"]
    assert set(chosen) == {"best", "median", "worst"}
    assert set(chosen.values()) <= {"gaussian_noise", "contrast", "pixelate"}


def test_report_has_the_safarani_figures_and_tables(saf_run, tmp_path):
    out = tmp_path / "report.zip"
    r = snakemake(saf_run, "--report", str(out), config=SAF, cores=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith("report.html"))).decode()
    files = {n.rsplit("/", 1)[-1] for n in names}
    assert {"safarani_fig2.png", "safarani_fig3a.png", "safarani_fig3c.png", "robustness_scores.csv",
            "robustness_regression.csv"} <= files
    assert "after Safarani et al. 2021, Fig. 3" in html and "after Safarani et al. 2021, Fig. 2" in html


def test_rerun_has_nothing_to_do(saf_run):
    assert_nothing_to_do(saf_run, SAF)


def test_preset_dry_run_without_data(tmp_path):
    counts = dry_run_counts(tmp_path, PRESET)
    # (5 arms + 2 arms x 11 other batch ratios) x 5 seeds; one evaluation job per arm
    # pack: 2 within each arm's network group: 130 runs in 65 jobs, the 5 MTL-oracle runs (packed
    # after their oracle) in 3
    assert "train" not in counts and training_jobs(counts) == 65 + 3
    assert counts["evaluate_corruptions"] == str(5 + 22)
    assert counts["oracle_targets"] == "1"
    assert counts["figure_safarani_fig3"] == "3" and counts["figure_safarani_fig2"] == "1"
    assert not (tmp_path / "results").exists()
