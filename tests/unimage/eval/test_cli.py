"""``python -m unimage.eval``: rows merged into a CSV with constant columns; bad arguments are parser errors."""

from __future__ import annotations

import csv

import pytest

from unimage.eval.cli import main


def test_cli_writes_the_long_csv(tiny_ckpt, synth, tmp_path, capsys):
    out = tmp_path / "long.csv"
    args = [str(tiny_ckpt), str(synth), "--csv", str(out), "--col", "arm=full", "--col", "seed=2"]
    assert main([*args, "--max-stories", "1", "--structure-stories", "0"]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(r["arm"] == "full" and r["seed"] == "2" and r["family"] == "diag" for r in rows)
    assert {r["story"] for r in rows} == {"01"}
    assert "rows merged" in capsys.readouterr().out


def test_cli_rejects_a_bad_column(tiny_ckpt, synth):
    with pytest.raises(SystemExit):
        main([str(tiny_ckpt), str(synth), "--col", "arm"])
