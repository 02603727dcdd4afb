"""A user's own recording: an ``.npz`` file in the documented format, as a config source.

Config entry (``recordings.<name>``, its schema declared in :mod:`neurobias.neural`)::

    my_v1:
      source: file
      path: /data/lab/v1_session3.npz
      sha256: 3b0c...   # optional; when given, checked before the file is parsed

The file holds the arrays of :mod:`neurobias.neural.recording` (``images``, ``responses``,
``image_ids``, ``tiers`` and, optionally here, ``meta``). :func:`recording_from_file`

* refuses a missing file, naming ``<config_key>.path``;
* when ``sha256`` is given, hashes the file and compares **before** ``np.load`` parses it, and then
  parses the same open file (what is verified is what is read);
* loads with ``allow_pickle=False``: an archive holding object arrays is refused, naming the key,
  and nothing is unpickled;
* validates with :meth:`Recording.validate`; every error names the file, the field and the config
  key.

Imports only numpy, the standard library and :mod:`neurobias.neural.recording`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from .recording import Recording, RecordingFormatError

REQUIRED_KEYS = ("images", "responses", "image_ids", "tiers")
OPTIONAL_KEYS = ("meta",)

class RecordingChecksumError(RecordingFormatError):
    """A recording file's sha256 differs from the value given in the config (it was not parsed)."""


class RecordingFileNotFoundError(RecordingFormatError, FileNotFoundError):
    """The recording file named in the config does not exist."""


# -- shared with neurobias.neural.nwb ------------------------------------------------------------
def normalise_sha256(sha256: str | None, config_key: str) -> str | None:
    """The configured sha256 as lower-case hex, or None; a malformed value names ``<key>.sha256``."""
    if sha256 is None:
        return None
    value = str(sha256).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise RecordingChecksumError(
            f"`{config_key}.sha256` = {sha256!r} is not a 64-digit hexadecimal sha256; "
            f"compute it with `sha256sum <file>` (or leave it out / null to skip the check)")
    return value


def open_checked(path: str | Path, sha256: str | None, config_key: str, what: str):
    """Open ``path`` for reading, hash it and compare with ``sha256`` before anything parses it.

    Returns ``(open binary file positioned at 0, actual sha256)``; the caller parses that same file
    object and closes it. ``what`` describes the file in messages ("recording .npz", "NWB file").
    """
    expected = normalise_sha256(sha256, config_key)
    path = Path(path)
    if not path.is_file():
        state = "is not a regular file" if path.exists() else "does not exist"
        raise RecordingFileNotFoundError(
            f"`{config_key}.path` = {str(path)!r}: the {what} {state}"
            + (f" (resolved against the working directory {Path.cwd()})" if not path.is_absolute() else ""))
    f = open(path, "rb")
    try:
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise RecordingChecksumError(
                f"{path}: sha256 mismatch for the {what} given as `{config_key}.path`: expected "
                f"{expected} (`{config_key}.sha256`), got {actual}. The file was not parsed. If the "
                f"file changed on purpose, verify it and set `{config_key}.sha256: {actual}`.")
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f, actual


# -- the npz source ------------------------------------------------------------------------------
def recording_from_file(path: str | Path, *, sha256: str | None = None,
                        config_key: str) -> Recording:
    """Read a user's recording ``.npz`` (the documented format) into a :class:`Recording`.

    Parameters
    ----------
    path: the ``.npz`` file (``<config_key>.path``).
    sha256: optional pinned sha256 of the file; compared before the file is parsed.
    config_key: where this entry lives in the config, e.g. ``"recordings.my_v1"``; every error
        names it.

    ``meta`` of the result: ``{"source": "file", "path": <path as given>, "sha256": <actual>,
    "file_meta": <the file's own meta object, {} if it has none>}``.

    Raises :class:`RecordingFormatError` (or its subclasses :class:`RecordingFileNotFoundError`,
    :class:`RecordingChecksumError`) with the file, the field and the config key.
    """
    path = Path(path)
    where = f"{path} (`{config_key}.path`)"

    def fail(msg):
        raise RecordingFormatError(f"{where}: {msg}")

    f, actual = open_checked(path, sha256, config_key, "recording .npz")
    with f:
        try:
            loaded = np.load(f, allow_pickle=False)  # a recording is plain arrays: never unpickle
        except (OSError, ValueError, EOFError) as e:
            fail(f"not a readable .npz archive ({e})")
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            fail("a recording is an .npz archive of named arrays; this file holds a single array "
                 "(write it with numpy.savez / Recording.save)")
        with loaded as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                fail(f"missing field(s) {missing}; a recording needs {list(REQUIRED_KEYS)} "
                     f"(optionally 'meta'), the file has {sorted(z.files)}")
            arrays = {}
            for key in REQUIRED_KEYS + OPTIONAL_KEYS:
                if key not in z.files:
                    continue
                try:
                    arrays[key] = z[key]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        fail(f"field {key!r} is an object (pickled) array; refusing to unpickle it. "
                             f"Store plain numeric / string arrays (e.g. tiers as "
                             f"np.array(['train', ...]) of dtype '<U5', meta as a 0-d JSON string)")
                    fail(f"field {key!r} could not be read ({e})")
                except (OSError, EOFError) as e:
                    fail(f"field {key!r} could not be read ({e})")

    file_meta: dict = {}
    if "meta" in arrays:
        meta_arr = arrays["meta"]
        if meta_arr.ndim != 0 or meta_arr.dtype.kind not in "US":
            fail(f"field 'meta' must be a 0-d string holding a JSON object "
                 f"(np.array(json.dumps(meta))), got dtype {meta_arr.dtype} shape {meta_arr.shape}")
        try:
            file_meta = json.loads(str(meta_arr.astype(str)))
        except json.JSONDecodeError as e:
            fail(f"field 'meta' is not valid JSON ({e})")
        if not isinstance(file_meta, dict):
            fail(f"field 'meta' must be a JSON object, got {type(file_meta).__name__}")

    tiers = arrays["tiers"]
    if tiers.dtype.kind not in "US":
        fail(f"field 'tiers' must hold strings 'train' / 'test', got dtype {tiers.dtype}")

    rec = object.__new__(Recording)  # validated below, with the file named in the message
    rec.images, rec.responses, rec.image_ids = arrays["images"], arrays["responses"], arrays["image_ids"]
    rec.tiers = tiers.astype(str)
    rec.meta = {"source": "file", "path": str(path), "sha256": actual, "file_meta": file_meta}
    rec.validate(source=where)
    rec.responses = rec.responses.astype(np.float32, copy=False)  # the format's dtypes
    rec.image_ids = rec.image_ids.astype(np.int64, copy=False)
    return rec


__all__ = ["RecordingChecksumError", "RecordingFileNotFoundError",
           "recording_from_file"]


def recording_source(params: dict, archive, config_key: str) -> Recording:
    """The ``file`` recording source's builder (declared in :mod:`neurobias.neural`): ``archive`` is
    the user's file (the entry's ``path``, the job's input)."""
    return recording_from_file(archive or params["path"], sha256=params.get("sha256"), config_key=config_key)
