"""Tests for the user-recording sources: an own ``.npz`` (neurobias.neural.recording_file) and an
NWB file read with pynwb (neurobias.neural.nwb)."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurobias.neural.recording import Recording, RecordingFormatError
from neurobias.config import load_schema
from neurobias.neural.recording_file import RecordingChecksumError, RecordingFileNotFoundError, recording_from_file
from neurobias.neural.nwb import recording_from_nwb


def _source_schema(source: str) -> dict:
    """The closed schema of one recording source's config entry, as the config schema builds it
    from the source's declaration (neurobias.neural)."""
    branches = load_schema()["$defs"]["recording"]["allOf"]
    return next(b["then"] for b in branches if b["if"]["properties"]["source"]["const"] == source)


FILE_SCHEMA, NWB_SCHEMA = _source_schema("file"), _source_schema("nwb")

ROOT = Path(__file__).resolve().parents[1]
KEY = "recordings.x"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _recording(n=8, repeats=3, neurons=4, seed=0) -> Recording:
    rng = np.random.default_rng(seed)
    responses = rng.poisson(3.0, (n, repeats, neurons)).astype(np.float32)
    responses[2, 1, 0] = np.nan
    responses[5, 2, :] = np.nan
    return Recording(images=rng.integers(0, 256, (n, 6, 5), dtype=np.uint8), responses=responses,
                     image_ids=np.arange(40, 40 + n, dtype=np.int64),
                     tiers=np.array(["train"] * (n - 3) + ["test"] * 3),
                     meta={"lab": "unit test", "units": "spikes"})


# == source: file ===============================================================================

def test_file_round_trip(tmp_path):
    rec = _recording()
    path = tmp_path / "mine.npz"
    rec.save(path)
    out = recording_from_file(path, sha256=_sha(path).upper(), config_key=KEY)  # case-insensitive
    np.testing.assert_array_equal(out.images, rec.images)
    np.testing.assert_array_equal(out.responses, rec.responses)  # NaN == NaN here
    np.testing.assert_array_equal(out.image_ids, rec.image_ids)
    np.testing.assert_array_equal(out.tiers, rec.tiers)
    assert out.images.dtype == np.uint8 and out.responses.dtype == np.float32
    assert out.image_ids.dtype == np.int64
    assert out.meta == {"source": "file", "path": str(path), "sha256": _sha(path),
                        "file_meta": {"lab": "unit test", "units": "spikes"}}
    # no sha256: still read, the actual value recorded
    assert recording_from_file(path, config_key=KEY).meta["sha256"] == _sha(path)


def test_file_without_meta_and_wider_dtypes_is_accepted(tmp_path):
    rec = _recording()
    path = tmp_path / "plain.npz"
    np.savez(path, images=rec.images, responses=rec.responses.astype(np.float64),
             image_ids=rec.image_ids.astype(np.int32), tiers=rec.tiers)
    out = recording_from_file(path, config_key=KEY)
    assert out.meta["file_meta"] == {}
    assert out.responses.dtype == np.float32 and out.image_ids.dtype == np.int64
    np.testing.assert_array_equal(out.responses, rec.responses)


def test_file_wrong_sha256_is_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "mine.npz"
    _recording().save(path)
    wrong = "0" * 64

    def no_parsing(*args, **kwargs):
        raise AssertionError("np.load was called on an unverified file")

    monkeypatch.setattr(np, "load", no_parsing)
    with pytest.raises(RecordingChecksumError) as e:
        recording_from_file(path, sha256=wrong, config_key=KEY)
    msg = str(e.value)
    assert f"`{KEY}.sha256`" in msg and str(path) in msg and wrong in msg and _sha(path) in msg


def test_file_malformed_sha256_names_the_key(tmp_path):
    path = tmp_path / "mine.npz"
    _recording().save(path)
    with pytest.raises(RecordingFormatError, match=re.escape(f"`{KEY}.sha256`")):
        recording_from_file(path, sha256="abc", config_key=KEY)


_UNPICKLED: list = []


def _mark_unpickled():
    _UNPICKLED.append(True)
    return "train"


