"""Tests for neurobias.layer_names."""

import subprocess
import sys


def test_layer_names_does_not_import_torch():
    code = "import sys, neurobias.layer_names; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
