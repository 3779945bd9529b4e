"""Figures: files written and non-trivial, plotted values equal to the results table, intervals that bracket them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.backbones import load_backbones
from bench.evaluate import EvalConfig, evaluate
from reports.figures import cids_distributions, metric_bars, save_figure, training_curves
from reports.perstory import column_stat
from reports.rows import collect_rows
from tests.bench.conftest import build_dataset, build_outputs


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_bar_heights_are_the_results_table(evaluated_sweep, tmp_path):
    measured = collect_rows([evaluated_sweep])
    assert [m.label for m in measured] == ["pair/faded", "pair/gt"]
    fig, data = metric_bars(measured, n_boot=200)
    paths = save_figure(fig, tmp_path, "bars", data)
    assert paths["png"].stat().st_size > 20_000 and paths["pdf"].stat().st_size > 5_000
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["pdf"].read_bytes()[:5] == b"%PDF-"
    # heights read back from the matplotlib artists == results_row.json values, for every column and arm
    heights = {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches if p.get_gid() and "|" in p.get_gid()}
    rows = {m.label: json.loads((m.path / "results_row.json").read_text()) for m in measured}
    columns = ["csd_self", "cids_self", "alignment", "occm", "inception", "aesthetics", "csd_cross", "cids_cross"]
    assert len(heights) == len(columns) * 2
    for label, row in rows.items():
        for c in columns:
            assert heights[f"{c}|{label}"] == pytest.approx(row[c], rel=1e-12)
    # the CSV beside the figure carries the same numbers, plus intervals that bracket each value
    for r in read_csv(paths["csv"]):
        assert float(r["value"]) == pytest.approx(rows[r["label"]][r["column"]], rel=1e-12)
        if r["column"] == "inception":
            assert r["ci_low"] == "nan"
        else:
            assert float(r["ci_low"]) <= float(r["value"]) + 1e-9 <= float(r["ci_high"]) + 2e-9
    # the two methods differ (fading changes the colours the toy backbones see), so the plot is not trivially flat
    assert rows["pair/gt"]["csd_cross"] != rows["pair/faded"]["csd_cross"]


def test_per_story_statistics_reproduce_the_row(evaluated_sweep):
    """The per-story pairs aggregate back to the evaluator's value (so the bootstrap resamples the right thing)."""
    for m in collect_rows([evaluated_sweep]):
        for c in ("csd_self", "csd_cross", "cids_self", "cids_cross", "alignment", "occm", "aesthetics"):
            stat = column_stat(m.path, c)
            assert stat is not None and len(stat.stories) == 3
            assert stat.value() == pytest.approx(m.value(c), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("era", ["B", "C"])
def test_per_story_statistics_reproduce_the_row_in_eras_b_c(tmp_path, era):
    """Eras B/C average rounded story means of CIDS (not the plain character means): the reports take bench's own
    per-story numbers, so the statistic over all stories is the row's value to the last digits."""
    dataset, outputs = build_dataset(tmp_path / "ViStory"), build_outputs(tmp_path / "outputs")
    cfg = EvalConfig(
        dataset, outputs, "toy-method", era=era, metrics=("cids", "csd"), out=tmp_path / "res", progress=False
    )
    rep = evaluate(cfg, load_backbones("toy", era=era), None)
    for c in ("cids_self", "cids_cross", "csd_self", "csd_cross"):
        stat = column_stat(rep.out, c)
        assert stat is not None and stat.stories == ["01", "02", "08"]
        assert stat.value() == pytest.approx(rep.row[c], rel=1e-12, abs=1e-12), c
    # a folder written before per_story.json existed: the same numbers, from the evaluator's own code
    (rep.out / "per_story.json").unlink()
    for c in ("cids_self", "cids_cross"):
        assert column_stat(rep.out, c).value() == pytest.approx(rep.row[c], rel=1e-12, abs=1e-12), c


def test_bootstrap_interval_known_answer(tmp_path):
    """Hand-made story records: values 10, 20, 30 → mean 20; resampling gives means within [10, 30]."""
    d = tmp_path / "m" / "metrics" / "aesthetic"
    d.mkdir(parents=True)
    recs = {f"0{i}": {"status": "ok", "metrics": {"aesthetic_score": v}} for i, v in enumerate([10.0, 20.0, 30.0])}
    recs["09"] = {"status": "failed", "metrics": {}}
    (d / "story_results.json").write_text(json.dumps(recs))
    stat = column_stat(tmp_path / "m", "aesthetics")
    assert stat is not None and stat.value() == 20.0
    lo, hi = stat.bootstrap(n_boot=2000, seed=1)
    assert 10.0 <= lo < 20.0 < hi <= 30.0
    # the exact bootstrap distribution of a 3-sample mean has P(mean = 10) = 1/27, so the 2.5% quantile is > 10
    rng = np.random.default_rng(1)
    draws = np.array([10.0, 20.0, 30.0])[rng.integers(0, 3, size=(2000, 3))].mean(axis=1)
    assert (lo, hi) == (pytest.approx(np.quantile(draws, 0.025)), pytest.approx(np.quantile(draws, 0.975)))


def test_cids_per_character_figure(evaluated_sweep, tmp_path):
    measured = collect_rows([evaluated_sweep])
    fig, data = cids_distributions(measured)
    paths = save_figure(fig, tmp_path, "cids", data)
    assert paths["png"].stat().st_size > 15_000
    # one point per (arm, story, character) of the CIDS units; the dots plotted are exactly those values
    for m in measured:
        units = json.loads((m.path / "metrics" / "cids" / "story_results.json").read_text())
        expected = sorted(
            100 * c["self"]
            for r in units.values()
            for c in r["details"]["characters"].values()
            if c["self"] is not None
        )
        got = sorted(d["cids_self"] for d in data if d["label"] == m.label)
        assert got == pytest.approx(expected)
    scatter_self = list(fig.axes[0].collections)
    plotted = sorted(float(y) for col in scatter_self for _, y in col.get_offsets())
    assert plotted == pytest.approx(sorted(d["cids_self"] for d in data))
    assert len(read_csv(paths["csv"])) == len(data)


def test_training_curves_from_csv_logs(tmp_path):
    """A Lightning CSVLogger-shaped file (sparse rows, two stages) → one line per loss column with its points."""
    log = tmp_path / "metrics.csv"
    log.write_text(
        "epoch,icl/ce,icl/mse,step,train/loss,del/ce,del/mse,train/stage\n"
        "0,6.0,1.0,0,7.0,,,0\n"
        "0,,,1,,,,0\n"
        "0,5.0,0.8,1,5.8,,,0\n"
        "0,4.9,0.7,2,4.0,3.0,0.5,1\n"
        "0,4.9,0.7,3,3.0,2.0,0.4,1\n"
    )
    fig, data = training_curves({"smoke/full": log})
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["icl/ce", "icl/mse", "del/ce", "del/mse"]
    lines = {ax.get_title(): ax.lines[0] for ax in fig.axes if ax.get_visible()}
    # icl values repeated on del steps (train/stage 1) are not plotted
    assert list(lines["icl/ce"].get_xdata()) == [0.0, 1.0] and list(lines["icl/ce"].get_ydata()) == [6.0, 5.0]
    assert list(lines["del/mse"].get_ydata()) == [0.5, 0.4]
    assert len(data) == 8
    paths = save_figure(fig, tmp_path, "curves", data)
    assert paths["png"].stat().st_size > 15_000
    assert not any(math.isnan(float(r["value"])) for r in read_csv(paths["csv"]))
