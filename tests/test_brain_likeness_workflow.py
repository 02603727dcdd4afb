"""Brain-likeness vs robustness through the snakemake CLI: VOneBlock arms trained, every model
scored (V1 explained variance, white-box PGD, manipulations), one table, the correlations, and the
Dapello / Geirhos figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats

from conftest import ROOT, snakemake
from neurobias.models.io import load_classifier

BRAIN = ROOT / "tests" / "configs" / "brain_tiny.yaml"
ARMS = ("none", "vone_v1", "vone_uniform")


@pytest.fixture(scope="module")
def bl_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("brain_run")
    r = snakemake(d, config=BRAIN)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


def test_vone_arms_train_models_with_the_front_end(bl_run):
    plain = load_classifier(bl_run / "results/train/bl/none/seed0/model.pt")
    v1 = load_classifier(bl_run / "results/train/bl/vone_v1/seed0/model.pt")
    uniform = load_classifier(bl_run / "results/train/bl/vone_uniform/seed0/model.pt")
    assert "vone" not in plain.tap_names and v1.tap_names[0] == "vone" == uniform.tap_names[0]
    # the two arms differ in their Gabor parameters, not only in training noise
    sf_v1 = v1.backbone.vone.sf.numpy()
    sf_uniform = uniform.backbone.vone.sf.numpy()
    assert not np.allclose(np.sort(sf_v1), np.sort(sf_uniform))


def test_per_arm_csv_has_every_analysis_for_every_seed(bl_run):
    for arm in ARMS:
        f = pd.read_csv(bl_run / f"results/brain_likeness/bl/{arm}.csv")
        assert sorted(f["seed"].unique()) == [0, 1]
        assert set(f["evaluation"]) == {"clean", "v1_explained_variance", "white_box", "manipulations"}
        ev_layers = set(f.loc[f["evaluation"] == "v1_explained_variance", "level"])
        assert ev_layers == ({"vone", "stem", "layer1"} if arm != "none" else {"stem", "layer1"})
        man = f[f["evaluation"] == "manipulations"]
        assert set(man["condition"]) == {"contrast", "rotation", "eidolon"}
        assert man.loc[man["metric"] == "entropy_bits", "value"].between(0, np.log2(10) + 1e-9).all()
        wb = f[(f["evaluation"] == "white_box") & (f["metric"] == "accuracy")]
        assert set(wb["condition"]) == {"linf", "l2", "l1"} and wb["value"].between(0, 1).all()


def test_model_table_and_correlations_follow_from_the_per_arm_results(bl_run):
    table = pd.read_csv(bl_run / "results/brain_likeness/models.csv")
    assert len(table) == len(ARMS) * 2
    for row in table.itertuples():
        f = pd.read_csv(bl_run / f"results/brain_likeness/bl/{row.arm}.csv")
        f = f[f["seed"] == row.seed]
        ev = f[(f["evaluation"] == "v1_explained_variance") & (f["metric"] == "median_ev")]
        assert row.v1_ev_tinyv1 == pytest.approx(ev["value"].max())  # the best layer counts
        wb = f[(f["evaluation"] == "white_box") & (f["metric"] == "accuracy")]
        assert row.white_box_accuracy == pytest.approx(wb["value"].mean())
        assert row.white_box_normalised == pytest.approx(row.white_box_accuracy / row.clean_accuracy)
    corr = pd.read_csv(bl_run / "results/brain_likeness/correlations.csv")
    pooled = corr[(corr["study"] == "all") & (corr["y"] == "white_box_accuracy")].iloc[0]
    expected = stats.pearsonr(table["v1_ev_tinyv1"], table["white_box_accuracy"])
    assert pooled["r"] == pytest.approx(expected.statistic) and pooled["n"] == len(table)
    assert "gaussian_noise_accuracy" in set(corr["y"])


def test_figures_are_rendered(bl_run):
    for path in ("figures/brain_likeness/dapello_fig1.png", "figures/bl/geirhos_fig3.png"):
        png = imread(bl_run / path)
        assert png[..., :3].std() > 0.05
    assert (bl_run / "figures/bl/geirhos_fig3.pdf").read_bytes().startswith(b"%PDF")


def test_a_layer_the_architecture_lacks_is_refused_before_any_job(tmp_path):
    cfg = BRAIN.read_text().replace("layers: {resnet18: [vone, stem, layer1]}", "layers: {resnet18: [V1]}")
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg)
    r = snakemake(tmp_path, "-n", config=bad, cores=False)
    assert r.returncode != 0
    assert "brain_likeness.layers.resnet18" in r.stdout + r.stderr
