"""Packaging: what ``pip install .`` (not editable) gets is enough to validate a config and train.

* every third-party library that a module of ``src/neurobias`` imports (at the top or inside a
  function) is declared in pyproject's ``[project].dependencies``; the reference ImageNet-C module,
  which only the tests and the benchmark use, may rely on the ``reference`` extra instead;
* requirements.txt pins and ``envs/*.yaml`` list the same runtime libraries;
* ``import neurobias.train`` does not import foolbox or eagerpy (only the adversarial evaluations
  need them);
* a wheel built from the tree ships the config schema and the frost textures, and the installed
  wheel -- not the editable install of the development venv -- validates ``tests/configs/tiny.yaml``
  and trains one tiny model for one epoch.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "neurobias"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"

#: Modules allowed to import libraries of an optional extra instead of the runtime dependencies
#: (path relative to src/neurobias -> extra). Only tests and benchmarks import these modules.
EXTRA_ONLY_MODULES = {"robustness/reference_corruptions.py": "reference"}
#: Libraries that neurobias.train must not import (the adversarial evaluations' own).
NOT_IN_TRAIN = ("foolbox", "eagerpy")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``PyYAML`` -> ``pyyaml``, ``scikit_learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> tuple[str, list[str]]:
    """(canonical name, extras) of a PEP 508 requirement string or a conda/pip spec line."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
    assert m, f"cannot parse requirement {requirement!r}"
    extras = [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]
    return canonical(m.group(1)), extras


# -- which libraries the package imports ----------------------------------------------------------
def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    t = handler.type
    if t is None:
        return True
    elts = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(e, ast.Name) and e.id in names for e in elts)


class _Imports(ast.NodeVisitor):
    """Absolute imports anywhere in a module (top level, functions, ``with`` blocks), except those
    in the body of a ``try`` that handles ImportError (optional imports with a fallback)."""

    def __init__(self):
        self.found: list[tuple[str, int]] = []
        self._optional = 0

    def visit_Try(self, node):
        optional = any(_catches_import_error(h) for h in node.handlers)
        self._optional += optional
        for stmt in node.body:
            self.visit(stmt)
        self._optional -= optional
        for part in (node.handlers, node.orelse, node.finalbody):
            for stmt in part:
                self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_Import(self, node):
        if not self._optional:
            self.found += [(a.name.split(".")[0], node.lineno) for a in node.names]

    def visit_ImportFrom(self, node):
        if not self._optional and node.level == 0 and node.module:
            self.found.append((node.module.split(".")[0], node.lineno))


