"""Cadena et al. 2019 monkey V1 recording (GIN, CC BY-NC-ND 4.0) into the Recording format.

Source (DESIGN.md section 5): the GIN zip at
``https://doid.gin.g-node.org/2e31e304e03d6357c98ac735a1fe5788/2e31e304e03d6357c98ac735a1fe5788.zip``
(record https://gin.g-node.org/doi/Cadena_PlosCB19_data) holds
``Cadena_PlosCB19_data/data_binned_responses/cadena_ploscb_data.pkl``, a pickled dict:

=================  =====================  ===============================================
key                shape                  meaning
=================  =====================  ===============================================
``images``         (7250, 140, 140)       grey stimuli, 0-255
``responses``      (4, 7250, 166)         repeat x image x neuron; NaN = not recorded
``repetitions``    (166,)                 repeats per neuron's session (2 or 4)
``subject_id``     (166,)                 monkey of each neuron
``image_ids``      (7250,) or (7250, 1)   image identifiers
``image_types``    (7250,) or (7250, 1)   'original', 'conv1' ... 'conv4'
``image_numbers``  (7250,) or (7250, 1)
=================  =====================  ===============================================

SECURITY: a pickle runs code when loaded. :func:`cadena_recording` hashes the file it is given
(the zip or the bare pickle) and unpickles only if the sha256 equals the value pinned in the config
(``recordings.<name>.sha256``). No value is pinned in the repository: the file could not be
downloaded from the machine this code was written on, so the first user must verify it against
the GIN record and pin it (the refusal message prints the actual sha256).

Licence: CC BY-NC-ND 4.0 -- download at run time, never redistribute (not even converted).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

from ..data.download import SOURCES, ChecksumError
from .recording import Recording, RecordingFormatError

CADENA_MEMBER = "Cadena_PlosCB19_data/data_binned_responses/cadena_ploscb_data.pkl"
LICENCE = "CC BY-NC-ND 4.0 — download at run time, never redistribute"
RECORD_URL = "https://gin.g-node.org/doi/Cadena_PlosCB19_data"
CITATION = ("Cadena SA, Denfield GH, Walker EY, Gatys LA, Tolias AS, Bethge M, Ecker AS (2019). "
            "Deep convolutional models improve predictions of macaque V1 responses to natural "
            "images. PLoS Comput Biol 15(4): e1006897.")


def _sha256_of_open_file(f) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    f.seek(0)
    return h.hexdigest()


def _check_pinned(path: Path, actual: str, sha256: str | None, config_key: str) -> None:
    if sha256 is None:
        raise ChecksumError(
            f"{path}: no sha256 is pinned for the Cadena et al. 2019 recording, so it will not be "
            f"unpickled (unpickling runs code). Its actual sha256 is {actual}. Verify that this is "
            f"the file published at {RECORD_URL} ({SOURCES['cadena']['url']}), e.g. by downloading "
            f"it again on another machine and comparing, then pin it in the config as "
            f"`{config_key}: {actual}`.")
    expected = str(sha256).strip().lower()
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 mismatch for the Cadena et al. 2019 recording: expected {expected} "
            f"(pinned as `{config_key}`), got {actual}. Refusing to unpickle it (unpickling runs "
            f"code). Delete it and download it again from {SOURCES['cadena']['url']}.")


def _find_member(zf: zipfile.ZipFile, member: str, path: Path) -> str:
    if member in zf.NameToInfo:
        return member
    base = member.rsplit("/", 1)[-1]
    found = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == base]
    if len(found) != 1:
        raise RecordingFormatError(f"{path}: expected one {member} in the zip, found {found or 'none'}")
    return found[0]


def _as_1d(data: dict, key: str, n: int, path: Path):
    if key not in data:
        return None
    arr = np.asarray(data[key])
    if arr.size != n:
        raise RecordingFormatError(f"{path}: '{key}' has {arr.size} entries, expected {n}")
    return arr.reshape(n)


def _to_list(arr) -> list:
    out = []
    for v in np.asarray(arr).tolist():
        out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    return out


def cadena_recording(pickle_path_or_zip: str | Path, *, sha256: str | None,
                     train_fraction: float = 0.8, member: str = CADENA_MEMBER,
                     config_key: str = "recordings.<name>.sha256") -> Recording:
    """Convert the Cadena et al. 2019 data to a :class:`~neurobias.neural.recording.Recording`.

    Parameters
    ----------
    pickle_path_or_zip: the GIN zip (the pickle is read from ``member`` inside it, never extracted)
        or the bare ``cadena_ploscb_data.pkl``.
    sha256: the pinned sha256 **of the file given** (zip or pickle). ``None`` or a mismatch raises
        :class:`~neurobias.data.download.ChecksumError` before anything is unpickled; the message
        gives the actual value and the config key (``config_key``) to pin it under.
    train_fraction: the first ``int(N * train_fraction)`` images form the ``train`` tier, the rest
        ``test`` (the original split of Cadena et al. 2019, their ``train_frac=0.8``).

    Conversion: images rounded to uint8 [N, 140, 140]; responses transposed from
    [repeats, N, neurons] to [N, repeats, neurons] float32, NaN kept (neurons recorded with only 2
    repeats have NaN in repeats 3-4; nothing is duplicated); ``image_ids`` the given ones if unique,
    else ``arange(N)`` (the given ones are kept in ``meta['source_image_ids']``). Neurons and images
    with no recorded trial at all are dropped with a note on stderr (their original indices are in
    ``meta``). ``meta`` also holds the licence, the sha256, ``subject_id`` and ``repetitions`` per
    kept neuron and ``image_types`` / ``image_numbers`` per kept image.
    """
    path = Path(pickle_path_or_zip)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    with open(path, "rb") as f:
        # Hash and read through the same open file, so what is verified is what is unpickled.
        actual = _sha256_of_open_file(f)
        _check_pinned(path, actual, sha256, config_key)
        if zipfile.is_zipfile(f):
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                inner = _find_member(zf, member, path)
                with zf.open(inner) as pf:
                    data = pickle.load(pf, encoding="latin1")  # verified above
        else:
            f.seek(0)
            inner = None
            data = pickle.load(f, encoding="latin1")  # verified above
    source = f"{path}:{inner}" if inner else str(path)
    return _convert(data, source, actual, train_fraction)


def _convert(data, source: str, sha: str, train_fraction: float) -> Recording:
    def fail(msg):
        raise RecordingFormatError(f"{source}: {msg}")

    if not isinstance(data, dict):
        fail(f"expected a dict (the Cadena et al. 2019 format), got {type(data).__name__}")
    for key in ("images", "responses"):
        if key not in data:
            fail(f"missing key {key!r}; found {sorted(map(str, data))}")
    images = np.asarray(data["images"])
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        fail(f"'images' must have shape [N, H, W], got {images.shape}")
    n = images.shape[0]
    responses = np.asarray(data["responses"], dtype=np.float32)
    if responses.ndim != 3 or responses.shape[1] != n:
        fail(f"'responses' must have shape [repeats, {n} images, neurons], got {responses.shape}")
    if np.issubdtype(images.dtype, np.floating):
        if not np.all(np.isfinite(images)) or images.min() < -0.5 or images.max() > 255.5:
            fail("'images' must be finite grey values in 0..255")
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    elif images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            fail("'images' must lie in 0..255")
        images = images.astype(np.uint8)
    responses = np.ascontiguousarray(responses.transpose(1, 0, 2))  # [N, repeats, neurons]
    n_neurons = responses.shape[2]

    n_train = int(n * train_fraction)
    tiers = np.where(np.arange(n) < n_train, "train", "test")

    given_ids = _as_1d(data, "image_ids", n, source)
    meta_extra = {}
    if (given_ids is not None and np.issubdtype(given_ids.dtype, np.integer)
            and len(np.unique(given_ids)) == n):
        image_ids = given_ids.astype(np.int64)
    else:
        image_ids = np.arange(n, dtype=np.int64)
        if given_ids is not None:
            meta_extra["source_image_ids"] = _to_list(given_ids)
            meta_extra["image_ids_note"] = ("the published image_ids are not unique integers; "
                                            "image_ids here are row indices of the published arrays")

    per_neuron = {k: _as_1d(data, k, n_neurons, source) for k in ("subject_id", "repetitions")}
    per_image = {k: _as_1d(data, k, n, source) for k in ("image_types", "image_numbers")}
    if "source_image_ids" in meta_extra:
        per_image["source_image_ids"] = np.asarray(meta_extra.pop("source_image_ids"), dtype=object)

    recorded = ~np.isnan(responses)
    keep_neurons = recorded.any(axis=(0, 1))
    dropped_neurons = np.flatnonzero(~keep_neurons)
    if dropped_neurons.size:
        print(f"note: {source}: dropping {dropped_neurons.size} neuron(s) with no recorded trial "
              f"(all NaN): indices {dropped_neurons.tolist()[:20]}", file=sys.stderr)
    keep_images = recorded[:, :, keep_neurons].any(axis=(1, 2))
    dropped_images = np.flatnonzero(~keep_images)
    if dropped_images.size:
        print(f"note: {source}: dropping {dropped_images.size} image(s) with no recorded trial "
              f"(all NaN): indices {dropped_images.tolist()[:20]}", file=sys.stderr)

    meta = {
        "source": "Cadena et al. 2019 monkey V1 (data_binned_responses)",
        "citation": CITATION,
        "record": RECORD_URL,
        "url": SOURCES["cadena"]["url"],
        "licence": LICENCE,
        "file": source,
        "sha256": sha,
        "units": "binned spike counts as published",
        "train_fraction": train_fraction,
        "split": f"first {n_train} of {n} published images train, rest test (original split)",
        "dropped_neurons": dropped_neurons.tolist(),
        "dropped_images": dropped_images.tolist(),
        **meta_extra,
    }
    for k, v in per_neuron.items():
        if v is not None:
            meta[k] = _to_list(v[keep_neurons])
    for k, v in per_image.items():
        if v is not None:
            meta[k] = _to_list(v[keep_images])

    return Recording(images=images[keep_images],
                     responses=responses[keep_images][:, :, keep_neurons],
                     image_ids=image_ids[keep_images], tiers=tiers[keep_images], meta=meta)


__all__ = ["CADENA_MEMBER", "LICENCE", "cadena_recording"]


def recording_from_config(params: dict, archive, config_key: str) -> Recording:
    """The ``cadena2019`` recording source's builder (declared in :mod:`neurobias.neural`):
    ``archive`` is the downloaded zip, ``params`` the config entry at ``config_key``."""
    return cadena_recording(archive or None, sha256=params.get("sha256"), train_fraction=params["train_fraction"],
                            config_key=f"{config_key}.sha256")