class _Trap:
    def __reduce__(self):
        return (_mark_unpickled, ())


def test_file_object_array_is_refused_not_unpickled(tmp_path):
    rec = _recording()
    path = tmp_path / "pickled.npz"
    tiers = np.array([_Trap()] + list(rec.tiers[1:]), dtype=object)
    np.savez(path, images=rec.images, responses=rec.responses, image_ids=rec.image_ids, tiers=tiers,
             meta=np.array("{}"))
    _UNPICKLED.clear()
    with pytest.raises(RecordingFormatError) as e:
        recording_from_file(path, config_key=KEY)
    msg = str(e.value)
    assert "'tiers'" in msg and "pickle" in msg and str(path) in msg and f"`{KEY}.path`" in msg
    assert _UNPICKLED == []


def test_file_missing_field_is_named(tmp_path):
    rec = _recording()
    path = tmp_path / "partial.npz"
    np.savez(path, images=rec.images, responses=rec.responses, tiers=rec.tiers)
    with pytest.raises(RecordingFormatError) as e:
        recording_from_file(path, config_key=KEY)
    msg = str(e.value)
    assert "['image_ids']" in msg and str(path) in msg and f"`{KEY}.path`" in msg


def test_file_validation_error_names_file_field_and_key(tmp_path):
    rec = _recording()
    path = tmp_path / "notest.npz"
    np.savez(path, images=rec.images, responses=rec.responses, image_ids=rec.image_ids,
             tiers=np.array(["train"] * rec.n_images))
    with pytest.raises(RecordingFormatError) as e:
        recording_from_file(path, config_key=KEY)
    msg = str(e.value)
    assert "'tiers'" in msg and "'test'" in msg and str(path) in msg and f"`{KEY}.path`" in msg


def test_file_missing_file_names_the_path_key(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(RecordingFileNotFoundError) as e:
        recording_from_file(path, sha256="0" * 64, config_key=KEY)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, RecordingFormatError)
    assert f"`{KEY}.path`" in str(e.value) and str(path) in str(e.value)


def test_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(RecordingFormatError, match=re.escape(str(path))):
        recording_from_file(path, config_key=KEY)


# == source: nwb ================================================================================

H = W = 16
N_IMAGES, N_UNITS = 12, 3


