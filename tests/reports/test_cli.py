"""``unimage report table1``: prints the table, writes md/csv/tex, figures and the summary into -o."""

from __future__ import annotations

import csv

from formats.published import UNIMAGE_TABLE1
from unimage.cli import main


def test_report_table1_writes_everything(evaluated_sweep, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "table1", str(evaluated_sweep), "-o", str(out), "--n-boot", "100"]) == 0
    printed = capsys.readouterr().out
    # the published rows exactly as in the paper
    assert "| UniMAGE | 59.0 | **59.2** | **80.8** | **88.07** | 12.97 | 4.55 | – | – |" in printed
    assert "| pair/gt (ours) † |" in printed and "Δ vs published StoryDiffusion" in printed
    # measured rows in the sweep file's arm order (gt, faded), not the folders' alphabetical order
    assert printed.index("| pair/gt (ours)") < printed.index("| pair/faded (ours)")
    # an arm without published_as gets no delta row, even when its method matches a published name
    assert printed.count("Δ vs published") == 1
    for name in ("table1.md", "table1.csv", "table1.tex", "summary.md"):
        assert (out / name).stat().st_size > 200
    for fig in ("metric_bars", "cids_per_character"):
        for ext in ("png", "pdf", "csv"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 100
    summary = (out / "summary.md").read_text()
    assert "![metric_bars](figures/metric_bars.png)" in summary
    assert "provenance.json" in summary and "config.yaml" in summary
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert [r["method"] for r in rows[: len(UNIMAGE_TABLE1)]] == [p.method for p in UNIMAGE_TABLE1]


def test_report_table1_default_out_and_errors(evaluated_sweep, tmp_path, capsys):
    assert main(["report", "table1", str(tmp_path / "nothing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "table1", str(empty)]) == 2
    assert "no results_row.json found" in capsys.readouterr().err
