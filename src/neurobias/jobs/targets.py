"""The neural targets' jobs: similarity matrices, RSMs and response targets of a recording, what
each target can teach (diagnostics), and Safarani's MTL-oracle targets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..config import resolve_device
from ..provenance import write_provenance
from .atomic import save_npy, write_json


# -- neural targets -------------------------------------------------------------------------------
def similarity(*, recording, target, kind: str, options: dict, v1_model=None, source_target=None,
               vgg_weights=None, device: str = "cpu") -> None:
    """Write one ``kind`` of neural target over all the recording's stimulus images, with the
    kind's declared builder (:mod:`neurobias.neural`, or a plugin's).

    options: what this kind reads from the study's ``similarity`` settings (and nothing else, so
    that changing a setting reruns only the kinds it affects): shuffle_seed, rsm_metric,
    gaussian_other, image_size, vgg_weights. v1_model, source_target, vgg_weights: the files the
    kind declares it reads (the V1 model, another target, the VGG-19 weights; none: a randomly
    initialised VGG-19, as ``vgg_weights: random`` asks)."""
    from ..neural.recording import Recording
    from ..registry import targets
    spec = targets()[kind]
    started = time.time()
    # Only the kinds that run a network load torch (and have a device); the others are numpy on
    # the CPU and start about 3 s faster without it.
    device = resolve_device(device) if spec.on_device else "cpu"
    rec = Recording.load(recording)
    inputs = {"v1_model": v1_model, "vgg_weights": vgg_weights or None}
    inputs.update({read: source_target for read in spec.reads if read.startswith("target:")})
    s = spec.load()(rec, options, inputs, device)
    save_npy(s, target)
    write_provenance(Path(target).parent, job=f"similarity_{kind}", filename=f"provenance_{kind}.json",
                     config_slice={"kind": kind, **options}, device=device, started=started)


def similarity_diagnostics(*, recording, targets: list, diagnostics, kinds: list[str]) -> dict:
    """What each target can teach (DESIGN.md section 8): spread, reliability, held-out fit.
    targets: one .npy per entry of ``kinds``."""
    from ..neural.recording import Recording
    from ..neural.similarity import target_diagnostics
    started = time.time()
    rec = Recording.load(recording)
    if len(kinds) != len(targets):
        raise ValueError(f"similarity_diagnostics: {len(targets)} targets for the kinds {kinds}")
    matrices = {kind: np.load(p) for kind, p in zip(kinds, targets)}
    diag = target_diagnostics(matrices, np.flatnonzero(rec.tiers == "test"), rec.responses)
    write_json(diag, diagnostics)
    write_provenance(Path(diagnostics).parent, job="similarity_diagnostics", filename="provenance_diagnostics.json",
                     config_slice={"targets": sorted(matrices)}, started=started)
    print(json.dumps(diag, indent=1))
    return diag


def oracle_targets(*, oracle, recording, responses, targets, readout_cfg: dict, image_size: int,
                   device: str) -> dict:
    """Safarani 2021's MTL-oracle targets: a readout fitted on the oracle's frozen core (``layer``)
    to the single-task V1 model's predictions; its predictions on every stimulus image."""
    from ..neural.recording import Recording
    from ..regularisers.mtl import fit_oracle_targets
    from ..models.io import load_classifier, stimuli_as_inputs
    started = time.time()
    device = resolve_device(device)
    model = load_classifier(oracle, device)
    rec = Recording.load(recording)
    # at the dataset's size and channels (the normalisation's), as training shows them; the model
    # resizes to its input_size itself
    stimuli = stimuli_as_inputs(rec.images, model.mean.shape[1], int(image_size))
    fitted, metrics = fit_oracle_targets(model, stimuli, rec.tiers, np.load(responses), readout_cfg["layer"],
                                         seed=readout_cfg["seed"], epochs=readout_cfg["epochs"],
                                         lr=readout_cfg["lr"], device=device)
    save_npy(fitted, targets)
    print(json.dumps(metrics))
    write_provenance(Path(targets).parent, job="oracle_targets", filename="provenance_responses_oracle.json",
                     config_slice={**readout_cfg, "image_size": image_size}, seed=readout_cfg["seed"],
                     device=device, started=started, extra={"metrics": metrics, "oracle_model": str(oracle)})
    return metrics
