"""A recording in a Neurodata Without Borders (NWB 2) file, read with pynwb, as a config source.

Config entry (``recordings.<name>``, its schema declared in :mod:`neurobias.neural`)::

    my_nwb:
      source: nwb
      path: /data/lab/sub-01_ses-03.nwb
      sha256: 3b0c...                  # optional; checked before the file is parsed
      mapping:
        stimulus: natural_images       # in nwbfile.stimulus or nwbfile.stimulus_template
        trials: trials                 # the default: nwbfile.trials; else nwbfile.intervals[...]
        image_index_column: image_index
        response_column: responses
        tier_column: tier              # optional
      train_fraction: 0.8              # used only without tier_column

The layout read (what a lab writing trial-wise responses with pynwb naturally produces):

* **Stimulus images** ``mapping["stimulus"]``, looked up in ``nwbfile.stimulus`` and then
  ``nwbfile.stimulus_template``:

  - a :class:`pynwb.base.Images` container of ``GrayscaleImage`` ([H, W]) / ``RGBImage``
    ([H, W, 3]) images. Image *i* is ``order_of_images[i]`` when the container has
    ``order_of_images`` (the NWB way of fixing the order an ``IndexSeries`` indexes into);
    otherwise the images' names in natural sort order (``img2`` before ``img10``), noted in ``meta``;
  - an :class:`pynwb.image.ImageSeries` with embedded ``data`` [N, H, W] or [N, H, W, 3]: image
    *i* is frame *i* (``external_file`` series are refused);
  - an :class:`pynwb.image.IndexSeries`: the ``Images`` / ``ImageSeries`` it indexes into.

  uint8 images are taken as they are; other integer images must lie in 0..255; float images must
  lie in [0, 1] and are scaled by 255 and rounded. RGB becomes ITU-R BT.601 luma exactly as
  :func:`neurobias.data.cifar.luma` computes it (integer arithmetic, rounded half up).

* **Trials**: one row per stimulus presentation in the trials table (``nwbfile.trials``, or the
  ``TimeIntervals`` table ``nwbfile.intervals[mapping["trials"]]``), with

  - ``mapping["image_index_column"]``: the index of the image shown (an integer in 0..N-1);
  - ``mapping["response_column"]``: the response of every unit on that trial, either a 2-D column
    [n_trials, K] (``add_trial_column(name, description, data=array)``) or a ragged column
    (``index=True``) holding K values per trial. NaN marks a unit not recorded on that trial;
  - optionally ``mapping["tier_column"]``: ``"train"`` / ``"test"`` per trial (all trials of one
    image must agree).

  Repeats are the trials of an image in table (row) order; images may have different numbers of
  trials: R is the largest count and the missing repeats are NaN. Images never shown are dropped
  (their indices are in ``meta["images_without_trials"]``). ``image_ids`` are the image indices.
  Without a tier column the first ``int(N * train_fraction)`` shown images, in image index order,
  are ``train`` and the rest ``test`` (the convention of Cadena et al. 2019's original split).

The module imports only numpy, the standard library and :mod:`neurobias.neural.recording` (through
:mod:`neurobias.neural.recording_file`); pynwb is imported inside :func:`recording_from_nwb`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from .recording import TIERS, Recording, RecordingFormatError
from .recording_file import open_checked

MAPPING_REQUIRED = ("stimulus", "image_index_column", "response_column")
MAPPING_DEFAULTS = {"trials": "trials", "tier_column": None}

def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def _luma_hwc(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of uint8 [..., H, W, 3], as neurobias.data.cifar.luma (channels last here)."""
    r, g, b = (rgb[..., c].astype(np.uint32) for c in range(3))
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)


