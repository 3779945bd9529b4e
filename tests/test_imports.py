"""The import direction of DESIGN.md §2, checked where import-linter cannot check it.

`lint-imports` (.ci/run, contracts in pyproject.toml) sees every import statement, including those inside
functions. DESIGN.md allows `reports` and `dashboard` to import torch inside a function, and forbids it at module
level, so these tests import every module of those packages in a fresh interpreter and look at `sys.modules`:
torch must not have been loaded, and importing must print nothing. A positive control shows the probe sees a
module-level torch import. A last test keeps the contracts' package list equal to the installed packages, so a new
top-level package cannot slip past the contracts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]

#: Loading any of these is what "never import torch" is about (Lightning and torchvision load torch).
HEAVY = ("torch", "torchvision", "lightning")

#: Packages that read files and databases only (`study` joins once it exists).
READERS = tuple(name for name in ("reports", "dashboard", "study") if (ROOT / name / "__init__.py").exists())

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: The installed top-level packages (pyproject's setuptools `include` patterns).
PACKAGES = sorted(pattern.rstrip("*") for pattern in CONFIG["tool"]["setuptools"]["packages"]["find"]["include"])

_PROBE = """
import contextlib, importlib, io, json, pkgutil, sys
names, heavy, walk = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3] == "walk"
printed, failed, first_heavy = io.StringIO(), {}, {}
with contextlib.redirect_stdout(printed):
    for name in names:
        module = importlib.import_module(name)
        found = [name]
        if walk:  # walk_packages imports the subpackages it walks
            found += [m.name for m in pkgutil.walk_packages(getattr(module, "__path__", []), name + ".")]
        for sub in found:
            try:
                importlib.import_module(sub)
            except Exception as exc:
                failed[sub] = repr(exc)
            for h in heavy:
                if h in sys.modules and h not in first_heavy:
                    first_heavy[h] = sub
print(json.dumps({"printed": printed.getvalue(), "failed": failed, "heavy": first_heavy}))
"""


def _probe(names: tuple[str, ...], submodules: bool = True) -> dict:
    """Import `names` (and their submodules) in a fresh interpreter: what was printed, what failed, and for each
    heavy module that got loaded, the module whose import loaded it first."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(names), ",".join(HEAVY), "walk" if submodules else "top"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_readers_import_without_torch_and_print_nothing() -> None:
    result = _probe(READERS)
    assert result["failed"] == {}
    assert result["heavy"] == {}, f"module-level imports load {result['heavy']} (module: first importer)"
    assert result["printed"] == ""


def test_probe_sees_a_module_level_torch_import() -> None:
    # Positive control: unimage.model.cache imports torch at module level.
    result = _probe(("unimage.model.cache",))
    assert result["heavy"].get("torch") == "unimage.model.cache"


def test_contracts_cover_every_installed_package() -> None:
    installed = set(PACKAGES)
    linter = CONFIG["tool"]["importlinter"]
    assert set(linter["root_packages"]) == installed
    (top,) = (c for c in linter["contracts"] if c["id"] == "top-level")
    layered = {name.strip("() ") for layer in top["layers"] for name in layer.replace("|", ":").split(":")}
    assert layered == installed
    readers = {c["id"]: c for c in linter["contracts"]}["readers-no-torch"]
    assert set(READERS) <= set(readers["source_modules"])
    assert set(HEAVY) <= set(readers["forbidden_modules"])


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_top_level_package_prints_nothing_and_loads_no_torch(package: str) -> None:
    # DESIGN.md §2: importing any package has no side effects, and `import unimage` stays light (the CLI needs it).
    result = _probe((package,), submodules=False)
    assert result == {"printed": "", "failed": {}, "heavy": {}}
