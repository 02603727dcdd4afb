"""Plugins (neurobias.plugins): the example plugin package installed as a user would, run through
the snakemake CLI to its statistics table and figure; its entries rerun on config change and pack;
a plugin that is missing, broken or collides with a built-in stops the run before any job."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from neurobias import plugins, registry

from conftest import ROOT, job_table

EXAMPLE = ROOT / "examples" / "neurobias_example_plugin"
CONFIG = EXAMPLE / "config.yaml"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example plugin installed (a real pip install, with its entry point) into a folder that
    the snakemake runs put on PYTHONPATH."""
    import shutil
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name  # pip builds in place: not in the checkout
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return target


def run_snakemake(workdir, config, site, *args, timeout=900):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory, site):
    d = tmp_path_factory.mktemp("plugin_run")
    r = run_snakemake(d, CONFIG, site)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return d


@pytest.mark.slow
def test_plugin_entries_train_evaluate_and_reach_the_statistics_and_figure(plugin_run):
    d = plugin_run
    cfg = yaml.safe_load(CONFIG.read_text())["studies"]["plugin_demo"]
    # the plugin's architecture, trained with the plugin's regulariser and a built-in one
    blob = torch.load(d / "results/train/plugin_demo/similarity_mse/seed0/model.pt", weights_only=True)
    assert blob["model_cfg"]["architecture"] == "tiny_cnn"
    assert any(k.startswith("backbone.conv3") for k in blob["state_dict"])
    history = pd.read_csv(d / "results/train/plugin_demo/similarity_mse/seed0/history.csv")
    assert np.isfinite(history["similarity_mse"]).all() and (history["similarity_mse"] > 0).all()
    assert "similarity_mse" not in pd.read_csv(d / "results/train/plugin_demo/none/seed0/history.csv")
    # the plugin's evaluation: one table per arm, every seed and fraction
    fractions = cfg["evaluations"]["salt_pepper"]["fractions"]
    for arm in cfg["arms"]:
        table = pd.read_csv(d / f"results/eval/plugin_demo/salt_pepper/{arm}.csv")
        assert sorted(table["seed"].unique()) == cfg["seeds"]
        assert sorted(table["level"].unique()) == fractions and table["value"].between(0, 1).all()
        clean = table[table["level"] == 0]["value"].mean()
        noisy = table[table["level"] == max(fractions)]["value"].mean()
        assert noisy < clean, (arm, clean, noisy)  # the noise is real: accuracy falls
    # ... tested against the baseline as the built-in evaluations are
    tests = pd.read_csv(d / "results/stats/plugin_demo/salt_pepper_tests.csv")
    assert set(tests["arm"]) == {"similarity_mse", "li_similarity"} and set(tests["baseline"]) == {"none"}
    assert set(tests["level"]) == set(fractions) and tests["p"].dropna().between(0, 1).all()
    assert (tests["alternative"] == "greater").all()  # accuracy: higher is better, as the plugin declares
    # ... and drawn
    png = (d / "figures/plugin_demo/salt_pepper.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (d / "figures/plugin_demo/salt_pepper.pdf").read_bytes()[:5] == b"%PDF-"
    # the built-in evaluation beside it, tested against the same baseline
    noise = pd.read_csv(d / "results/stats/plugin_demo/gaussian_noise_tests.csv")
    assert set(noise["arm"]) == {"similarity_mse", "li_similarity"} and set(noise["baseline"]) == {"none"}
    assert (d / "figures/plugin_demo/noise_robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # pack: auto packs the plugin's runs of the one network into one job
    log = list((d / "logs/train/plugin_demo").glob("pack*.log"))
    assert len(log) == 1


@pytest.mark.slow
def test_a_plugin_setting_reruns_exactly_what_it_affects(plugin_run, site, tmp_path):
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["studies"]["plugin_demo"]["evaluations"]["salt_pepper"]["fractions"] = [0.0, 0.2]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_snakemake(plugin_run, changed, site, "-n")
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_table(r.stdout + r.stderr)
    counts.pop("total")
    assert counts == {"evaluate": "3", "stats__evaluation": "1", "figure_evaluation": "1", "all": "1"}, counts
    cfg["studies"]["plugin_demo"]["arms"]["similarity_mse"]["mse_weight"] = 3.0
    changed.write_text(yaml.safe_dump(cfg, sort_keys=False))
    counts = job_table(run_snakemake(plugin_run, changed, site, "-n").stdout)
    assert any(rule.startswith("train_pack__plugin_demo") for rule in counts), counts  # retrains


@pytest.mark.slow
@pytest.mark.parametrize("plugins_value, message", [
    (["no_such_lab.ext"], r"plugins\[0\].*'no_such_lab.ext'.*failed to import: ModuleNotFoundError"),
    (["neurobias_example_plugin", "clash"], r"plugins\[1\].*plugin 'clash'.*'similarity' is already declared"),
])
def test_a_bad_plugin_stops_before_any_job(tmp_path, site, plugins_value, message):
    (tmp_path / "clash.py").write_text("from neurobias.registry import RegulariserSpec, declare\n"
                                       "declare(RegulariserSpec, name='similarity', builder='clash:build')\n")
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["plugins"] = plugins_value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = run_snakemake(tmp_path / "work", path, f"{site}{os.pathsep}{tmp_path}")
    assert r.returncode != 0
    import re
    assert re.search(message, r.stdout + r.stderr), (r.stdout + r.stderr)[-3000:]
    assert not (tmp_path / "work" / "results").exists()  # nothing ran


def test_without_the_plugin_its_names_are_unknown():
    """A config using a plugin's kinds without naming the plugin: the unknown name, before any job."""
    from neurobias.config import ConfigError, validate_config
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["plugins"] = []
    with pytest.raises(ConfigError, match=r"studies\.plugin_demo\.model\.architecture.*'tiny_cnn'"):
        validate_config(cfg)


def test_load_plugins_marks_entries_and_forgets_a_failed_plugin(tmp_path, monkeypatch):
    (tmp_path / "half_plugin.py").write_text(
        "from neurobias.registry import TargetSpec, declare\n"
        "declare(TargetSpec, name='half_target', builder='half_plugin:build')\n"
        "raise RuntimeError('broken after one declaration')\n")
    # (not monkeypatch.syspath_prepend: it needs setuptools' pkg_resources, which the reference
    # corruptions' tests replace with a stand-in)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    with pytest.raises(plugins.PluginError, match=r"plugins\[0\].*RuntimeError: broken after one declaration"):
        plugins.load_plugins(["half_plugin"])
    assert "half_target" not in registry.targets()  # nothing of it stays declared
    (tmp_path / "whole_plugin.py").write_text(
        "from neurobias.registry import TargetSpec, declare\n"
        "declare(TargetSpec, name='whole_target', builder='whole_plugin:build', product='responses')\n")
    try:
        assert plugins.load_plugins(["whole_plugin"]) == ["whole_plugin"]
        assert registry.targets()["whole_target"].plugin == "whole_plugin"
        assert plugins.load_plugins(["whole_plugin"]) == ["whole_plugin"]  # once per process
    finally:
        for r in registry.ALL_REGISTRIES:
            r.remove_plugin("whole_plugin")
        plugins._loaded.pop("whole_plugin", None)


@pytest.mark.slow
def test_report_has_the_plugin_evaluation_and_a_rerun_has_nothing_to_do(plugin_run, site, tmp_path):
    import zipfile
    out = tmp_path / "report.zip"
    r = run_snakemake(plugin_run, CONFIG, site, "--report", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith("report.html"))).decode()
    assert {"salt_pepper.png", "salt_pepper_tests.csv", "noise_robustness.png"} <= {n.rsplit("/", 1)[-1] for n in names}
    assert "Evaluation" in html and "salt_pepper" in html
    r = run_snakemake(plugin_run, CONFIG, site, "-n")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