def _experiment(seed=1):
    """Images, and trials as (image index, responses of the units) in presentation order.

    Even images are shown 3 times, odd ones twice; image 5 misses one of its trials (the
    recording of that presentation was lost), so it has one trial; unit 2 was not recorded on one
    trial (NaN). Returns the expected [N, R, K] responses too (repeats in presentation order)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N_IMAGES, H, W), dtype=np.uint8)
    shows = [i for i in range(N_IMAGES) for _ in range(3 if i % 2 == 0 else 2)]
    shows.remove(5)
    shows = [shows[j] for j in rng.permutation(len(shows))]
    trials = []
    for i in shows:
        r = rng.poisson(4.0, N_UNITS).astype(np.float64) + i * 100
        trials.append((i, r))
    trials[7][1][2] = np.nan
    expected = np.full((N_IMAGES, 3, N_UNITS), np.nan, dtype=np.float32)
    seen = [0] * N_IMAGES
    for i, r in trials:
        expected[i, seen[i]] = r
        seen[i] += 1
    return images, trials, expected


def _write_nwb(path, images, trials, *, tiers=None, stimulus="images", stimulus_name="natural",
               template=False, order=True, shuffle_names=False, ragged=False, table="trials",
               tiers_per_trial=False):
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import ImageReferences, Images
    from pynwb.epoch import TimeIntervals
    from pynwb.image import GrayscaleImage, ImageSeries, RGBImage

    nwb = NWBFile(session_description="V1 natural images, unit test", identifier="sess-42",
                  session_start_time=datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc))
    if stimulus == "images":
        names = [f"img{i}" for i in range(len(images))]
        cls = RGBImage if images.ndim == 4 else GrayscaleImage
        objs = [cls(name=names[i], data=images[i]) for i in range(len(images))]
        listed = [objs[j] for j in np.random.default_rng(7).permutation(len(objs))] if shuffle_names else objs
        container = Images(name=stimulus_name, images=listed, description="stimuli",
                           order_of_images=(ImageReferences(name="order_of_images", data=objs)
                                            if order else None))
    else:
        container = ImageSeries(name=stimulus_name, data=images, unit="n.a.", rate=1.0)
    (nwb.add_stimulus_template if template else nwb.add_stimulus)(container)

    if table == "trials":
        add_col, add_row = nwb.add_trial_column, nwb.add_trial
    else:
        ti = TimeIntervals(name=table, description="presentations")
        add_col, add_row = ti.add_column, ti.add_row
    add_col("image_index", "index of the image shown")
    if ragged:
        add_col("responses", "spike counts of each unit", index=True)
    if tiers is not None:
        add_col("tier", "train or test")
    for t, (i, r) in enumerate(trials):
        row = dict(start_time=float(t), stop_time=t + 0.5, image_index=i)
        if ragged:
            row["responses"] = list(r)
        if tiers is not None:
            row["tier"] = tiers[t] if tiers_per_trial else tiers[i]
        add_row(**row)
    if not ragged:
        add_col("responses", "spike counts [trials, units]", data=np.stack([r for _, r in trials]))
    if table != "trials":
        nwb.add_time_intervals(ti)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


MAPPING = {"stimulus": "natural", "image_index_column": "image_index", "response_column": "responses"}


def test_nwb_with_tier_column(tmp_path):
    images, trials, expected = _experiment()
    tiers = np.array(["test" if i in (1, 4, 9) else "train" for i in range(N_IMAGES)])
    path = _write_nwb(tmp_path / "s.nwb", images, trials, tiers=tiers)
    mapping = {**MAPPING, "tier_column": "tier"}
    rec = recording_from_nwb(path, mapping=mapping, sha256=_sha(path), config_key=KEY)
    np.testing.assert_array_equal(rec.images, images)
    np.testing.assert_array_equal(rec.responses, expected)
    assert rec.responses.shape == (N_IMAGES, 3, N_UNITS) and rec.responses.dtype == np.float32
    assert np.isnan(rec.responses[5, 1:]).all() and not np.isnan(rec.responses[5, 0]).any()
    assert np.isnan(rec.responses[1, 2]).all()  # odd images: the third repeat is missing
    np.testing.assert_array_equal(rec.tiers, tiers)
    np.testing.assert_array_equal(rec.image_ids, np.arange(N_IMAGES))
    assert rec.image_ids.dtype == np.int64
    m = rec.meta
    assert m["source"] == "nwb" and m["path"] == str(path) and m["sha256"] == _sha(path)
    assert m["session_description"] == "V1 natural images, unit test" and m["identifier"] == "sess-42"
    assert m["mapping"] == {**mapping, "trials": "trials"}
    assert m["image_order"] == "order_of_images" and m["n_trials"] == len(trials)
    json.dumps(m)  # Recording.save writes meta as JSON
    rec.save(tmp_path / "rec.npz")
    np.testing.assert_array_equal(Recording.load(tmp_path / "rec.npz").responses, expected)


def test_nwb_without_tier_column_ragged_named_table_template_natural_order(tmp_path):
    images, trials, expected = _experiment(seed=3)
    path = _write_nwb(tmp_path / "s.nwb", images, trials, template=True, order=False,
                      shuffle_names=True, ragged=True, table="presentations")
    rec = recording_from_nwb(path, mapping={**MAPPING, "trials": "presentations"},
                             train_fraction=0.75, config_key=KEY)
    # no order_of_images: image i is the i-th name in natural order (img2 before img10)
    np.testing.assert_array_equal(rec.images, images)
    np.testing.assert_array_equal(rec.responses, expected)
    np.testing.assert_array_equal(rec.tiers, ["train"] * 9 + ["test"] * 3)
    np.testing.assert_array_equal(rec.image_ids, np.arange(N_IMAGES))
    assert rec.meta["image_names"] == [f"img{i}" for i in range(N_IMAGES)]
    assert "natural sort" in rec.meta["image_order"]


def test_nwb_default_train_fraction_and_unshown_images_dropped(tmp_path):
    images, trials, expected = _experiment(seed=4)
    trials = [(i, r) for i, r in trials if i != 3]
    path = _write_nwb(tmp_path / "s.nwb", images, trials)
    rec = recording_from_nwb(path, mapping=MAPPING, config_key=KEY)
    keep = np.array([i for i in range(N_IMAGES) if i != 3])
    np.testing.assert_array_equal(rec.image_ids, keep)
    np.testing.assert_array_equal(rec.images, images[keep])
    np.testing.assert_array_equal(rec.responses, expected[keep])
    np.testing.assert_array_equal(rec.tiers, ["train"] * 8 + ["test"] * 3)  # int(11 * 0.8) = 8
    assert rec.meta["images_without_trials"] == [3]


def test_nwb_rgb_float_images_become_luma(tmp_path):
    from neurobias.data.cifar import luma
    rng = np.random.default_rng(5)
    images_rgb = rng.random((N_IMAGES, H, W, 3))                          # float in [0, 1]
    _, trials, expected = _experiment()
    as_uint8 = np.rint(images_rgb * 255).astype(np.uint8)
    want = luma(as_uint8.transpose(0, 3, 1, 2))[:, 0]                     # [N, H, W]
    for kind in ("images", "series"):
        path = _write_nwb(tmp_path / f"{kind}.nwb", images_rgb, trials, stimulus=kind)
        rec = recording_from_nwb(path, mapping=MAPPING, config_key=KEY)
        assert rec.images.dtype == np.uint8 and rec.images.shape == (N_IMAGES, H, W)
        np.testing.assert_array_equal(rec.images, want)
        np.testing.assert_array_equal(rec.responses, expected)


def test_nwb_float_images_outside_unit_range_are_refused(tmp_path):
    images, trials, _ = _experiment()
    path = _write_nwb(tmp_path / "s.nwb", images.astype(np.float32), trials, stimulus="series")
    with pytest.raises(RecordingFormatError, match=r"float images must lie in \[0, 1\]"):
        recording_from_nwb(path, mapping=MAPPING, config_key=KEY)


def test_nwb_wrong_column_names_the_mapping_key_and_the_columns(tmp_path):
    images, trials, _ = _experiment()
    path = _write_nwb(tmp_path / "s.nwb", images, trials)
    with pytest.raises(RecordingFormatError) as e:
        recording_from_nwb(path, mapping={**MAPPING, "response_column": "spikes"}, config_key=KEY)
    msg = str(e.value)
    assert f"`{KEY}.mapping.response_column`" in msg and "'spikes'" in msg and str(path) in msg
    assert "'responses'" in msg and "'image_index'" in msg  # the columns that do exist


@pytest.mark.parametrize("key,value,exists", [
    ("stimulus", "gratings", "'natural'"),
    ("trials", "blocks", "'trials'"),
    ("image_index_column", "stim_id", "'image_index'"),
    ("tier_column", "split", "'responses'"),
])
def test_nwb_every_mapping_key_is_checked(tmp_path, key, value, exists):
    images, trials, _ = _experiment()
    path = _write_nwb(tmp_path / "s.nwb", images, trials)
    with pytest.raises(RecordingFormatError) as e:
        recording_from_nwb(path, mapping={**MAPPING, key: value}, config_key=KEY)
    msg = str(e.value)
    assert f"`{KEY}.mapping.{key}`" in msg and repr(value) in msg and exists in msg and str(path) in msg


def test_nwb_mapping_itself_is_checked(tmp_path):
    path = tmp_path / "never-read.nwb"
    incomplete = {k: v for k, v in MAPPING.items() if k != "image_index_column"}
    with pytest.raises(RecordingFormatError, match=re.escape(f"`{KEY}.mapping.image_index_column`")):
        recording_from_nwb(path, mapping=incomplete, config_key=KEY)
    with pytest.raises(RecordingFormatError, match=re.escape(f"`{KEY}.mapping.stimuli`")):
        recording_from_nwb(path, mapping={**MAPPING, "stimuli": "x"}, config_key=KEY)
    with pytest.raises(RecordingFormatError, match=re.escape(f"`{KEY}.train_fraction`")):
        recording_from_nwb(path, mapping=MAPPING, train_fraction=1.0, config_key=KEY)


def test_nwb_inconsistent_tiers_and_bad_indices(tmp_path):
    images, trials, _ = _experiment()
    path = _write_nwb(tmp_path / "s.nwb", images, trials, tiers=np.array(["train"] * 9 + ["val"] * 3))
    with pytest.raises(RecordingFormatError, match=r"mapping\.tier_column.*'val'"):
        recording_from_nwb(path, mapping={**MAPPING, "tier_column": "tier"}, config_key=KEY)
    first0 = next(t for t, (i, _) in enumerate(trials) if i == 0)  # one trial of image 0 says test
    split = [("test" if t == first0 else "train") for t in range(len(trials))]
    path = _write_nwb(tmp_path / "d.nwb", images, trials, tiers=split, tiers_per_trial=True)
    with pytest.raises(RecordingFormatError, match=r"mapping\.tier_column.*trials of image 0 disagree"):
        recording_from_nwb(path, mapping={**MAPPING, "tier_column": "tier"}, config_key=KEY)
    bad = [(i if t else N_IMAGES, r) for t, (i, r) in enumerate(trials)]
    path = _write_nwb(tmp_path / "b.nwb", images, bad)
    with pytest.raises(RecordingFormatError, match=r"mapping\.image_index_column.*outside 0\.\.11"):
        recording_from_nwb(path, mapping=MAPPING, config_key=KEY)


def test_nwb_wrong_sha256_is_refused_before_parsing(tmp_path, monkeypatch):
    import h5py
    import pynwb
    images, trials, _ = _experiment()
    path = _write_nwb(tmp_path / "s.nwb", images, trials)

    def no_parsing(*args, **kwargs):
        raise AssertionError("an unverified NWB file was opened for parsing")

    monkeypatch.setattr(h5py, "File", no_parsing)
    monkeypatch.setattr(pynwb, "NWBHDF5IO", no_parsing)
    wrong = "f" * 64
    with pytest.raises(RecordingChecksumError) as e:
        recording_from_nwb(path, mapping=MAPPING, sha256=wrong, config_key=KEY)
    msg = str(e.value)
    assert f"`{KEY}.sha256`" in msg and str(path) in msg and wrong in msg and _sha(path) in msg


def test_nwb_missing_file_and_non_nwb_file(tmp_path):
    with pytest.raises(RecordingFileNotFoundError, match=re.escape(f"`{KEY}.path`")):
        recording_from_nwb(tmp_path / "absent.nwb", mapping=MAPPING, config_key=KEY)
    junk = tmp_path / "junk.nwb"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(RecordingFormatError, match=re.escape(str(junk))):
        recording_from_nwb(junk, mapping=MAPPING, config_key=KEY)


# == module hygiene and config schema ===========================================================

def test_modules_import_without_pynwb_or_torch():
    code = ("import sys, neurobias.neural.recording_file, neurobias.neural.nwb\n"
            "heavy = [m for m in ('pynwb', 'hdmf', 'h5py', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def _validator(fragment):
    import jsonschema
    import yaml
    # the fragment itself is a valid draft 2020-12 schema ...
    jsonschema.Draft202012Validator.check_schema({**fragment, "$defs": {"v1_model": {}}})
    # ... and "#/$defs/v1_model" resolves to the configuration schema's definition
    root = load_schema()
    return jsonschema.Draft202012Validator({**fragment, "$defs": root["$defs"]})


def _doc_examples() -> dict:
    """The YAML examples of docs/data.md's "Your own recording" section, by source."""
    import yaml
    text = (ROOT / "docs/data.md").read_text()
    section = text.split("## Your own recording", 1)[1].split("\n## ", 1)[0]
    out = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        for entry in yaml.safe_load(block)["recordings"].values():
            out[entry["source"]] = entry
    return out


