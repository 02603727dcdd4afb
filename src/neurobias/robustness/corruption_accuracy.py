"""Accuracy under the ImageNet-C corruptions (Safarani et al. 2021's TIN-TC: the Tiny ImageNet
validation images under 14 corruptions x 5 severities).

The corrupted images are generated on the device, batch by batch, from a seed per (corruption,
severity) derived from the evaluation's ``seed``: every model sees exactly the same corrupted
images (a paired comparison) and nothing is written to disk (TIN-TC at 64x64 would be 10 000 x 70
images). Several models (the seeds of one arm) are scored on each corrupted batch as it is made, so
the corruptions are generated once per arm. Per-image correctness is returned beside the
accuracies, for the bootstrap.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..models import inference_layout
from .corruptions import category_of, corrupt


def condition_seed(seed: int, corruption_index: int, severity: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, corruption_index, severity, batch, 61]).generate_state(1)[0])


def corrupted_batch(images_u8: torch.Tensor, corruptions, corruption: str, severity: int, seed: int,
                    start: int) -> torch.Tensor:
    """The corrupted version of ``images_u8`` (a slice beginning at test image ``start``) exactly as
    :func:`corruption_accuracy` made it: batches are seeded by their first image's index."""
    return corrupt(images_u8, corruption, severity, condition_seed(seed, list(corruptions).index(corruption),
                                                                   severity, start))


@torch.no_grad()
def corruption_accuracy(models, images: torch.Tensor, labels: torch.Tensor, corruptions, severities,
                        seed: int, batch_size: int, device, progress: bool = False
                        ) -> tuple[list[list[dict]], np.ndarray, list[tuple[str, int]]]:
    """(records, correct, conditions) for a list of models evaluated on the same images.

    records[m]: one dict per condition (corruption, category, severity, accuracy), clean first
    (corruption "clean", severity 0); correct: bool [n_models, n_conditions, n_images] in the same
    order; conditions: [(corruption, severity)]."""
    for model in models:
        model.eval()
    device = torch.device(device)
    conditions = [("clean", 0)] + [(c, s) for c in corruptions for s in severities]
    correct = np.zeros((len(models), len(conditions), len(images)), dtype=bool)
    labels_dev = labels.to(device)
    for k, (name, severity) in enumerate(tqdm(conditions, disable=not progress, mininterval=5)):
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            if name != "clean":
                x = corrupted_batch(x, corruptions, name, severity, seed, start)
            x = inference_layout(x.float() / 255.0)
            y = labels_dev[start:start + len(x)]
            for m, model in enumerate(models):
                correct[m, k, start:start + len(x)] = (model(x).argmax(1) == y).cpu().numpy()
    records = [[{"corruption": name, "category": "clean" if name == "clean" else category_of(name),
                 "severity": severity, "accuracy": float(correct[m, k].mean())}
                for k, (name, severity) in enumerate(conditions)] for m in range(len(models))]
    return records, correct, conditions
