"""Verified downloads: the only code in neurobias that touches the network (DESIGN.md section 5).

:func:`fetch` downloads one published file to a destination path, or copies a file the user placed
by hand (``manual_path``, a documented config key such as ``datasets.cifar10.manual_path``), and
returns the destination only once the file's checksum equals a value pinned in the repository.

Guarantees
----------
* **Pinned checksum or nothing.** Without an md5 or sha256 :func:`fetch` refuses to run
  (:func:`require_checksum`): several of the published files are pickles, and we never parse a file
  we have not verified.
* **Nothing half-written at ``dest``.** Bytes go to ``dest + ".part"`` (a manual copy to
  ``dest + ".manual.tmp"``); the checksum is verified on that file, and only then is it moved into
  place with :func:`os.replace` (atomic on one file system).
* **Resumable.** After a network failure the ``.part`` file is kept; the next attempt (a retry
  inside the same call or a later call) asks for the rest with an HTTP ``Range`` header. A server
  that answers 206 appends; one that answers 200 (no range support) restarts from byte 0.
* **Corrupt data is thrown away.** On a checksum mismatch the ``.part`` file is deleted: it cannot
  be resumed into a valid file.
* **Idempotent and offline when done.** If ``dest`` already holds the right bytes, no request is made.
* **Actionable errors.** Every failure raises :class:`DownloadError` naming the URL, the destination,
  expected and actual checksums (mismatch) or the network error / truncation (Content-Length versus
  bytes received), and explains how to place a manually downloaded file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

USER_AGENT = "neurobias-download/0.1 (+python urllib)"
CHUNK_SIZE = 1 << 20

# The published sources (DESIGN.md section 5). md5 values are torchvision's; the Cadena zip has no
# pinned value yet: it must be verified against the GIN record and set in the config
# (``recordings.<name>.sha256``) before the recording can be read (see neurobias.neural.cadena).
from ..sources import SOURCES  # noqa: E402  (re-exported: the pinned URLs and checksums)


_HEX_LENGTH = {"md5": 32, "sha256": 64}


class DownloadError(RuntimeError):
    """A file could not be obtained, or its bytes are not the published ones."""


class ChecksumError(DownloadError):
    """A file's checksum differs from the pinned value (or no value is pinned)."""


# -- checksums --------------------------------------------------------------------------------
def file_digests(path: str | Path, algorithms=("md5", "sha256")) -> dict[str, str]:
    """Hex digests of a file, all algorithms computed in one pass."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_SIZE), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _pinned(md5: str | None, sha256: str | None) -> dict[str, str]:
    pinned = {}
    for name, value in (("md5", md5), ("sha256", sha256)):
        if value is None:
            continue
        value = str(value).strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{_HEX_LENGTH[name]}}}", value):
            raise ChecksumError(f"the pinned {name} {value!r} is not a {_HEX_LENGTH[name]}-digit "
                                f"hexadecimal checksum; fix it in the config")
        pinned[name] = value
    return pinned


def require_checksum(url: str, md5: str | None = None, sha256: str | None = None) -> dict[str, str]:
    """The pinned checksums as ``{algorithm: hex}``; refuse when there is none.

    We never parse an unverified download (several of the published files are pickles).
    """
    pinned = _pinned(md5, sha256)
    if not pinned:
        raise ChecksumError(
            f"no pinned checksum for {url}; refusing to download a file that cannot be verified "
            f"(we never parse unverified downloads). Pin its md5 or sha256 in the config after "
            f"checking it against the publisher's record.")
    return pinned


def _mismatches(path: Path, pinned: dict[str, str]) -> list[tuple[str, str, str]]:
    """``[(algorithm, expected, actual)]`` for each pinned checksum the file fails."""
    actual = file_digests(path, tuple(pinned))
    return [(a, pinned[a], actual[a]) for a in pinned if actual[a] != pinned[a]]


def _describe_mismatch(bad) -> str:
    return "; ".join(f"expected {a} {exp}, got {act}" for a, exp, act in bad)


# -- errors -----------------------------------------------------------------------------------
def _manual_hint(url: str, dest: Path, pinned: dict[str, str], manual_key: str | None) -> str:
    key = f"`{manual_key}`" if manual_key else "the dataset's `manual_path` config key"
    sums = ", ".join(f"{a} {v}" for a, v in pinned.items())
    return (f"To use a manually downloaded copy: fetch {url} yourself (for example in a browser, "
            f"on a machine with network access), then set {key} to its path, or copy it to {dest}; "
            f"either way it is checked against {sums} before use.")


def _error(cls, what: str, url: str, dest: Path, pinned, manual_key, extra: str = ""):
    return cls(f"download of {url} to {dest} failed: {what}.{extra} "
               f"{_manual_hint(url, dest, pinned, manual_key)}")


# -- the download -----------------------------------------------------------------------------
class _Truncated(Exception):
    """The connection ended before Content-Length bytes arrived (resumable)."""


class _RestartFromZero(Exception):
    """The server's range answer does not fit the .part file: discard it and start again."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416 for the resume request: the .part file may already be complete."""


