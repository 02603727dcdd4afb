"""Brain-likeness vs robustness across trained models (Dapello et al. 2020, Fig. 1).

Dapello et al., "Simulating a primary visual cortex at the front of CNNs improves robustness to
image perturbations" (NeurIPS 2020): across many models, how a model's V1 explained variance
relates to its robustness.

Contents
--------
:func:`model_table` -- one row per trained model from the tidy brain-likeness (and Gaussian-noise)
    tables: best layer's V1 explained variance per recording, clean accuracy and the robustness
    measures.
:func:`model_correlations` -- Pearson r, p, n of each recording's V1 explained variance with each
    robustness measure (:data:`ROBUSTNESS_COLUMNS`), across all models and within each study.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .general import correlate

__all__ = ["ROBUSTNESS_COLUMNS", "model_table", "model_correlations"]


def model_table(frames: list[pd.DataFrame], architectures: dict, noise_frames: list[pd.DataFrame] = ()) -> pd.DataFrame:
    """One row per trained model: its brain-likeness (best layer's V1 explained variance per
    recording) and its robustness (white-box accuracy, normalised by clean accuracy as Dapello,
    mean Gaussian-noise accuracy over sigma > 0 where evaluated, mean accuracy and entropy over
    the manipulations)."""
    tidy = pd.concat(frames, ignore_index=True)
    keys = ["study", "arm", "seed"]
    out = tidy[keys].drop_duplicates().reset_index(drop=True)
    out["architecture"] = out["study"].map(architectures)

    def pick(evaluation, metric, condition=None):
        f = tidy[(tidy["evaluation"] == evaluation) & (tidy["metric"] == metric)]
        if condition is not None:
            f = f[f["condition"] == condition]
        return f

    index = out.set_index(keys).index  # one row per model; every column below is mapped onto it
    out["clean_accuracy"] = index.map(pick("clean", "accuracy").set_index(keys)["value"])
    ev = pick("v1_explained_variance", "median_ev")
    for rec, f in ev.groupby("condition"):
        f = f.assign(value=pd.to_numeric(f["value"]))
        f = f[np.isfinite(f["value"])]  # a layer with no usable neuron has no explained variance
        best = f.loc[f.groupby(keys)["value"].idxmax()].set_index(keys)
        out[f"v1_ev_{rec}"] = index.map(best["value"])
        out[f"best_layer_{rec}"] = index.map(best["level"])
    wb = pick("white_box", "white_box_accuracy").set_index(keys)["value"]
    if len(wb):
        out["white_box_accuracy"] = index.map(wb)
        out["white_box_normalised"] = out["white_box_accuracy"] / out["clean_accuracy"]
    man = tidy[tidy["evaluation"] == "manipulations"]
    if len(man):
        for metric, col in (("accuracy", "manipulation_accuracy"), ("entropy_bits", "manipulation_entropy_bits")):
            out[col] = index.map(man[man["metric"] == metric].groupby(keys)["value"].mean())
    if len(noise_frames):
        noise = pd.concat(noise_frames, ignore_index=True)
        noise = noise[(noise["metric"] == "accuracy") & (noise["level"] > 0)]
        out["gaussian_noise_accuracy"] = index.map(noise.groupby(keys)["value"].mean())
    return out


ROBUSTNESS_COLUMNS = ("white_box_accuracy", "white_box_normalised", "gaussian_noise_accuracy",
                      "manipulation_accuracy")



def model_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Pearson r, p, n (:func:`~neurobias.stats.general.correlate`) of each ``v1_ev_<recording>``
    column of :func:`model_table` with each robustness column it has (:data:`ROBUSTNESS_COLUMNS`):
    across all models (``study`` = ``all``), then within each study. Columns ``study, x, y, r, p, n``."""
    ys = [c for c in ROBUSTNESS_COLUMNS if c in table.columns]
    corr = []
    for x in sorted(c for c in table.columns if c.startswith("v1_ev_")):
        pooled = correlate(table, x, ys).assign(study="all")
        corr += [pooled, correlate(table, x, ys, by=("study",))]
    return pd.concat(corr, ignore_index=True)[["study", "x", "y", "r", "p", "n"]]