def _to_grey_uint8(arr, what: str, fail) -> np.ndarray:
    """A stack [N, H, W] or [N, H, W, C] (C 1 or 3) of images as uint8 grey [N, H, W]."""
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 4 and arr.shape[-1] == 4:
        fail(f"{what} are RGBA ([..., H, W, 4]); store grey [H, W] or RGB [H, W, 3] images")
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        fail(f"{what} must be grey [H, W] or RGB [H, W, 3] images (a stack [N, H, W] or "
             f"[N, H, W, 3]), got a stack of shape {arr.shape}")
    if arr.size == 0:
        fail(f"{what} are empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            fail(f"{what} contain NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            fail(f"{what} are floating point with values in [{lo:g}, {hi:g}]; float images must "
                 f"lie in [0, 1] (store uint8 0..255 otherwise)")
        out = np.rint(arr.astype(np.float64) * 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            fail(f"{what} are integers in [{lo}, {hi}]; integer images must lie in 0..255")
        out = arr.astype(np.uint8)
    else:
        fail(f"{what} have dtype {arr.dtype}; expected uint8 (0..255) or float (0..1)")
    if out.ndim == 4:
        out = _luma_hwc(out)
    return np.ascontiguousarray(out)


def _as_str(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _check_mapping(mapping, config_key: str) -> dict:
    if not isinstance(mapping, dict):
        raise RecordingFormatError(f"`{config_key}.mapping` must be a mapping with keys "
                                   f"{list(MAPPING_REQUIRED)} (and optionally {list(MAPPING_DEFAULTS)}), "
                                   f"got {type(mapping).__name__}")
    allowed = set(MAPPING_REQUIRED) | set(MAPPING_DEFAULTS)
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise RecordingFormatError(f"`{config_key}.mapping.{unknown[0]}`: unknown key(s) {unknown}; "
                                   f"allowed: {sorted(allowed)}")
    out = {**MAPPING_DEFAULTS, **mapping}
    for key in MAPPING_REQUIRED:
        if out.get(key) is None:
            raise RecordingFormatError(f"`{config_key}.mapping.{key}` is required (the name of the "
                                       f"{'stimulus images' if key == 'stimulus' else 'trials column'} "
                                       f"in the NWB file)")
    for key, value in out.items():
        if value is None and key == "tier_column":
            continue
        if not isinstance(value, str) or not value:
            raise RecordingFormatError(f"`{config_key}.mapping.{key}` must be a non-empty string, "
                                       f"got {value!r}")
    return out


def recording_from_nwb(path: str | Path, *, mapping: dict, sha256: str | None = None,
                       train_fraction: float = 0.8, config_key: str) -> Recording:
    """Read stimulus images and trial-wise responses from an NWB file into a :class:`Recording`.

    Parameters
    ----------
    path: the ``.nwb`` (HDF5) file (``<config_key>.path``).
    mapping: where things are in the file; keys ``stimulus``, ``image_index_column``,
        ``response_column`` (required), ``trials`` (default ``"trials"``), ``tier_column``
        (optional). See the module docstring for the layout.
    sha256: optional pinned sha256 of the file; compared before the file is parsed, and the file
        parsed is the same open file that was hashed.
    train_fraction: used only without ``tier_column``: the first ``int(N * train_fraction)`` images
        (by image index) are ``train``, the rest ``test``.
    config_key: where this entry lives in the config, e.g. ``"recordings.my_nwb"``; errors name
        ``<config_key>.path`` / ``.sha256`` / ``.mapping.<key>`` / ``.train_fraction``.

    ``meta``: ``source: "nwb"``, the path and its sha256, the session description, identifier and
    start time, the mapping (defaults filled in), how images were ordered, the split, the images
    without trials.
    """
    path = Path(path)
    mapping = _check_mapping(mapping, config_key)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0 < train_fraction < 1:
        raise RecordingFormatError(f"`{config_key}.train_fraction` must lie strictly between 0 and "
                                   f"1, got {train_fraction!r}")
    where = f"{path} (`{config_key}.path`)"

    def fail(msg):
        raise RecordingFormatError(f"{where}: {msg}")

    def fail_key(key, msg):
        raise RecordingFormatError(f"`{config_key}.mapping.{key}` = {mapping[key]!r}: {msg} "
                                   f"(in {path})")

    import h5py  # pynwb's HDF5 layer, used directly to parse the very file object that was hashed
    from pynwb import NWBHDF5IO

    fh, actual = open_checked(path, sha256, config_key, "NWB file")
    with fh:
        try:
            h5 = h5py.File(fh, "r")
        except OSError as e:
            fail(f"not a readable NWB (HDF5) file ({e})")
        try:
            with NWBHDF5IO(file=h5, mode="r") as io:
                try:
                    nwbfile = io.read()
                except Exception as e:  # pynwb raises many kinds for a file that is not NWB
                    fail(f"pynwb could not read it as an NWB file ({type(e).__name__}: {e})")
                images, image_info = _read_stimulus(nwbfile, mapping, fail_key)
                images = _to_grey_uint8(images, f"the stimulus images `{mapping['stimulus']}`", fail)
                trials = _read_trials(nwbfile, mapping, fail_key)
                session = {
                    "session_description": _as_str(nwbfile.session_description),
                    "identifier": _as_str(nwbfile.identifier),
                    "session_start_time": (nwbfile.session_start_time.isoformat()
                                           if nwbfile.session_start_time is not None else None),
                }
        finally:
            h5.close()

    return _assemble(images, image_info, trials, session, mapping, train_fraction, path, actual,
                     where, fail_key)


# -- reading -------------------------------------------------------------------------------------
def _read_stimulus(nwbfile, mapping, fail_key):
    from pynwb.base import Images
    from pynwb.image import ImageSeries, IndexSeries

    name = mapping["stimulus"]
    stim = nwbfile.stimulus.get(name) if nwbfile.stimulus is not None else None
    if stim is None and nwbfile.stimulus_template is not None:
        stim = nwbfile.stimulus_template.get(name)
    if stim is None:
        fail_key("stimulus", f"no such stimulus; nwbfile.stimulus has {sorted(nwbfile.stimulus or [])}, "
                             f"nwbfile.stimulus_template has {sorted(nwbfile.stimulus_template or [])}")
    info = {"stimulus_type": type(stim).__name__}
    if isinstance(stim, IndexSeries):
        target = stim.indexed_images if stim.indexed_images is not None else stim.indexed_timeseries
        if target is None:
            fail_key("stimulus", "the IndexSeries indexes into no Images / ImageSeries")
        info["indexed_by"] = f"IndexSeries {name!r} -> {target.name!r}"
        stim = target
        info["stimulus_type"] = type(stim).__name__
    if isinstance(stim, Images):
        if stim.order_of_images is not None:
            ordered = list(stim.order_of_images.data[:])
            info["image_order"] = "order_of_images"
        else:
            ordered = [stim.images[k] for k in sorted(stim.images, key=_natural_key)]
            info["image_order"] = ("no order_of_images: image index i is the i-th image name in "
                                   "natural sort order")
        if not ordered:
            fail_key("stimulus", "the Images container holds no images")
        arrays = [np.asarray(im.data[()]) for im in ordered]
        shapes = sorted({a.shape for a in arrays})
        if len(shapes) != 1:
            fail_key("stimulus", f"the images differ in shape ({shapes[:5]}); all must have one size")
        info["image_names"] = [im.name for im in ordered]
        return np.stack(arrays), info
    if isinstance(stim, ImageSeries):
        if stim.external_file is not None and (stim.data is None or np.size(stim.data) == 0):
            fail_key("stimulus", f"the ImageSeries refers to external files "
                                 f"{list(stim.external_file[:3])}; embed the frames in the file")
        info["image_order"] = "ImageSeries frames: image index i is frame i"
        return np.asarray(stim.data[()]), info
    fail_key("stimulus", f"is a {type(stim).__name__}; expected an Images container, an "
                         f"ImageSeries or an IndexSeries into one")


def _column(table, key, mapping, fail_key):
    name = mapping[key]
    if name not in table.colnames:
        fail_key(key, f"no such column in the {table.name!r} table; its columns are "
                      f"{list(table.colnames)}")
    return table[name]


def _read_trials(nwbfile, mapping, fail_key):
    from pynwb.core import VectorIndex

    name = mapping["trials"]
    tables = dict(nwbfile.intervals or {})
    table = tables.get(name)
    if table is None:
        fail_key("trials", f"no such trials table; nwbfile.intervals has {sorted(tables)} "
                           f"('trials' is nwbfile.trials)")
    n_trials = len(table)
    if n_trials == 0:
        fail_key("trials", "the trials table has no rows")

    idx_col = _column(table, "image_index_column", mapping, fail_key)
    if isinstance(idx_col, VectorIndex):
        fail_key("image_index_column", "is a ragged column; it must hold one image index per trial")
    index = np.asarray(idx_col.data[()])
    if index.shape != (n_trials,):
        fail_key("image_index_column", f"must hold one image index per trial, shape "
                                       f"[{n_trials}], got {index.shape}")
    if np.issubdtype(index.dtype, np.floating):
        if not np.all(np.isfinite(index)) or np.any(index != np.round(index)):
            fail_key("image_index_column", "holds non-integer image indices")
    elif not np.issubdtype(index.dtype, np.integer):
        fail_key("image_index_column", f"must hold integer image indices, got dtype {index.dtype}")

    resp_col = _column(table, "response_column", mapping, fail_key)
    if isinstance(resp_col, VectorIndex):
        rows = [np.asarray(r, dtype=np.float64).reshape(-1) for r in resp_col[:]]
        lengths = sorted({len(r) for r in rows})
        if len(lengths) != 1:
            fail_key("response_column", f"the ragged column has trials with different numbers of "
                                        f"units ({lengths[:5]}); every trial needs one value per unit "
                                        f"(NaN where not recorded)")
        responses = np.stack(rows)
        layout = "ragged column (one list of K values per trial)"
    else:
        data = np.asarray(resp_col.data[()])
        if data.dtype.kind not in "fiub":
            fail_key("response_column", f"must hold numbers, got dtype {data.dtype}")
        responses = data.astype(np.float64)
        if responses.ndim == 1:
            responses = responses[:, None]
        if responses.ndim != 2 or responses.shape[0] != n_trials:
            fail_key("response_column", f"must be [n_trials={n_trials}, units], got shape {data.shape}")
        layout = "2-D column [n_trials, units]"
    if responses.shape[1] == 0:
        fail_key("response_column", "holds no units")

    tiers = None
    if mapping["tier_column"] is not None:
        tier_col = _column(table, "tier_column", mapping, fail_key)
        if isinstance(tier_col, VectorIndex):
            fail_key("tier_column", "is a ragged column; it must hold one tier per trial")
        tiers = np.array([_as_str(v) for v in np.asarray(tier_col.data[()]).reshape(-1)])
        if tiers.shape != (n_trials,):
            fail_key("tier_column", f"must hold one tier per trial, got {tiers.shape[0]} values "
                                    f"for {n_trials} trials")
    return {"table": name, "n_trials": n_trials, "index": index, "responses": responses,
            "tiers": tiers, "response_layout": layout,
            "response_description": _as_str(getattr(resp_col, "description", ""))}


# -- assembling ----------------------------------------------------------------------------------
def _assemble(images, image_info, trials, session, mapping, train_fraction, path, sha, where,
              fail_key) -> Recording:
    n_images = images.shape[0]
    index = trials["index"].astype(np.int64)
    bad = np.flatnonzero((index < 0) | (index >= n_images))
    if bad.size:
        fail_key("image_index_column", f"trial(s) {bad[:5].tolist()} show image index "
                                       f"{index[bad[:5]].tolist()}, outside 0..{n_images - 1} (the "
                                       f"stimulus `{mapping['stimulus']}` has {n_images} images)")
    shown, counts = np.unique(index, return_counts=True)
    unshown = np.setdiff1d(np.arange(n_images), shown)
    if unshown.size:
        print(f"note: {where}: dropping {unshown.size} stimulus image(s) shown on no trial: "
              f"indices {unshown[:20].tolist()}", file=sys.stderr)
    n, n_repeats = len(shown), int(counts.max())
    responses_in = trials["responses"]
    n_units = responses_in.shape[1]

    row = np.searchsorted(shown, index)                     # position of each trial's image
    order = np.argsort(row, kind="stable")                  # trials grouped by image, row order kept
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    repeat = np.empty(len(index), dtype=np.int64)
    repeat[order] = np.arange(len(index)) - np.repeat(starts, counts)
    responses = np.full((n, n_repeats, n_units), np.nan, dtype=np.float32)
    responses[row, repeat] = responses_in

    split = {}
    if trials["tiers"] is not None:
        t = trials["tiers"]
        wrong = sorted(set(t.tolist()) - set(TIERS))
        if wrong:
            fail_key("tier_column", f"may only hold {list(TIERS)}, found {wrong[:5]}")
        tiers = np.empty(n, dtype="<U5")
        tiers[row] = t
        disagree = np.flatnonzero(tiers[row] != t)
        if disagree.size:
            img = int(index[disagree[0]])
            fail_key("tier_column", f"the trials of image {img} disagree on its tier "
                                    f"({sorted(set(t[index == img].tolist()))}); an image is "
                                    f"either train or test")
        split["split"] = f"tiers from trials column {mapping['tier_column']!r}"
    else:
        n_train = int(n * train_fraction)
        tiers = np.where(np.arange(n) < n_train, "train", "test")
        split["train_fraction"] = train_fraction
        split["split"] = (f"first {n_train} of {n} shown images (by image index) train, rest test "
                          f"(train_fraction {train_fraction})")

    meta = {
        "source": "nwb",
        "path": str(path),
        "sha256": sha,
        **session,
        "mapping": dict(mapping),
        "trials_table": trials["table"],
        "n_trials": trials["n_trials"],
        "response_layout": trials["response_layout"],
        "response_description": trials["response_description"],
        **image_info,
        **split,
        "images_without_trials": unshown.tolist(),
    }
    rec = object.__new__(Recording)  # validated below, with the file named in the message
    rec.images, rec.responses = images[shown], responses
    rec.image_ids, rec.tiers, rec.meta = shown.astype(np.int64), tiers.astype(str), meta
    if "image_names" in meta:
        meta["image_names"] = [meta["image_names"][i] for i in shown.tolist()]
    rec.validate(source=where)
    return rec


__all__ = ["recording_from_nwb", "recording_source"]


def recording_source(params: dict, archive, config_key: str) -> Recording:
    """The ``nwb`` recording source's builder (declared in :mod:`neurobias.neural`): ``archive`` is
    the user's file (the entry's ``path``, the job's input)."""
    return recording_from_nwb(archive or params["path"], mapping=params["mapping"], sha256=params.get("sha256"),
                              train_fraction=params["train_fraction"], config_key=config_key)
