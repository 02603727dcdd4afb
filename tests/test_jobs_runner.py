"""``job_environment``: a rule's log, its thread count, and the fast exit of a finished job script."""

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from neurobias.jobs import job_environment

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import atexit, sys
sys.path.insert(0, {src!r})
from pathlib import Path
from neurobias.jobs import job_environment

# written only by a normal interpreter shutdown: its absence shows the job ended at once
atexit.register(lambda: Path(snakemake.output[0] + ".atexit").write_text("ran"))
with job_environment(snakemake.log[0], 1):
    print("into the log")
    if snakemake.wildcards.name == "bad":
        raise RuntimeError("this job fails")
    Path(snakemake.output[0]).write_text("done")
"""


def test_finished_job_exits_at_once_with_output_and_log_complete_and_a_failure_still_fails(tmp_path):
    (tmp_path / "job.py").write_text(SCRIPT.format(src=str(ROOT / "src")))
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""
        rule job:
            output: "out/{name}.txt"
            log: "logs/{name}.log"
            script: "job.py"
    """))

    def run(target):
        return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", target], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    ok = run("out/good.txt")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "out/good.txt").read_text() == "done"
    assert (tmp_path / "logs/good.log").read_text() == "into the log\n"
    assert not (tmp_path / "out/good.txt.atexit").exists()

    bad = run("out/bad.txt")
    assert bad.returncode != 0
    assert not (tmp_path / "out/bad.txt").exists()
    log = (tmp_path / "logs/bad.log").read_text()
    assert "into the log" in log and "RuntimeError: this job fails" in log
    assert (tmp_path / "out/bad.txt.atexit").exists()  # a failed job shuts down normally


def test_outside_a_snakemake_script_the_block_returns_and_sets_the_threads(tmp_path, monkeypatch):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # restored after the test
        monkeypatch.setenv(variable, "0")
    before = torch.get_num_threads()
    try:
        with job_environment(str(tmp_path / "x.log"), 1):
            print("logged")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "x.log").read_text() == "logged\n"


def test_a_job_that_imports_torch_late_still_gets_the_rule_threads():
    # statistics and figure jobs do not import torch; jobs that do import it inside the block
    code = ("import sys\nfrom neurobias.jobs import job_environment\n"
            "assert 'torch' not in sys.modules\n"
            "with job_environment(None, 1):\n    import torch\n    print(torch.get_num_threads())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1"
    default = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert default.stdout.strip() != "1" or __import__("os").cpu_count() == 1  # the check could fail
