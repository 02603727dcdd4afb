"""Neural predictivity: how much of a V1 recording a network layer explains linearly.

This is the "brain-likeness" axis of Dapello et al. 2020 (section 2, "V1 explained variance" of
ImageNet models against their adversarial robustness), which they took from Brain-Score's V1
neural benchmark. The recipe, as implemented in Brain-Score (github.com/brain-score/vision):

1. **Mapping.** Activations of one layer -> neural responses by partial least squares regression
   with 25 components, ``PLSRegression(n_components=25, scale=False)``
   (``brainscore_vision/metrics/regression_correlation/metric.py``, ``pls_regression``).
2. **Cross-validation.** 10 splits of the stimuli, 90 % train / 10 % test, seeded
   (``random_state=1``), ``StratifiedShuffleSplit`` when a stratification coordinate exists
   (``texture_type`` for the FreemanZiemba2013 V1 benchmark), else ``ShuffleSplit``
   (``brainscore_vision/metric_helpers/transformations.py``, ``Split.Defaults``).
3. **Score.** Pearson r per neuroid between held-out predictions and the trial-averaged responses,
   the median over neuroids within each split (``CrossRegressedCorrelation.aggregate``), then the
   mean over splits (``Split.aggregate``).
4. **Ceiling.** Internal consistency: the repetitions are split in half (10 random splits,
   ``train_size=0.5`` over the repetition coordinate), each half is trial-averaged, Pearson r per
   neuroid between the halves over stimuli, Spearman-Brown corrected with n = 2, i.e.
   2r / (1 + r), median over neuroids within each split, mean over splits
   (``brainscore_vision/metrics/internal_consistency/ceiling.py``).
5. **Explained variance.** ``(median r / median ceiling) ** 2``
   (``brainscore_vision/benchmark_helpers/neural_common.py``, ``explained_variance``; its comment
   derives it from r(X,Y)/sqrt(r(X,X) r(Y,Y)) assuming r(X,X) ~ r(Y,Y), after Yamins et al. 2014).
6. **High-dimensional layers.** Brain-Score's model side flattens a layer and, above 1000 units,
   projects it on 1000 principal components fitted to activations of 1000 ImageNet validation
   images, i.e. a set of images *other* than the benchmark stimuli and without any neural data
   (``brainscore_vision/model_helpers/activations/pca.py``, ``LayerPCA``).

Dapello et al. 2020 ("Simulating a primary visual cortex at the front of CNNs improves robustness
to image perturbations", NeurIPS 2020, bioRxiv 10.1101/2020.06.16.154542) report this V1 explained
variance for the best of a model's early-to-middle layers; :func:`best_layer` picks the layer with
the highest ``median_ev`` among those passed. Their methods text could not be retrieved while
writing this module, so the recipe above (components, splits, ceiling, PCA) is taken from
Brain-Score's code, not from the paper.

Where this module differs, and why
----------------------------------

- **Folds.** ``KFold(n_folds, shuffle=True, random_state=seed)`` instead of 10 random 90/10
  splits: every image is predicted exactly once, and r is computed once per neuron over all N
  held-out predictions (rather than per split on N/10 images and then averaged). With 10 folds
  each fit still sees 90 % of the images. No stratification (our stimuli have no texture families).
- **Feature scaling.** Features are standardised (Brain-Score does not scale, ``scale=False``):
  with the training fold's mean and SD when no reduction is needed, with all images' statistics
  ahead of the PCA otherwise (next point). Without it PLS's first components follow whichever units
  are largest; on a random width-8 ResNet and the simulated V1 (1500 stimuli, 240 neurons) scaling
  raised median ev from 0.102 to 0.127 (layer2) and from 0.110 to 0.123 (layer3). Targets are
  centred (PLS always centres) but not scaled, as in Brain-Score; Pearson r per neuron does not
  depend on a neuron's scale.
- **Reduction to at most ``max_features`` dimensions** (only when a layer has more features).
  Brain-Score fits its PCA on separate ImageNet images; we have no such image set, so by default
  (``reduction="pca"``) the features of *all* stimuli are standardised and a PCA (not whitened,
  ``svd_solver="full"``) is fitted on them once, before the folds. That is not leakage in the sense
  that matters: neither step ever sees a neural response, so nothing about the held-out targets can
  enter the fit; they only decide which feature subspace is kept, exactly as the choice of layer or
  of pooling does. (The shuffled controls in the tests check this: with the responses permuted
  across images the explained variance stays at ~0.) In this path the standardisation is therefore
  the all-image one that precedes the PCA, not a per-fold one: standardising the components again
  inside each fold would whiten them, which with few images per dimension is catastrophic (400
  stimuli, 399 whitened components: median ev 0.00 for every layer tried, against 0.04-0.09
  without whitening and 0.58 for a Gabor-energy positive control; at 1500 stimuli whitening
  instead raised a random ResNet's ev from 0.13 to 0.22, i.e. it makes the score depend on the
  image count). ``reduction="random"`` is the leakage-free-by-construction alternative: features
  standardised in each training fold, then multiplied by a seeded Gaussian random projection
  (Johnson-Lindenstrauss, entries N(0, 1/k) as in
  ``sklearn.random_projection.GaussianRandomProjection``), which depends on no data; it kept
  slightly less (random ResNet layer3, 2048 features: median ev 0.112 against 0.123 for both PCA
  and no reduction at all, 1500 stimuli).
- **Per-neuron explained variance.** ``ev_k = max(r_k, 0)^2 / ceiling_k`` and its median over the
  neurons with ``ceiling_k > 0.1`` (Brain-Score squares the ratio of medians and does not exclude
  neurons). r^2 / ceiling is the fraction of the *explainable* variance of the trial average that
  the prediction explains: a noise-free perfect model reaches r = sqrt(ceiling) (derivation in
  ``tests/test_predictivity.py``), so ev = 1. Brain-Score's (r / ceiling)^2 assumes the model is
  as noisy as the neurons and gives 1 / ceiling for a noise-free perfect model. A negative
  cross-validated r explains no variance, hence ``max(r, 0)``. ev is not clipped at 1 (a neuron
  can exceed it by chance). The Brain-Score-style number is reported alongside as
  ``brainscore_ev``.
- **Ceiling.** As Brain-Score's (corrected per split, then averaged over ``n_splits`` random
  halvings of the repeats) but kept per neuron instead of taking the median within each split, so
  that each neuron's r can be normalised by its own ceiling. With an odd number of repeats the halves differ by one
  trial; Spearman-Brown with n = 2 is applied regardless (Brain-Score's 50 % split does the same).
  Missing trials (NaN) are skipped when averaging a half; an image with no trial in one half is
  left out of that neuron's correlation.
- **Spatial pooling.** :func:`layer_explained_variance` average-pools feature maps larger than
  ``pool_to`` x ``pool_to`` (default 8) to that size before flattening (Brain-Score keeps the full
  map). On 32 px stimuli that keeps a 4 px grid, finer than the simulated V1 receptive fields
  (envelope SD ~5 px), and keeps stem/layer1 of a width-64 ResNet at 4096 instead of 65536
  features. ``pool_to=None`` flattens the maps as they are.
- **Missing trial averages.** A neuron with no trial at all on some image has a NaN trial average
  there; for fitting, it is replaced by the neuron's training-fold mean, and the image is left out
  of that neuron's r.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold
from torch.nn import functional as F

CEILING_MIN = 0.1
REDUCTIONS = ("random", "pca")


# -- statistics -----------------------------------------------------------------------------------
def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column of a, b [N, K], over the rows where both are finite (NaN if < 3 rows
    or a column is constant there)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=0)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = a0.sum(axis=0) / n, b0.sum(axis=0) / n
        da, db = np.where(ok, a0 - ma, 0.0), np.where(ok, b0 - mb, 0.0)
        cov = (da * db).sum(axis=0)
        den = np.sqrt((da ** 2).sum(axis=0) * (db ** 2).sum(axis=0))
        r = cov / den
    r[(n < 3) | ~(den > 0)] = np.nan
    return r


def _trial_average(responses: np.ndarray) -> np.ndarray:
    """[N, R, K] -> [N, K], NaN-aware; NaN where an image has no trial for a neuron."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice
        return np.nanmean(np.asarray(responses, dtype=np.float64), axis=1)


