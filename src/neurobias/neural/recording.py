"""The recording format every V1 data source is converted to.

One ``.npz`` file holds one recording (simulated or real, e.g. Cadena et al. 2019):

==============  =====================  ==============================================
key             shape / dtype          meaning
==============  =====================  ==============================================
``images``      [N, H, W] uint8        grey stimulus images, 0-255
``responses``   [N, R, K] float32      response of neuron k on repeat r of image n;
                                       NaN where that trial was not recorded
``image_ids``   [N] int64              stable identifier of each image (unique)
``tiers``       [N] str                ``"train"`` or ``"test"`` (the original split)
``meta``        0-d str (JSON)         free metadata: source, licence, units, seed ...
==============  =====================  ==============================================

Why NaN instead of a mask: the Cadena pickle already marks unrecorded trials that way, and
``np.nanmean`` over the repeat axis gives the trial average directly.

:func:`Recording.load` validates everything it reads and raises :class:`RecordingFormatError`
naming the file and the field, so a user who brings their own recording learns at once what is
wrong with it rather than deep inside a training job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIERS = ("train", "test")


class RecordingFormatError(ValueError):
    """A recording file does not follow the documented format."""


@dataclass
class Recording:
    images: np.ndarray
    responses: np.ndarray
    image_ids: np.ndarray
    tiers: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    # -- derived views -------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_repeats(self) -> int:
        return int(self.responses.shape[1])

    @property
    def n_neurons(self) -> int:
        return int(self.responses.shape[2])

    def trial_average(self) -> np.ndarray:
        """Mean response over the recorded repeats, [N, K] (NaN only where no repeat exists)."""
        with np.errstate(invalid="ignore"):
            counts = np.sum(~np.isnan(self.responses), axis=1)
            sums = np.nansum(self.responses, axis=1)
            out = sums / np.maximum(counts, 1)
        out[counts == 0] = np.nan
        return out.astype(np.float32)

    def tier_mask(self, tier: str) -> np.ndarray:
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
        return self.tiers == tier

    def subset(self, mask: np.ndarray) -> "Recording":
        return Recording(self.images[mask], self.responses[mask], self.image_ids[mask],
                         self.tiers[mask], dict(self.meta))

    # -- validation ----------------------------------------------------------------------
    def validate(self, source: str = "<in memory>") -> None:
        def fail(msg):
            raise RecordingFormatError(f"{source}: {msg}")

        if self.images.ndim != 3:
            fail(f"'images' must have shape [N, H, W], got {self.images.shape}")
        if self.images.dtype != np.uint8:
            fail(f"'images' must be uint8 (0-255), got {self.images.dtype}")
        if self.responses.ndim != 3:
            fail(f"'responses' must have shape [N, repeats, neurons], got {self.responses.shape}")
        if not np.issubdtype(self.responses.dtype, np.floating):
            fail(f"'responses' must be floating point (NaN marks missing trials), got {self.responses.dtype}")
        n = self.images.shape[0]
        if self.responses.shape[0] != n:
            fail(f"'responses' has {self.responses.shape[0]} images but 'images' has {n}")
        if self.image_ids.shape != (n,):
            fail(f"'image_ids' must have shape [{n}], got {self.image_ids.shape}")
        if not np.issubdtype(self.image_ids.dtype, np.integer):
            fail(f"'image_ids' must be integers, got {self.image_ids.dtype}")
        if len(np.unique(self.image_ids)) != n:
            fail("'image_ids' must be unique")
        if self.tiers.shape != (n,):
            fail(f"'tiers' must have shape [{n}], got {self.tiers.shape}")
        bad = sorted(set(np.unique(self.tiers).tolist()) - set(TIERS))
        if bad:
            fail(f"'tiers' may only contain {TIERS}, found {bad}")
        for tier in TIERS:
            if not np.any(self.tiers == tier):
                fail(f"'tiers' has no {tier!r} images; both a train and a test tier are required")
        if np.isinf(self.responses).any():
            fail("'responses' contains infinite values")
        recorded = ~np.isnan(self.responses)
        dead = np.flatnonzero(~recorded.any(axis=(0, 1)))
        if dead.size:
            fail(f"'responses' has {dead.size} neuron(s) with no recorded trial at all "
                 f"(all NaN), e.g. neuron index {dead[:5].tolist()}")
        unseen = np.flatnonzero(~recorded.any(axis=(1, 2)))
        if unseen.size:
            fail(f"'responses' has {unseen.size} image(s) with no recorded trial at all, "
                 f"e.g. image index {unseen[:5].tolist()}")

    # -- io ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: a killed job never leaves a half-written recording behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, images=self.images, responses=self.responses.astype(np.float32),
                            image_ids=self.image_ids.astype(np.int64),
                            tiers=self.tiers.astype(str), meta=np.array(json.dumps(self.meta)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        path = Path(path)
        required = ("images", "responses", "image_ids", "tiers", "meta")
        try:
            # allow_pickle=False: a recording is plain arrays; refuse anything that would run code.
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise RecordingFormatError(f"{path}: a recording is an .npz archive of named arrays, "
                                           f"this file holds a single array")
            with loaded as f:
                missing = [k for k in required if k not in f.files]
                if missing:
                    raise RecordingFormatError(
                        f"{path}: missing key(s) {missing}; a recording needs {list(required)}")
                arrays = {k: f[k] for k in required}
        except (OSError, ValueError) as e:
            if isinstance(e, RecordingFormatError):
                raise
            raise RecordingFormatError(f"{path}: not a readable recording .npz ({e})") from e
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as e:
            raise RecordingFormatError(f"{path}: 'meta' is not valid JSON ({e})") from e
        if not isinstance(meta, dict):
            raise RecordingFormatError(f"{path}: 'meta' must be a JSON object, got {type(meta).__name__}")
        rec = object.__new__(cls)
        rec.images, rec.responses = arrays["images"], arrays["responses"]
        rec.image_ids, rec.tiers, rec.meta = arrays["image_ids"], arrays["tiers"].astype(str), meta
        rec.validate(source=str(path))
        return rec
