"""A study's ``pack: auto`` and ``pack_engine`` in the workflow: the pack rules' params (engine and fit
mode) decide what a change of engine retrains. How the runs are grouped: tests/test_rule_params.py;
the settings' validation (which arms the stacked engine accepts before any job starts):
tests/test_config.py."""

import yaml

from conftest import TINY, job_table, snakemake


def tiny_config(**study) -> dict:
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["tiny"].update(study)
    return config


def test_pack_auto_is_one_job_per_group_and_the_engine_is_a_param_that_retrains(tmp_path):
    """The tiny config (8 runs of one network) with ``pack: auto``: one pack job. With the outputs
    up to training in place (empty files, marked done by ``--touch --forceall``, which records each
    job's params), a pack of 8 regroups nothing and reruns nothing; the stacked engine retrains the
    pack, and only it."""
    configs = {}
    for name, study in {"auto": {"pack": "auto"}, "eight": {"pack": 8},
                        "stacked": {"pack": "auto", "pack_engine": "stacked"}}.items():
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(tiny_config(**study), sort_keys=False))
    work = tmp_path / "work"
    models = [f"results/train/tiny/{arm}/seed{seed}/model.pt"
              for arm in ("none", "neural_model", "neural_data", "shuffle") for seed in (0, 1)]
    r = snakemake(work, "-n", *models, config=configs["auto"], cores=False)  # targets after --configfile's value
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert out.count("rule train_pack__tiny__0:") == 1 and "train_pack__tiny__1" not in out
    assert "rule train:" not in out
    for line in out.splitlines():  # every output of the jobs up to training, as empty files
        if line.strip().startswith("output:"):
            for path in line.split(":", 1)[1].split(","):
                (work / path.strip()).parent.mkdir(parents=True, exist_ok=True)
                (work / path.strip()).touch()
    r = snakemake(work, "--touch", "--forceall", *models, config=configs["auto"])  # records each job's params
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r = snakemake(work, "-n", *models, config=configs["eight"], cores=False)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    r = snakemake(work, "-n", *models, config=configs["stacked"], cores=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert job_table(out) == {"train_pack__tiny__0": "1", "total": "1"}
    assert "params have changed" in out.lower(), out[-3000:]
