"""The li2019 pieces through the workflow: the preset's dry run, the Cadena download -> recording
path through a local HTTP server, the VGG arm (random VGG-19: the ImageNet weights cannot be
fetched here), Foolbox adversarial robustness, and the CIFAR preparer behind the make_dataset job.
"""

import hashlib
import io
import json
import pickle
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, job_table, snakemake, training_jobs
from neurobias.data import load_split
from neurobias.neural.recording import Recording
from test_cifar import cifar100  # noqa: F401  (fixture: a CIFAR-100 archive in the upstream layout)

PRESET = ROOT / "studies" / "li2019.yaml"


def test_preset_dry_run_lists_the_whole_grid_without_data(tmp_path):
    r = snakemake(tmp_path, "-n", config=PRESET, cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = job_table(out)
    # 5 arms x 5 seeds + 3 arms x 5 seeds, an arm's 5 seeds to a job (pack: 5)
    assert "train" not in counts and training_jobs(counts) == 8
    assert counts["evaluate_gaussian_noise"] == "8"  # one per arm, all its seeds
    assert counts["evaluate_adversarial"] == "25"   # section 4.2 on the CIFAR-10 models
    assert counts["download"] == "3"                # CIFAR-10, CIFAR-100, Cadena zip
    assert counts["download_vgg19_weights"] == "1"
    assert not (tmp_path / "results").exists()


def cadena_zip(path: Path, n=80, neurons=6, repeats=4) -> bytes:
    """A zip in the GIN layout holding a pickle with the Cadena et al. 2019 keys and shapes."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, 140, 140)).astype(np.float64)
    drive = images[:, 40:100:10, 40:100:10].reshape(n, -1)[:, :neurons] / 64.0
    responses = rng.poisson(np.broadcast_to(drive, (repeats, n, neurons))).astype(np.float64)
    responses[rng.random(responses.shape) < 0.05] = np.nan
    data = {"images": images, "responses": responses, "repetitions": np.full(neurons, repeats),
            "subject_id": np.arange(neurons) % 2, "image_ids": (5000 + np.arange(n)).reshape(n, 1),
            "image_types": np.array(["original", "conv1", "conv2", "conv3", "conv4"] * (n // 5)).reshape(n, 1),
            "image_numbers": np.arange(n).reshape(n, 1)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Cadena_PlosCB19_data/data_binned_responses/cadena_ploscb_data.pkl", pickle.dumps(data))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture(scope="module")
def file_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    blob = cadena_zip(root / "cadena.zip")
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/cadena.zip", hashlib.sha256(blob).hexdigest()
    srv.shutdown()
    srv.server_close()


def li_config(url, sha256):
    cfg = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    cfg["recordings"] = {"cadena": {"source": "cadena2019", "url": url, "sha256": sha256,
                                    "v1_model": {"seed": 0, "max_epochs": 2, "batch_size": 16, "patience": 2,
                                                 "core_channels": 4, "core_layers": 2}}}
    study = cfg["studies"].pop("tiny")
    study["recording"] = "cadena"
    study.pop("control_arms", None)
    study["similarity"] = {"vgg_weights": "random"}
    study["arms"] = {"none": {"regulariser": "none"},
                     "vgg": {"regulariser": "similarity", "target": "vgg", "alpha": 1, "layers": ["layer1"],
                             "stimulus_batch_size": 8}}
    study["evaluations"] = {"gaussian_noise": {"levels": [0.0, 0.2]},
                            "adversarial": {"n_images": 12, "steps": 10, "seed": 0}}
    cfg["studies"] = {"li": study}
    return cfg


@pytest.fixture(scope="module")
def li_run(tmp_path_factory, file_server):
    d = tmp_path_factory.mktemp("li_run")
    path = d / "li.yaml"
    path.write_text(yaml.safe_dump(li_config(*file_server)))
    r = snakemake(d, config=path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


@pytest.mark.slow
def test_cadena_download_becomes_a_recording(li_run, file_server):
    prov = json.loads((li_run / "results/downloads/provenance_cadena_ploscb19_data.zip.json").read_text())
    assert prov["config"]["url"] == file_server[0] and prov["config"]["sha256"] == file_server[1]
    rec = Recording.load(li_run / "results/neural/cadena/recording.npz")
    assert rec.images.shape == (80, 140, 140) and rec.responses.shape == (80, 4, 6)
    assert (rec.tiers[:64] == "train").all() and (rec.tiers[64:] == "test").all()  # first 80 % train
    assert "CC BY-NC-ND" in json.dumps(rec.meta)


@pytest.mark.slow
def test_vgg_arm_trains_toward_the_vgg_matrix(li_run):
    s = np.load(li_run / "results/similarity/li/vgg.npy")
    assert s.shape == (80, 80)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-5)
    assert not np.allclose(s, np.load(li_run / "results/similarity/li/model.npy"))
    h = pd.read_csv(li_run / "results/train/li/vgg/seed0/history.csv")
    assert (h["train_similarity_loss"] > 0).all()


@pytest.mark.slow
def test_adversarial_tables_and_figure(li_run):
    for arm in ("none", "vgg"):
        for seed in (0, 1):
            tidy = pd.read_csv(li_run / f"results/eval/li/adversarial/{arm}/seed{seed}.csv")
            per_image = pd.read_csv(li_run / f"results/eval/li/adversarial/{arm}/seed{seed}_per_image.csv")
            assert len(per_image) == 12 * 2 and set(per_image["norm"]) == {"l2", "linf"}
            for norm in ("l2", "linf"):
                sizes = per_image.loc[per_image["norm"] == norm, "size"]
                got = tidy.loc[tidy["metric"] == f"median_{norm}", "value"].item()
                assert got == pytest.approx(float(np.median(sizes)))
            assert (per_image.loc[~per_image["clean_correct"], "size"] == 0).all()
    tests = pd.read_csv(li_run / "results/stats/li/adversarial_tests.csv")
    assert set(tests["metric"]) >= {"median_l2", "median_linf"} and set(tests["arm"]) == {"vgg"}
    assert (li_run / "figures/li/adversarial.pdf").read_bytes()[:4] == b"%PDF"


def test_wrong_pinned_checksum_refuses_the_download(tmp_path, file_server):
    cfg = li_config(file_server[0], "0" * 64)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path / "work", "results/neural/cadena/recording.npz", config=path)
    out = r.stdout + r.stderr + "".join(p.read_text() for p in (tmp_path / "work" / "logs").rglob("*.log"))
    assert r.returncode != 0
    assert "0" * 64 in out and file_server[1] in out and file_server[0] in out
    assert not (tmp_path / "work/results/downloads/cadena_ploscb19_data.zip").exists()
    assert not (tmp_path / "work/results/neural/cadena/recording.npz").exists()


def test_cadena_without_a_pinned_checksum_is_refused_with_instructions(tmp_path, file_server):
    cfg = li_config(file_server[0], None)
    path = tmp_path / "unpinned.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path / "work", "results/neural/cadena/recording.npz", config=path)
    log = (tmp_path / "work/logs/download/cadena_ploscb19_data.zip.log").read_text()
    assert r.returncode != 0 and "recordings.cadena.sha256 is not set" in log and "sha256sum" in log


def test_cifar100_through_the_make_dataset_job(tmp_path, cifar100, monkeypatch):  # noqa: F811
    from neurobias import jobs
    from neurobias.sources import SOURCES
    archive, coarse_of_fine, fine_names, coarse_names = cifar100
    monkeypatch.setitem(SOURCES["cifar100"], "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    jobs.make_dataset(train=tmp_path / "train.pt", val=tmp_path / "val.pt", test=tmp_path / "test.pt", name="c100",
                      dataset_cfg={"source": "cifar100", "grey": True, "n_val": 50, "seed": 0}, archive=archive)
    images, labels, classes = load_split(tmp_path / "train.pt")
    assert images.shape == (150, 1, 32, 32) and classes == fine_names
    import torch
    payload = torch.load(tmp_path / "test.pt", weights_only=True)
    assert payload["superclass_of_class"] == [int(c) for c in coarse_of_fine]
    assert payload["superclasses"] == coarse_names
