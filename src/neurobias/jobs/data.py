"""The data stage's jobs: verified downloads, the prepared datasets, the V1 recording (simulated or
converted) and the V1 predictive model fitted to it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import resolve_device
from ..provenance import write_provenance
from .atomic import write_json


# -- data ----------------------------------------------------------------------------------------
def download(*, archive, entry: dict, config_key: str, progress: bool = True) -> None:
    """Fetch a dataset's or recording's archive (the one its declared source downloads), verified
    against its pinned checksum.

    The only job that touches the network (a `localrule`: on a cluster it runs where snakemake
    runs). md5s of the public datasets are pinned in code; the Cadena zip's sha256 in the config.
    ``config_key``: the entry's key, ``datasets.<name>`` or ``recordings.<name>``.
    """
    from ..data.download import DownloadError, fetch
    from ..sources import SOURCES, download_key
    started = time.time()
    src = SOURCES[download_key(entry, config_key.split(".")[0])]
    url = entry.get("url") or src["url"]
    sha256 = entry.get("sha256") or src.get("sha256")
    if not src.get("md5") and not sha256:
        raise DownloadError(
            f"{config_key}.sha256 is not set, and {url} is only parsed (unpickled) after its sha256 "
            f"matches a pinned value. Download it yourself (e.g. curl -LO {url}), compute "
            f"`sha256sum` of the zip, check it against the GIN record, then set {config_key}.sha256 "
            f"(and {config_key}.manual_path to skip a second download).")
    fetch(url, archive, md5=src.get("md5"), sha256=sha256, manual_path=entry.get("manual_path"),
          manual_key=f"{config_key}.manual_path", progress=progress)
    write_provenance(Path(archive).parent, job="download", filename=f"provenance_{Path(archive).name}.json",
                     config_slice={"url": url, "md5": src.get("md5"), "sha256": sha256}, started=started)


def download_vgg19_weights(*, weights) -> None:
    """torchvision's ImageNet VGG-19 weights (Li 2019's VGG control arm), hash-checked by torch.hub."""
    from ..neural.vgg_similarity import download_vgg19_weights as fetch_weights
    fetch_weights(Path(weights).parent)


def make_dataset(*, train, val, test, name: str, dataset_cfg: dict, archive=None) -> None:
    """One dataset in the prepared format: ``train``, ``val`` and ``test`` split files, built by
    the declared builder of its source (:mod:`neurobias.data`, or a plugin's)."""
    from ..data import save_split
    from ..registry import dataset_sources
    started = time.time()
    built = dataset_sources()[dataset_cfg["source"]].load()({**dataset_cfg, "archive": archive or None})
    splits, classes = built
    superclass_of_class = getattr(built, "superclass_of_class", None)
    out = {"train": train, "val": val, "test": test}
    for split, (images, labels) in splits.items():
        save_split(out[split], images, labels, classes, superclass_of_class, getattr(built, "superclasses", None))
        print(f"{name}/{split}: {images.shape} uint8, {len(classes)} classes")
    write_provenance(Path(train).parent, job="make_dataset", config_slice=dataset_cfg, seed=dataset_cfg.get("seed"),
                     started=started)


def make_recording(*, recording, name: str, recording_cfg: dict, archive=None) -> None:
    """A recording in the documented format, built by the declared builder of its source
    (:mod:`neurobias.neural`, or a plugin's): simulated, converted from a verified download, or
    read from the user's own file (``archive``: the download or the user's file, the job's input)."""
    from ..registry import recording_sources
    started = time.time()
    rec = recording_sources()[recording_cfg["source"]].load()(recording_cfg, archive or None, f"recordings.{name}")
    rec.save(recording)
    print(f"recording {name}: {rec.n_images} images, {rec.n_repeats} repeats, {rec.n_neurons} neurons")
    write_provenance(Path(recording).parent, job="make_recording", config_slice=recording_cfg,
                     seed=recording_cfg.get("seed"), started=started)


def simulate_recording(params: dict, out_path: str | Path) -> None:
    """A simulated recording (``source: simulated``) written to ``out_path``, outside the workflow."""
    make_recording(recording=out_path, name="simulated", recording_cfg={**params, "source": "simulated"})


# -- V1 predictive model --------------------------------------------------------------------------
def fit_v1_model(*, recording, model, metrics, v1_model_cfg: dict, device: str, progress: bool = True) -> dict:
    from ..neural.recording import Recording
    from ..neural.v1_model import fit_v1_model as fit, save_v1_model
    started = time.time()
    device = resolve_device(device)
    rec = Recording.load(recording)
    fitted, scores = fit(rec, device=device, progress=progress, **v1_model_cfg)
    save_v1_model(fitted, model)
    write_json(scores, metrics)
    summary = {k: v for k, v in scores.items() if not isinstance(v, (list, dict))}
    print(json.dumps(summary))
    write_provenance(Path(model).parent, job="fit_v1_model", config_slice=v1_model_cfg,
                     seed=v1_model_cfg.get("seed"), device=device, started=started, extra={"metrics": summary})
    return scores
