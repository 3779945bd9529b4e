"""Checkpoint files are unpickled with ``weights_only=True`` unless the caller opts in (issue 14 item 2).

The payload is real: an object whose ``__reduce__`` makes unpickling call ``open(marker, "w")``, so a full unpickle
creates the marker file. The refusal must come before it runs, and name the file and the opt-in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from unimage.train.export import UnsafeCheckpointError, export_checkpoint, load_checkpoint_file

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("unimage", "bench", "ablations", "reports", "dashboard", "fsio", "tests")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"x": _Payload(marker)}}, path)
    return path, marker


def test_export_refuses_a_pickle_payload_before_it_runs(tmp_path: Path) -> None:
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match=r"last\.ckpt.*trust_pickle=True") as err:
        export_checkpoint(path, tmp_path / "export")
    assert "it asks for io.open" in str(err.value)  # says what the file tried to call
    assert not marker.exists()
    assert not (tmp_path / "export").exists()
    # The payload is live: the explicit opt-in runs it (what the refusal protects against).
    load_checkpoint_file(path, trust_pickle=True)
    assert marker.exists()


def test_plain_checkpoint_loads_without_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "epoch": 1, "hyper_parameters": {"size": "tiny"}}, path)
    loaded = load_checkpoint_file(path)
    assert loaded["hyper_parameters"] == {"size": "tiny"} and loaded["epoch"] == 1
    torch.testing.assert_close(loaded["state_dict"]["w"], torch.arange(3.0), rtol=0, atol=0)


def _torch_load_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                func = node.func if isinstance(node, ast.Call) else None
                if isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch":
                    calls.append((str(path.relative_to(REPO)), node.lineno, node))
    return calls


def test_every_torch_load_in_the_packages_is_weights_only() -> None:
    """``weights_only=True``, or a variable the caller sets explicitly (``not trust_pickle``); never ``False``."""
    calls = _torch_load_calls()
    assert calls, "no torch.load found: the scan is broken"
    bad = []
    for where, line, call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        value = kw.get("weights_only")
        ok = value is not None and (
            (isinstance(value, ast.Constant) and value.value is True) or "trust" in ast.unparse(value)
        )
        if not ok:
            bad.append(f"{where}:{line}: {ast.unparse(call)}")
    assert not bad, "torch.load without weights_only=True:\n" + "\n".join(bad)
