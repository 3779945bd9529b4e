"""``provenance.json``'s record of the pinned environment: the constraints file's hash and what differs from it."""

from __future__ import annotations

import hashlib
import importlib.metadata

from ablations.provenance import CONSTRAINTS, constraints_state


def test_constraints_state_hashes_the_file_and_lists_the_packages_that_differ(tmp_path):
    pyyaml = importlib.metadata.version("PyYAML")
    text = (
        "# a comment line\n"
        f"PyYAML=={pyyaml}\n"  # as installed (name spelled differently from its canonical form)
        "numpy==0.0.1  # not what is installed\n"
        "surely-not-installed-pkg==1.0\n"
    )
    path = tmp_path / "constraints.txt"
    path.write_text(text)
    state = constraints_state(path)
    assert state["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert state["pinned"] == 3
    assert state["differs"] == {
        "numpy": {"pinned": "0.0.1", "installed": importlib.metadata.version("numpy")},
        "surely-not-installed-pkg": {"pinned": "1.0", "installed": None},
    }


def test_missing_constraints_file_is_recorded_as_absent(tmp_path):
    assert constraints_state(tmp_path / "nope.txt") == {
        "file": str(tmp_path / "nope.txt"),
        "sha256": None,
        "pinned": 0,
        "differs": {},
    }


def test_the_repository_pins_its_packages_and_not_itself():
    lines = [line for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all("==" in line for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert {"torch", "lightning", "jsonargparse"} <= names and "unimage-harness" not in names