def _parse_content_range(value: str | None):
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def _attempt(url: str, part: Path, timeout: float, progress: bool, label: str) -> None:
    """One HTTP request; appends to / rewrites ``part``. Raises on any incompleteness."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            e.close()
            raise _RangeNotSatisfiable() from e
        raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.strip().isdigit() else None
        if status == 206 and offset:
            parsed = _parse_content_range(response.headers.get("Content-Range"))
            if parsed is None or parsed[0] != offset:
                raise _RestartFromZero(f"server answered range request for byte {offset} with "
                                       f"Content-Range {response.headers.get('Content-Range')!r}")
            mode, start = "ab", offset
        else:
            # 200 (the server ignores ranges, or no .part existed): the body is the whole file.
            mode, start = "wb", 0
        expected = None if length is None else start + length
        received = 0
        with open(part, mode) as out, tqdm(total=expected, initial=start, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=label, disable=not progress,
                                           file=sys.stderr, leave=False) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK_SIZE), b""):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except http.client.IncompleteRead as e:
                raise _Truncated(f"truncated transfer: the connection ended after {start + received} "
                                 f"of {expected} bytes (Content-Length {length}, "
                                 f"{received} received in this request)") from e
        if length is not None and received < length:
            raise _Truncated(f"truncated transfer: the connection ended after {start + received} of "
                             f"{expected} bytes (Content-Length {length}, {received} received in "
                             f"this request)")


def _backoff(attempt: int) -> None:
    time.sleep(min(30.0, 2.0 ** attempt))


def _copy_verified(src: Path, dest: Path, pinned: dict[str, str]) -> list:
    """Copy ``src`` to ``dest`` atomically, hashing the copy; returns mismatches (then no copy)."""
    tmp = dest.with_name(dest.name + ".manual.tmp")
    try:
        shutil.copyfile(src, tmp)
        bad = _mismatches(tmp, pinned)
        if bad:
            return bad
        os.replace(tmp, dest)
        return []
    finally:
        tmp.unlink(missing_ok=True)


def fetch(url: str, dest: str | Path, *, md5: str | None = None, sha256: str | None = None,
          manual_path: str | Path | None = None, manual_key: str | None = None,
          timeout: float = 60, retries: int = 3, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (or copy ``manual_path``) and verify its checksum.

    Parameters
    ----------
    url: http(s) URL of the published file.
    dest: where the verified file ends up; ``dest + ".part"`` holds a download in progress.
    md5, sha256: pinned checksum(s); at least one is required (:func:`require_checksum`), all given
        ones must match.
    manual_path: a file the user downloaded by hand (config key ``manual_key``, e.g.
        ``"datasets.cifar10.manual_path"``). When it exists it is verified and copied, and the
        network is not used; a mismatch is an error (no silent fallback to the network). A
        configured path that does not exist falls back to the download, with a note.
    manual_key: the config key name, quoted in error messages so the user knows what to set.
    timeout: socket timeout per request, seconds.
    retries: further attempts after a network failure (each resumes the ``.part`` file), with
        exponential back-off. A checksum mismatch is not retried.
    progress: show a tqdm progress bar on stderr.

    Returns ``dest`` as a :class:`~pathlib.Path`. Raises :class:`DownloadError`
    (:class:`ChecksumError` for checksum problems).
    """
    pinned = require_checksum(url, md5, sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    # 1. Already there and correct: no network.
    if dest.exists():
        bad = _mismatches(dest, pinned)
        if not bad:
            return dest
        rejected = dest.with_name(dest.name + ".rejected")
        os.replace(dest, rejected)
        print(f"note: {dest} exists but is not the published file ({_describe_mismatch(bad)}); "
              f"moved it to {rejected} (safe to delete) and fetching again", file=sys.stderr)

    # 2. A file placed by hand.
    manual_note = ""
    if manual_path is not None:
        manual = Path(manual_path).expanduser()
        if manual.exists():
            if manual.resolve() == dest.resolve():
                bad = _mismatches(dest, pinned)
            else:
                bad = _copy_verified(manual, dest, pinned)
            if bad:
                key = f" (config key `{manual_key}`)" if manual_key else ""
                raise ChecksumError(
                    f"the manually placed file {manual}{key} for {url} is not the published file: "
                    f"{_describe_mismatch(bad)}. It was not copied to {dest}. Download it again "
                    f"(an interrupted or altered download has a different checksum).")
            return dest
        manual_note = f" (the configured manual file {manual} does not exist)"
        print(f"note: manual file {manual} not found; downloading {url}", file=sys.stderr)

    # 3. Download.
    if not url.lower().startswith(("http://", "https://")):
        raise _error(DownloadError, f"only http(s) URLs are supported, got {url!r}", url, dest,
                     pinned, manual_key, manual_note)
    part = dest.with_name(dest.name + ".part")
    attempt, restarted = 0, False
    while True:
        try:
            _attempt(url, part, timeout, progress, dest.name)
            break
        except _RangeNotSatisfiable:
            if not _mismatches(part, pinned):
                break  # the .part file was already complete
            if restarted:
                raise _error(DownloadError, "the server refuses the range request (HTTP 416) "
                             "for a file that does not match", url, dest, pinned, manual_key)
            print(f"note: {part} cannot be resumed (HTTP 416); restarting from byte 0", file=sys.stderr)
            part.unlink(missing_ok=True)
            restarted = True
            continue
        except _RestartFromZero as e:
            part.unlink(missing_ok=True)
            if not restarted:
                print(f"note: {e}; restarting {url} from byte 0", file=sys.stderr)
                restarted = True
                continue
            reason = str(e)
        except _Truncated as e:
            reason = str(e)
        except urllib.error.HTTPError as e:
            reason = f"HTTP error {e.code} {e.reason}"
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise _error(DownloadError, reason, url, dest, pinned, manual_key, manual_note) from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = f"network or I/O error: {getattr(e, 'reason', None) or e}"
        attempt += 1
        if attempt > retries:
            kept = (f" The partial file {part} ({part.stat().st_size} bytes) is kept; the next "
                    f"run resumes it." if part.exists() and part.stat().st_size else "")
            raise _error(DownloadError, reason, url, dest, pinned, manual_key, manual_note + kept)
        print(f"note: {reason}; retry {attempt}/{retries} of {url}", file=sys.stderr)
        _backoff(attempt)

    # 4. Verify BEFORE anything parses the file, then move into place.
    if not part.exists():
        raise _error(DownloadError, "the server sent no data", url, dest, pinned, manual_key)
    bad = _mismatches(part, pinned)
    if bad:
        size = part.stat().st_size
        part.unlink()
        raise _error(ChecksumError, f"checksum mismatch for the {size} bytes received: "
                     f"{_describe_mismatch(bad)}", url, dest, pinned, manual_key,
                     " The partial file was deleted (it cannot be resumed into the published file).")
    os.replace(part, dest)
    return dest


__all__ = ["SOURCES", "ChecksumError", "DownloadError", "fetch", "file_digests", "require_checksum"]