def test_config_schemas_accept_the_documented_examples_and_refuse_mistakes():
    file_v, nwb_v = _validator(FILE_SCHEMA), _validator(NWB_SCHEMA)
    examples = _doc_examples()
    assert set(examples) == {"file", "nwb"}
    assert not list(file_v.iter_errors(examples["file"]))
    assert not list(nwb_v.iter_errors(examples["nwb"]))
    assert file_v.is_valid({"source": "file", "path": "a.npz", "sha256": None, "v1_model": {"seed": 1}})
    for bad in ({"source": "file"}, {"source": "file", "path": "a.npz", "sha256": "ABC"},
                {"source": "file", "path": "a.npz", "manual_path": "b"},
                {"source": "nwb", "path": "a.npz"}):
        assert not file_v.is_valid(bad), bad
    ok = {"source": "nwb", "path": "a.nwb", "mapping": dict(MAPPING)}
    assert nwb_v.is_valid(ok)
    assert nwb_v.is_valid({**ok, "train_fraction": 0.5, "sha256": "a" * 64,
                           "mapping": {**MAPPING, "trials": "t", "tier_column": "tier"}})
    for bad in ({**ok, "mapping": {k: v for k, v in MAPPING.items() if k != "response_column"}},
                {**ok, "mapping": {**MAPPING, "tiers": "x"}}, {**ok, "train_fraction": 1},
                {**ok, "train_fraction": 0}, {**ok, "extra": 1}, {k: v for k, v in ok.items() if k != "path"},
                {**ok, "v1_model": {"nope": 1}}):
        assert not nwb_v.is_valid(bad), bad