def third_party_imports(package_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """{top-level import name: [(module path relative to package_dir, "line N"), ...]} of the
    libraries outside the standard library and the package itself."""
    own = package_dir.name
    out: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        for name, line in visitor.found:
            if name in sys.stdlib_module_names or name in (own, "__future__"):
                continue
            out.setdefault(name, []).append((path.relative_to(package_dir).as_posix(), f"line {line}"))
    return out


def declared(pyproject: Path) -> tuple[set[str], dict[str, set[str]]]:
    """(runtime dependencies, {extra: its dependencies}) of a pyproject.toml, canonical names;
    an extra that names the project itself (``neurobias[reference]``) includes that extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    runtime = {requirement_name(r)[0] for r in project.get("dependencies", [])}
    raw = project.get("optional-dependencies", {})

    def expand(extra, seen=()):
        names = set()
        for r in raw[extra]:
            name, extras = requirement_name(r)
            if name == canonical(project["name"]):
                for e in extras:
                    if e not in seen:
                        names |= expand(e, seen + (extra,))
            else:
                names.add(name)
        return names

    return runtime, {extra: expand(extra) for extra in raw}


def undeclared_imports(package_dir: Path, pyproject: Path, extra_only: dict[str, str]) -> list[str]:
    """One line per imported library that pyproject does not declare where it has to."""
    runtime, extras = declared(pyproject)
    distributions = metadata.packages_distributions()
    problems = []
    for name, sites in sorted(third_party_imports(package_dir).items()):
        dists = {canonical(d) for d in distributions.get(name, [])}
        where = ", ".join(f"{m} {line}" for m, line in sites)
        if not dists:
            problems.append(f"import {name} ({where}): no installed distribution provides it")
            continue
        for module, line in sites:
            allowed = set(runtime)
            if module in extra_only:
                allowed |= extras.get(extra_only[module], set())
            if not dists & allowed:
                need = f"[project.optional-dependencies].{extra_only[module]} or " if module in extra_only else ""
                problems.append(f"import {name} ({module} {line}): distribution {sorted(dists)} is not "
                                f"declared in {need}[project].dependencies")
    return problems


def runtime_distributions() -> set[str]:
    """Canonical distribution names of the libraries the package imports outside the extra-only modules."""
    distributions = metadata.packages_distributions()
    return {canonical(d) for name, sites in third_party_imports(PACKAGE).items()
            if any(m not in EXTRA_ONLY_MODULES for m, _ in sites) for d in distributions.get(name, [])}


def test_every_imported_library_is_declared():
    problems = undeclared_imports(PACKAGE, REPO / "pyproject.toml", EXTRA_ONLY_MODULES)
    assert not problems, "\n".join(problems)


def test_extra_only_modules_are_imported_by_no_package_module():
    """The ``reference`` extra is optional only while the package itself never imports its module."""
    for module in EXTRA_ONLY_MODULES:
        dotted = "neurobias." + module.removesuffix(".py").replace("/", ".")
        leaf = dotted.rsplit(".", 1)[1]
        for path in PACKAGE.rglob("*.py"):
            if path.relative_to(PACKAGE).as_posix() == module:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                    names += [a.name for a in node.names if node.level]
                assert not any(n == dotted or n.endswith("." + leaf) or n == leaf for n in names), \
                    f"{path.relative_to(PACKAGE)} line {node.lineno} imports {dotted}"


def test_the_check_catches_undeclared_and_unknown_imports(tmp_path):
    pkg = tmp_path / "src" / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import numpy as np\nfrom . import sub\n")
    (pkg / "sub" / "__init__.py").write_text(textwrap.dedent("""\
        import os
        try:
            import pkg_resources            # optional, with a fallback: not a dependency
        except ImportError:
            pkg_resources = None

        def later():
            import yaml                      # function-level import of an undeclared library
            from neurobias_made_up_lib.x import y   # made up: provided by nothing installed
        """))
    (pkg / "reference.py").write_text("import yaml\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "fakepkg"\ndependencies = ["numpy>=1"]\n'
                         '[project.optional-dependencies]\nref = ["PyYAML"]\ntest = ["fakepkg[ref]"]\n')
    problems = undeclared_imports(pkg, pyproject, {"reference.py": "ref"})
    assert len(problems) == 2, problems
    assert problems[0].startswith("import neurobias_made_up_lib (sub/__init__.py line 9)")
    assert problems[1].startswith("import yaml (sub/__init__.py line 8): distribution ['pyyaml'] is not declared")
    assert declared(pyproject)[1]["test"] == {"pyyaml"}


def test_requirements_and_conda_env_list_the_runtime_libraries():
    runtime, extras = declared(REPO / "pyproject.toml")
    lines = [l.split("#")[0].strip() for l in (REPO / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l]
    assert lines[-1] == "-e .", "requirements.txt installs the pinned stack, then the package itself"
    pinned = {requirement_name(l)[0]: l for l in lines[:-1]}
    assert all("==" in l for l in pinned.values()), "requirements.txt pins every version"
    missing = (runtime | extras["test"]) - set(pinned)
    assert not missing, f"requirements.txt does not pin {sorted(missing)}"
    needed = runtime_distributions()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        listed = set()
        for dep in yaml.safe_load(env.read_text())["dependencies"]:
            for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
                listed.add(requirement_name(spec)[0])
        missing = needed - listed
        assert not missing, f"{env.relative_to(REPO)} does not list {sorted(missing)}"


# -- import neurobias.train without foolbox -------------------------------------------------------
WHO_IMPORTS = """
import sys, traceback
WATCH = {watch!r}
pulled = {{}}

class Recorder:
    # finds nothing: only notes who asked first, then lets the normal finders import it
    def find_spec(self, name, path=None, target=None):
        if name in WATCH and name not in pulled:
            pulled[name] = [f"{{f.filename}}:{{f.lineno}}" for f in traceback.extract_stack()
                            if "neurobias" in f.filename]
        return None

sys.meta_path.insert(0, Recorder())
import {module}
bad = {{n: c for n, c in pulled.items() if n in sys.modules}}
if bad:
    for name, chain in bad.items():
        print(f"{module} imported {{name}} via:\\n  " + "\\n  ".join(chain))
    sys.exit(1)
"""


@pytest.mark.parametrize("module", ["neurobias.train", "neurobias.config"])
def test_training_does_not_import_foolbox(module, tmp_path):
    code = WHO_IMPORTS.format(watch=NOT_IN_TRAIN, module=module)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_foolbox_check_names_the_importer(tmp_path):
    code = WHO_IMPORTS.format(watch=NOT_IN_TRAIN, module="neurobias.robustness.pgd")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "neurobias.robustness.pgd imported foolbox via" in r.stdout and "adversarial.py" in r.stdout


# -- the wheel, installed without the repository --------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built (offline, no build isolation) from a copy of the tree, so the build writes no
    build/ or egg-info into the working tree."""
    root = tmp_path_factory.mktemp("wheel")
    project = root / "project"
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, project / name)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", "-w", str(root / "dist"), str(project)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = (root / "dist").glob("neurobias-*.whl")
    print(f"wheel built in {time.perf_counter() - start:.1f} s")
    return path


