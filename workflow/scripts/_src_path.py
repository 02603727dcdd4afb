"""Make ``neurobias`` importable from the repository's src/ when it is not installed (for example
inside a `--sdm conda` environment built from envs/, which holds the dependencies only)."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("neurobias") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