@pytest.mark.slow
def test_file_and_nwb_recordings_through_the_workflow(tmp_path):
    """A config's `source: file` and `source: nwb` recordings built by the make_recording rule
    through the snakemake CLI; the user's file is the job's input, so replacing it reruns the job."""
    from conftest import TINY, job_table, snakemake
    rec = _recording(n=24, repeats=3, neurons=5)
    npz = tmp_path / "mine.npz"
    rec.save(npz)
    images, trials, expected = _experiment()
    nwb = _write_nwb(tmp_path / "mine.nwb", images, trials)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["recordings"] = {"from_file": {"source": "file", "path": str(npz)},
                         "from_nwb": {"source": "nwb", "path": str(nwb), "mapping": MAPPING, "train_fraction": 0.75}}
    cfg["studies"]["tiny"]["recording"] = "from_file"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    work = tmp_path / "work"
    targets = ["results/neural/from_file/recording.npz", "results/neural/from_nwb/recording.npz"]
    r = snakemake(work, *targets, config=config)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    from_file = Recording.load(work / targets[0])
    np.testing.assert_array_equal(from_file.responses, rec.responses)
    np.testing.assert_array_equal(from_file.tiers, rec.tiers)
    from_nwb = Recording.load(work / targets[1])
    np.testing.assert_array_equal(from_nwb.responses, expected)
    assert (from_nwb.tiers == "train").sum() == int(N_IMAGES * 0.75)
    # a changed file of the user's reruns its recording (and what follows), nothing else
    _recording(n=24, repeats=3, neurons=5, seed=1).save(npz)
    r = snakemake(work, "-n", *targets, config=config, cores=False)  # -n first: --configfile takes several
    assert r.returncode == 0, r.stderr[-2000:]
    assert job_table(r.stdout + r.stderr).get("make_recording") == "1", r.stdout[-2000:]
    assert "results/neural/from_file/recording.npz" in r.stdout
    assert "output: results/neural/from_nwb" not in r.stdout
    # a wrong sha256 stops the job before anything is parsed, naming the key
    cfg["recordings"]["from_file"]["sha256"] = "0" * 64 if _sha(npz) != "0" * 64 else "1" * 64
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = snakemake(tmp_path / "work2", targets[0], config=config)
    assert r.returncode != 0
    log = (tmp_path / "work2/logs/make_recording/from_file.log").read_text()
    assert "recordings.from_file.sha256" in log, log[-2000:]
    assert not (tmp_path / "work2" / targets[0]).exists()