def test_wheel_ships_modules_schema_and_frost_textures(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"neurobias/" + p.relative_to(PACKAGE).as_posix()
                for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "neurobias/schemas/config.schema.yaml" in expected
    assert len([p for p in expected if p.startswith("neurobias/robustness/frost/frost")]) == 6
    missing = expected - names
    assert not missing, f"not in {wheel.name}: {sorted(missing)}"


INSTALLED_RUN = '''
"""Runs with the installed wheel only: any other location of neurobias is taken off the path."""
import os, sys, time
SITE, REPO, CONFIG = (os.path.realpath(a) for a in sys.argv[1:4])

def inside(path, root):
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)

# the development venv's editable install: a .pth entry for <repo>/src, or (strict/compat modes)
# a finder and path hook that setuptools registers under an "__editable__" module name
sys.path[:] = [p for p in sys.path if inside(p or ".", SITE)
               or not os.path.exists(os.path.join(p or ".", "neurobias"))]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
assert inside(sys.path[0], SITE) or inside(sys.path[0], os.getcwd()) and inside(sys.path[1], SITE), sys.path[:3]

import yaml
import neurobias
import neurobias.config
assert inside(neurobias.__file__, SITE), neurobias.__file__
assert inside(neurobias.config.SCHEMA_PATH, SITE) and os.path.isfile(neurobias.config.SCHEMA_PATH)
with open(CONFIG) as f:
    config = neurobias.config.validate_config(yaml.safe_load(f))

from importlib.resources import files
frost = sorted(p.name for p in (files("neurobias.robustness") / "frost").iterdir())
assert [p for p in frost if p.startswith("frost")] == [f"frost{i}.{e}" for i, e in
                                                        zip(range(1, 7), ["png"] * 3 + ["jpg"] * 3)], frost

import numpy as np
import torch
from neurobias.config import arm_model
from neurobias.data import CLASS_NAMES, make_synthetic_task
from neurobias.data.synthetic import make_stimulus_images
from neurobias.neural.similarity import neural_similarity
from neurobias.neural.simulated_v1 import SimulatedV1, V1PopulationParams
from neurobias.train import TrainingConfig, train_arm

torch.set_num_threads(1)
start = time.perf_counter()
study = config["studies"]["tiny"]
s = make_synthetic_task(5, n_train=64, n_val=32, n_test=10)
split = lambda k: (torch.as_tensor(s[k][0]), torch.as_tensor(s[k][1]), list(CLASS_NAMES))
stimuli = make_stimulus_images(2, 40)
target = neural_similarity(SimulatedV1(V1PopulationParams(n_neurons=20), 1).mean_rates(stimuli))
tiers = np.array(["train"] * 30 + ["test"] * 10)
history = train_arm(train=split("train"), val=split("val"), stimuli=stimuli, stimulus_tiers=tiers,
                    target=target, diagnostic_target=target, arm=study["arms"]["neural_model"],
                    model_cfg=arm_model(study, "neural_model"),
                    training=TrainingConfig(**{**study["training"], "epochs": 1}), seed=0, device="cpu",
                    out_dir="run", progress=False)
assert list(history["epoch"]) == [1] and os.path.isfile("run/model.pt"), history
outside = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] == "neurobias"
                 and getattr(mod, "__file__", None) and not inside(mod.__file__, SITE))
assert not outside, f"imported from elsewhere than the installed wheel: {outside}"
print(f"installed: {neurobias.__file__}; trained 1 epoch in {time.perf_counter() - start:.1f} s")
'''


def run_installed(site: Path, workdir: Path) -> subprocess.CompletedProcess:
    script = workdir / "run_installed.py"
    script.write_text(INSTALLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, str(script), str(site), str(REPO), str(TINY_CONFIG)],
                          capture_output=True, text=True, cwd=workdir, env=env, timeout=600)


def test_installed_wheel_validates_a_config_and_trains(wheel, tmp_path):
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                        "--disable-pip-version-check", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "neurobias" / "schemas" / "config.schema.yaml").is_file()
    r = run_installed(site, work)
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)