def internal_consistency(responses: np.ndarray, seed: int = 0, n_splits: int = 10) -> np.ndarray:
    """Split-half reliability of each neuron's trial average, Spearman-Brown corrected, [K].

    For each of ``n_splits`` random permutations of the R repeats: average the first half and the
    second half (NaN-aware), Pearson r per neuron between the two half averages over images,
    corrected to the full number of repeats as 2r / (1 + r); the result is the mean over splits.
    For signal variance s2 across images and independent trial noise of variance n2, this
    estimates R s2 / (R s2 + n2). NaN for every neuron when R < 2.
    """
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 3:
        raise ValueError(f"responses must be [N, R, K], got shape {responses.shape}")
    n_rep, k = responses.shape[1], responses.shape[2]
    if n_rep < 2:
        return np.full(k, np.nan)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    corrected = []
    for _ in range(n_splits):
        perm = rng.permutation(n_rep)
        h1, h2 = perm[: n_rep // 2], perm[n_rep // 2:]
        r = _pearson_columns(_trial_average(responses[:, h1]), _trial_average(responses[:, h2]))
        with np.errstate(invalid="ignore", divide="ignore"):
            corrected.append(2 * r / (1 + r))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a neuron NaN on every split
        return np.nanmean(np.stack(corrected), axis=0)


# -- cross-validated PLS --------------------------------------------------------------------------
def _projection(d: int, k: int, seed: int) -> np.ndarray:
    """GaussianRandomProjection's matrix (entries N(0, 1/k)), as [d, k], from our own seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    return (rng.standard_normal((d, k)) / np.sqrt(k)).astype(np.float32)


def _standardise(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Standardise all rows of x with the mean and SD of ``rows``; constant features become 0."""
    mean = x[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
    sd = x[rows].std(axis=0, dtype=np.float64).astype(np.float32)
    return (x - mean) / np.where(sd > 0, sd, np.float32(np.inf))


def pls_predictions(features: np.ndarray, targets: np.ndarray, n_components: int = 25,
                    n_folds: int = 10, seed: int = 0, max_features: int = 1000,
                    reduction: str = "pca") -> np.ndarray:
    """Cross-validated PLS predictions [N, K] of ``targets`` [N, K] from ``features`` [N, D].

    ``KFold(n_folds, shuffle=True, random_state=seed)``. Features are standardised with the
    training fold's statistics; if D > ``max_features`` they are first reduced, with
    ``reduction="pca"`` by a PCA fitted once on all images' standardised features (no responses
    involved; then not re-standardised per fold, which would whiten them), with ``"random"`` by a
    seeded Gaussian random projection applied after the per-fold standardisation (see the module
    docstring). In each fold
    ``PLSRegression(min(n_components, D', n_train - 1), scale=False)`` is fitted and predicts the
    held-out images. NaN targets are filled with the training-fold mean for fitting.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n, d = x.shape
    if len(y) != n:
        raise ValueError(f"features have {n} rows, targets {len(y)}")
    if n_folds < 2 or n < n_folds:
        raise ValueError(f"need n_folds >= 2 and at least n_folds images (n={n}, n_folds={n_folds})")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")

    project, prescaled = None, False
    if d > max_features:
        if reduction == "random":
            project = _projection(d, max_features, seed)
        else:
            from sklearn.decomposition import PCA
            k = min(max_features, n - 1)
            x = PCA(n_components=k, svd_solver="full").fit_transform(
                _standardise(x, np.arange(n))).astype(np.float32)
            prescaled = True  # scaling the components again would whiten them (module docstring)

    out = np.empty(y.shape, dtype=np.float64)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in folds.split(x):
        xs = x if prescaled else _standardise(x, train)
        if project is not None:
            xs = xs @ project
        y_train = y[train]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fill = np.nanmean(y_train, axis=0)
        fill = np.where(np.isfinite(fill), fill, 0.0)
        y_train = np.where(np.isfinite(y_train), y_train, fill)
        n_comp = max(1, min(n_components, xs.shape[1], len(train) - 1))
        pls = PLSRegression(n_components=n_comp, scale=False)
        with warnings.catch_warnings():
            # constant targets in a fold, or components exhausted on low-rank features
            warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
            pls.fit(xs[train], y_train)
            out[test] = np.asarray(pls.predict(xs[test]), dtype=np.float64).reshape(len(test), -1)
    return out


# -- explained variance ---------------------------------------------------------------------------
def explained_variance(features: np.ndarray, responses: np.ndarray, n_components: int = 25,
                       n_folds: int = 10, seed: int = 0, max_features: int = 1000,
                       reduction: str = "pca", ceiling: np.ndarray | None = None,
                       ceiling_min: float = CEILING_MIN) -> dict:
    """Ceiling-normalised explained variance of ``responses`` [N, R, K] by ``features`` [N, D].

    Returns per-neuron arrays ``r`` (Pearson r of the cross-validated predictions with the trial
    averages), ``ceiling`` (:func:`internal_consistency`, unless passed in) and ``ev``
    (max(r, 0)^2 / ceiling, NaN for excluded neurons), a boolean ``used`` (ceiling > ceiling_min),
    and scalars ``median_ev``, ``median_r`` and ``median_ceiling`` over the used neurons,
    ``n_neurons_used``, ``n_neurons_excluded`` and ``brainscore_ev`` ((median r / median
    ceiling)^2 over the used neurons, Brain-Score's convention).
    """
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 3:
        raise ValueError(f"responses must be [N, R, K], got shape {responses.shape}")
    target = _trial_average(responses)
    pred = pls_predictions(features, target, n_components, n_folds, seed, max_features, reduction)
    r = _pearson_columns(pred, target)
    if ceiling is None:
        ceiling = internal_consistency(responses, seed=seed)
    ceiling = np.asarray(ceiling, dtype=np.float64)
    if ceiling.shape != r.shape:
        raise ValueError(f"ceiling has shape {ceiling.shape}, expected {r.shape}")
    used = np.isfinite(ceiling) & (ceiling > ceiling_min) & np.isfinite(r)
    ev = np.full(r.shape, np.nan)
    ev[used] = np.maximum(r[used], 0.0) ** 2 / ceiling[used]
    if used.any():
        med_r, med_c = float(np.median(r[used])), float(np.median(ceiling[used]))
        med_ev = float(np.median(ev[used]))
        bs_ev = float(max(med_r, 0.0) ** 2 / med_c ** 2)
    else:
        med_r = med_c = med_ev = bs_ev = float("nan")
    return {"r": r, "ceiling": ceiling, "ev": ev, "used": used,
            "median_ev": med_ev, "median_r": med_r, "median_ceiling": med_c,
            "n_neurons_used": int(used.sum()), "n_neurons_excluded": int((~used).sum()),
            "brainscore_ev": bs_ev}


# -- network layers -------------------------------------------------------------------------------
def _pool(h: torch.Tensor, pool_to: int | None) -> torch.Tensor:
    if pool_to is not None and h.ndim == 4 and (h.shape[-2] > pool_to or h.shape[-1] > pool_to):
        h = F.adaptive_avg_pool2d(h, (min(h.shape[-2], pool_to), min(h.shape[-1], pool_to)))
    return h.flatten(1)


@torch.no_grad()
def layer_features(model, images_uint8: np.ndarray, layers, channels: int | None = None,
                   image_size: int | None = None, device="cpu", batch_size: int = 256,
                   pool_to: int | None = 8) -> dict[str, np.ndarray]:
    """Flattened (optionally pooled) activations {layer: [N, D]} of grey stimuli, in eval mode."""
    from .models.io import stimuli_as_inputs
    layers = list(layers)
    unknown = [t for t in layers if t not in model.tap_names]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; this model has {list(model.tap_names)}")
    if channels is None:
        channels = int(model.mean.numel())
    if image_size is None:
        image_size = int(images_uint8.shape[-1])
    was_training = model.training
    model.eval()
    chunks: dict[str, list] = {t: [] for t in layers}
    try:
        for i in range(0, len(images_uint8), batch_size):
            x = stimuli_as_inputs(images_uint8[i:i + batch_size], channels, image_size).to(device)
            _, taps = model.forward_taps(x, layers)
            for t in layers:
                chunks[t].append(_pool(taps[t].float(), pool_to).cpu().numpy())
    finally:
        model.train(was_training)
    return {t: np.concatenate(c) for t, c in chunks.items()}


def layer_explained_variance(model, recording, layers, device="cpu", batch_size: int = 256,
                             seed: int = 0, n_components: int = 25, n_folds: int = 10,
                             max_images: int | None = None, image_size: int | None = None,
                             channels: int | None = None, pool_to: int | None = 8,
                             max_features: int = 1000, reduction: str = "pca") -> pd.DataFrame:
    """One row per layer: layer, median_ev, median_r, median_ceiling, brainscore_ev,
    n_neurons_used, n_images, n_features.

    The recording's stimuli (all tiers; a seeded random subset of ``max_images`` if given) are
    resized to ``image_size`` (the size the model was trained on; default: the stimuli's own) and
    repeated to ``channels`` (default: the model's), run through ``model`` once (eval mode, no
    grad), each tap pooled to at most ``pool_to`` x ``pool_to`` and flattened, and scored with
    :func:`explained_variance`; the ceiling is computed once and shared by all layers.
    """
    images, responses = recording.images, recording.responses
    n = len(images)
    if max_images is not None and max_images < n:
        rows = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 37])).choice(n, max_images, replace=False))
        images, responses = images[rows], responses[rows]
    feats = layer_features(model, images, layers, channels, image_size, device, batch_size, pool_to)
    ceiling = internal_consistency(responses, seed=seed)
    rows_out = []
    for layer in layers:
        res = explained_variance(feats[layer], responses, n_components, n_folds, seed, max_features,
                                 reduction, ceiling=ceiling)
        rows_out.append({"layer": layer, "median_ev": res["median_ev"], "median_r": res["median_r"],
                         "median_ceiling": res["median_ceiling"], "brainscore_ev": res["brainscore_ev"],
                         "n_neurons_used": res["n_neurons_used"], "n_images": len(images),
                         "n_features": int(feats[layer].shape[1])})
    return pd.DataFrame(rows_out)


def best_layer(frame: pd.DataFrame, candidates=None) -> pd.Series:
    """The row with the highest median_ev (optionally among ``candidates`` layers), as Dapello et
    al. 2020 report each model's best early-to-middle layer."""
    f = frame if candidates is None else frame[frame["layer"].isin(list(candidates))]
    f = f[np.isfinite(f["median_ev"].to_numpy(dtype=float))]
    if f.empty:
        raise ValueError("no layer with a finite median_ev")
    return f.loc[f["median_ev"].idxmax()]
