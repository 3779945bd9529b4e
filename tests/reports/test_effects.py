"""The effects report on simulated sweeps with known truth (tests/reports/effects_worlds.py).

References are independent of the code under test: planted effects, hand-computed Holm, a t-test on per-seed means,
the bootstrap's own variance, the nominal rejection rate over many null worlds, and the artists of the figure.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from reports.effects import CONTROL_COLUMNS, EFFECT_COLUMNS, compute_effects, write_effects
from reports.effects_io import EffectsInputError, load_arms, read_perstory_long
from reports.effects_stats import (
    bootstrap_deltas,
    draw_story_counts,
    estimate_effect,
    holm,
    seed_counts,
    weighted_means,
    welch_components,
)
from tests.reports.effects_worlds import Metric, simulate, write_controls, write_keyframes, write_run, write_sweep
from unimage.cli import main

ROLES = {"full": ("reference", None), "abl": ("ablation", "full"), "null": ("null", "full")}


def _draws(rng, b, k, s):
    return rng.random((b, k)), draw_story_counts(rng, b, s)


def _read(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


##### the statistics


def test_weighted_means_equal_explicit_resample():
    """The count-weighted mean equals the mean of the explicitly resampled cells (NaN skipped)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5))
    x[0, 1, 2] = np.nan
    seeds, stories = np.array([2, 0, 2]), np.array([4, 4, 1, 0, 2])
    v = np.bincount(seeds, minlength=3)[None].astype(float)
    w = np.bincount(stories, minlength=5)[None].astype(float)
    got = weighted_means(x, v, w)[:, 0]
    for m in range(2):
        cells = x[m][np.ix_(seeds, stories)]
        assert got[m] == pytest.approx(np.nanmean(cells))


def test_seed_counts_pair_equal_arms_and_stay_uniform():
    rng = np.random.default_rng(1)
    u = rng.random((20000, 5))
    a, b = seed_counts(u, 3), seed_counts(u, 3)
    assert np.array_equal(a, b) and (a.sum(1) == 3).all()  # same seed positions for both arms: paired
    c = seed_counts(u, 5)
    assert (c.sum(1) == 5).all()
    assert np.allclose(c.mean(0), 1.0, atol=0.03)  # each of 5 seeds drawn once per resample on average


def test_holm_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 over m = 4: 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04)
    expected = np.array([0.03, 0.06, 0.06, 0.02, np.nan])
    np.testing.assert_allclose(holm(p), expected, equal_nan=True)
    np.testing.assert_allclose(holm(np.array([0.02, 0.9])), [0.04, 0.9])
    np.testing.assert_allclose(holm(np.array([0.9, 0.5])), [1.0, 1.0])  # 2·0.5 capped at 1, then monotone


def test_planted_effect_detected_and_ci_covers_truth(tmp_path):
    rng = np.random.default_rng(3)
    truth = np.array([0.8, 0.0, 0.0, -0.5])
    values = simulate(rng, 4, {"full": 3, "abl": 3}, 50, {"abl": truth}, sd_seed=0.05, sd_story=1.0, sd_cell=0.5)
    metrics = [Metric(f"diag.m{i}") for i in range(4)]
    arms = load_arms(write_sweep(tmp_path / "w", values, ROLES, metrics))
    for method in ("twolevel", "welch", "bootstrap"):
        rows = {r.metric: r for r in compute_effects(arms, method=method, resamples=2000, seed=0)}
        for i, m in enumerate(metrics):
            r = rows[m.name]
            assert r.ci_low <= truth[i] <= r.ci_high, (method, r)
            assert r.detected == (truth[i] != 0), (method, r)
            assert (r.n_seeds, r.n_stories) == (3, 50)
        # delta = mean over seeds and stories of arm minus reference, exactly
        assert rows["diag.m0"].delta == pytest.approx(values["abl"][0].mean() - values["full"][0].mean())


def test_seed_noise_fools_story_only_bootstrap_not_hierarchical():
    """Seed offsets +0.30, −0.10, +0.25 on the arm, none on the reference, no story-level effect.

    A story-only bootstrap (seeds kept) sees a tight +0.15 and calls it significant; resampling seeds shows the
    per-seed deltas disagree in sign, and neither the hierarchical bootstrap nor the Welch interval rejects.
    """
    rng = np.random.default_rng(4)
    story = rng.normal(0, 1.0, size=(1, 1, 40))
    ref = story + rng.normal(0, 0.05, size=(1, 3, 40))
    arm = story + np.array([0.30, -0.10, 0.25])[None, :, None] + rng.normal(0, 0.05, size=(1, 3, 40))
    u, w = _draws(np.random.default_rng(0), 4000, 3, 40)
    story_only = estimate_effect(arm, ref, "story", u, w)
    hier = estimate_effect(arm, ref, "bootstrap", u, w)
    welch = estimate_effect(arm, ref, "welch", u, w)
    twolevel = estimate_effect(arm, ref, "twolevel", u, w)
    assert story_only.p[0] < 0.001 and story_only.ci_low[0] > 0.1
    for st in (hier, welch, twolevel):
        assert st.p[0] > 0.05 and st.ci_low[0] < 0 < st.ci_high[0]
    # with the seeds dominating, Welch's p is close to the paired t-test on the three per-seed deltas ...
    per_seed = (arm - ref).mean(axis=2)[0]
    assert welch.p[0] == pytest.approx(stats.ttest_1samp(per_seed, 0.0).pvalue, rel=0.15)
    # ... which is the seed level of the two-level test, exactly
    assert twolevel.p[0] == pytest.approx(max(welch.p[0], stats.ttest_1samp(per_seed, 0.0).pvalue))


def test_seed_level_t_matches_scipy():
    rng = np.random.default_rng(12)
    arm, ref = rng.normal(size=(2, 3, 20)), rng.normal(size=(2, 4, 20))
    u, w = _draws(rng, 10, 4, 20)
    from reports.effects_stats import seed_t_effect

    st = seed_t_effect(arm, ref)  # unequal seed counts: Welch's two-sample t on per-seed means
    ref_t = stats.ttest_ind(arm.mean(2), ref.mean(2), axis=1, equal_var=False)
    np.testing.assert_allclose(st.p, ref_t.pvalue)
    paired = seed_t_effect(arm, ref[:, :3])
    np.testing.assert_allclose(paired.p, stats.ttest_rel(arm.mean(2), ref[:, :3].mean(2), axis=1).pvalue)
    single = estimate_effect(arm[:, :1], ref[:, :1], "twolevel", u, w)  # one seed: story level only
    np.testing.assert_allclose(single.p, estimate_effect(arm[:, :1], ref[:, :1], "welch", u, w).p)


def test_welch_components_against_per_seed_and_per_story_means():
    rng = np.random.default_rng(5)
    arm, ref = rng.normal(size=(2, 3, 30)), rng.normal(size=(2, 4, 30))
    A, _, B, df_b = welch_components(arm, ref)
    sa, sr = arm.mean(2), ref.mean(2)  # unequal seed counts: unpaired seed level
    np.testing.assert_allclose(A, sa.var(1, ddof=1) / 3 + sr.var(1, ddof=1) / 4)
    e = arm.mean(1) - ref.mean(1)
    np.testing.assert_allclose(B, e.var(1, ddof=1) / 30)
    assert (df_b == 29).all()
    A2, df2, _, _ = welch_components(arm, ref[:, :3])  # equal counts: paired by order
    np.testing.assert_allclose(A2, (arm.mean(2) - ref[:, :3].mean(2)).var(1, ddof=1) / 3)
    assert (df2 == 2).all()


def test_hierarchical_bootstrap_variance_is_shrunk_seed_plus_story_component():
    """var(δ*) ≈ (K−1)/K·A + B: the bootstrap and the analytic components agree (and show the shrinkage)."""
    rng = np.random.default_rng(6)
    x = simulate(rng, 3, {"a": 3, "r": 3}, 60, sd_seed=0.4, sd_story=1.0, sd_cell=0.5)
    u, w = _draws(np.random.default_rng(1), 20000, 3, 60)
    d = bootstrap_deltas(x["a"], x["r"], u, w)
    A, _, B, _ = welch_components(x["a"], x["r"])
    np.testing.assert_allclose(d.var(axis=1), (2 / 3) * A + B, rtol=0.12)


def _null_rejections(method, n_worlds, sd_seed, n_metrics=10, resamples=1000):
    """Per-metric rejection rate at 0.05, and the fraction of worlds whose null arm has a Holm-significant metric.

    The metrics of a world are independent, so the analytic methods score all worlds in one call (worlds × metrics
    stacked on the metric axis); the bootstraps go world by world.
    """
    rng = np.random.default_rng(7)
    if method in ("bootstrap", "story"):
        ps = []
        for _ in range(n_worlds):
            x = simulate(rng, n_metrics, {"full": 3, "null": 3}, 50, sd_seed=sd_seed)
            u, w = _draws(rng, resamples, 3, 50)
            ps.append(estimate_effect(x["null"], x["full"], method, u, w).p)
        p = np.array(ps)
    else:
        x = simulate(rng, n_worlds * n_metrics, {"full": 3, "null": 3}, 50, sd_seed=sd_seed)
        u, w = _draws(rng, 1, 3, 50)
        p = estimate_effect(x["null"], x["full"], method, u, w).p.reshape(n_worlds, n_metrics)
    any_holm = np.mean([np.any(holm(row) < 0.05) for row in p])
    return float(np.mean(p < 0.05)), float(any_holm)


@pytest.mark.parametrize("sd_seed", [0.0, 0.3, 2.0])
def test_null_arm_rejects_at_about_the_nominal_rate(sd_seed):
    """2000 null worlds × 10 metrics, 3 seeds × 50 stories (cell sd 1): per-metric rate ≤ 5 %, and the null arm has
    a Holm-significant metric in ≤ 5 % of worlds (bounds: 5 % + 3 binomial standard errors).

    sd 0: no seed noise (A + B counts the cell noise twice → conservative); 0.3: seed and story noise comparable;
    2.0: seed noise dominates. See the printed rates in the module doc of reports/effects_stats.py.
    """
    rate, any_holm = _null_rejections("twolevel", 2000, sd_seed)
    print(f"sd_seed {sd_seed}: per-metric {rate:.3f}, any Holm {any_holm:.3f}")
    assert rate <= 0.055
    assert any_holm <= 0.065
    if sd_seed > 1:
        assert rate >= 0.025  # calibrated, not trivially conservative, when seeds dominate


@pytest.mark.slow
def test_plain_hierarchical_bootstrap_is_anti_conservative_with_three_seeds():
    """Why the report's default is ``twolevel``: with seed noise dominating, the percentile bootstrap over 3 seeds
    rejects a true null far above 5 %, and Welch alone reaches a Holm level too often."""
    rate, any_holm = _null_rejections("bootstrap", 150, 2.0, resamples=2000)
    print(f"bootstrap: per-metric {rate:.3f}, any Holm {any_holm:.3f}")
    assert rate > 0.15
    assert any_holm > 0.3
    rate, any_holm = _null_rejections("welch", 400, 1.0)
    print(f"welch: per-metric {rate:.3f}, any Holm {any_holm:.3f}")
    assert any_holm > 0.1


##### the report files


def _world_sweep(tmp_path, n_stories=20):
    rng = np.random.default_rng(11)
    metrics = [
        Metric("oracle.identity_acc", "oracle", True),
        Metric("diag.cont_ce", "diag", False),
        Metric("toy.cids_self", "toy", True),
    ]
    values = simulate(
        rng,
        3,
        {"full": 3, "abl": 3, "null": 3},
        n_stories,
        {"abl": np.array([0.0, 0.9, 0.0])},
        sd_seed=0.05,
        sd_story=0.5,
        sd_cell=0.3,
    )
    values["ground_truth"] = values["full"][:, :1] + 1.0
    roles = {**ROLES, "ground_truth": ("external", None)}
    root = write_sweep(tmp_path / "runs" / "toyworld", values, roles, metrics, first_seed={"null": 10})
    clean = rng.normal(1.0, 0.1, n_stories)
    write_controls(
        root,
        [
            ("identity_swap", "oracle.identity_acc", "oracle", clean, clean - 0.5 + rng.normal(0, 0.05, n_stories)),
            ("identity_swap", "toy.cids_self", "toy", clean, clean + rng.normal(0, 0.05, n_stories)),
            ("noise", "toy.cids_self", "toy", clean, clean + 0.4 + rng.normal(0, 0.05, n_stories)),
            ("noise", "oracle.identity_acc", "oracle", clean, clean - 0.3 + rng.normal(0, 0.05, n_stories)),
        ],
        [
            ("identity_swap", "oracle.identity_acc", "down", 1),
            ("identity_swap", "toy.cids_self", "down", 1),
            ("noise", "toy.cids_self", "down", 0),
            ("noise", "oracle.identity_acc", "any", 0),
        ],
    )
    write_keyframes(root / "full.seed0", 3, 4)
    write_keyframes(root / "ground_truth", 3, 4)
    return root


def test_report_files_columns_and_words(tmp_path, capsys):
    sweep = _world_sweep(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", "effects", str(sweep), "-o", str(out), "--resamples", "800", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "null arm Holm-significant: 0" in printed
    header, rows = _read(out / "effects.csv")
    assert tuple(header) == EFFECT_COLUMNS
    assert {(r["arm"], r["metric"]) for r in rows} == {(a, m) for a in ("abl", "null") for m in (
        "oracle.identity_acc", "diag.cont_ce", "toy.cids_self")}  # fmt: skip
    by = {(r["arm"], r["metric"]): r for r in rows}
    assert float(by[("abl", "diag.cont_ce")]["p_holm"]) < 0.05 and float(by[("abl", "diag.cont_ce")]["ci_low"]) > 0
    assert all(float(by[("null", m)]["p_holm"]) >= 0.05 for m in ("oracle.identity_acc", "diag.cont_ce"))
    assert {r["n_seeds"] for r in rows} == {"3"} and {r["n_stories"] for r in rows} == {"20"}
    header, controls = _read(out / "controls.csv")
    assert tuple(header) == CONTROL_COLUMNS
    det = {(c["corruption"], c["metric"]): c["detected"] for c in controls}
    assert det == {
        ("identity_swap", "oracle.identity_acc"): "1",
        ("identity_swap", "toy.cids_self"): "0",  # target, does not move: blind
        ("noise", "oracle.identity_acc"): "1",  # "any"
        ("noise", "toy.cids_self"): "0",  # moves up where down was expected
    }
    md = (out / "effects.md").read_text()
    assert "detected: `diag.cont_ce` +0.9" in md and "(worse;" in md  # lower is better, and it went up
    assert "The null arm `null` has no Holm-significant metric" in md
    assert "`toy.cids_self` is blind to `identity_swap`" in md
    assert "moves the wrong way: `toy.cids_self`" in md
    assert "below the seed noise: " in md
    header, means = _read(out / "arm_means.csv")
    gt = next(r for r in means if r["arm"] == "ground_truth" and r["metric"] == "oracle.identity_acc")
    _, gt_rows = _read(sweep / "ground_truth" / "metrics" / "perstory_long.csv")
    by_hand = np.mean([float(r["value"]) for r in gt_rows if r["metric"] == "oracle.identity_acc"])
    assert float(gt["mean"]) == pytest.approx(by_hand) and gt["n_seeds"] == "1" and gt["role"] == "external"
    full = next(r for r in means if r["arm"] == "full" and r["metric"] == "diag.cont_ce")
    per_seed = [
        np.mean([float(r["value"]) for r in _read(sweep / f"full.seed{k}" / "metrics" / "perstory_long.csv")[1]
                 if r["metric"] == "diag.cont_ce"])
        for k in range(3)
    ]  # fmt: skip
    assert (float(full["seed_min"]), float(full["seed_max"])) == pytest.approx((min(per_seed), max(per_seed)))
    assert "## Arm means" in md and "| `oracle.identity_acc` |" in md
    for name in ("keyframes_full.seed0.png", "keyframes_ground_truth.png", "figures/effects_forest.png"):
        assert (out / name).stat().st_size > 500
        assert f"]({name})" in md


def test_report_is_deterministic_under_seed(tmp_path):
    sweep = _world_sweep(tmp_path)
    texts = []
    for i, seed in enumerate((5, 5, 6)):
        out = tmp_path / f"r{i}"
        write_effects(sweep, out, method="bootstrap", resamples=500, seed=seed, figures=False)
        texts.append((out / "effects.csv").read_text() + (out / "controls.csv").read_text())
    assert texts[0] == texts[1] and texts[0] != texts[2]


def test_forest_rows_read_back_from_artists_equal_csv(tmp_path):
    from matplotlib.colors import to_rgba

    from reports.effects import null_bands
    from reports.effects_forest import forest_plot

    arms = load_arms(_world_sweep(tmp_path))
    rows = compute_effects(arms, resamples=300)
    fig, data = forest_plot(rows, null_bands(rows))
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    assert len(data) == len(rows) == 6
    for d in data:
        marker = lines[f"effect|{d['arm']}|{d['metric']}"]
        ci = lines[f"ci|{d['arm']}|{d['metric']}"]
        assert marker.get_xdata()[0] == pytest.approx(d["x"]) and marker.get_ydata()[0] == d["y"]
        assert list(ci.get_xdata()) == pytest.approx([d["x_low"], d["x_high"]])
        assert d["x"] * d["scale"] == pytest.approx(d["delta"])
        assert (to_rgba(marker.get_markerfacecolor()) != to_rgba("white")) == bool(d["detected"])
    bands = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("band|")}
    assert set(bands) == {f"band|full|{m}" for m in ("oracle.identity_acc", "diag.cont_ce", "toy.cids_self")}
    for gid, patch in bands.items():
        ys = [d["y"] for d in data if d["metric"] == gid.split("|")[2]]
        assert (patch.get_x(), patch.get_x() + patch.get_width()) == (-1.0, 1.0)
        assert patch.get_y() < min(ys) and patch.get_y() + patch.get_height() > max(ys)  # behind every row
    # null rows: the band's scale is the null arm's own max |CI end|, so they sit inside [−1, 1]
    assert all(d["x_low"] >= -1 and d["x_high"] <= 1 for d in data if d["role"] == "null")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{d['metric']} · {d['arm']}" for d in data]
    families = [d["family"] for d in data]
    assert families == sorted(families, key=["oracle", "diag", "toy", "official"].index)


def test_forest_without_null_arm_scales_by_the_widest_ci(tmp_path):
    from reports.effects_forest import forest_plot

    rng = np.random.default_rng(13)
    values = simulate(rng, 2, {"full": 3, "abl": 3}, 20, {"abl": np.array([1.0, 0.0])}, sd_story=0.5, sd_cell=0.3)
    arms = load_arms(write_sweep(tmp_path / "w", values, ROLES, [Metric("diag.a"), Metric("diag.b")]))
    rows = compute_effects(arms)
    fig, data = forest_plot(rows, {})
    assert not [p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("band|")]
    for d in data:
        assert max(abs(d["x_low"]), abs(d["x_high"]), abs(d["x"])) == pytest.approx(1.0)
        assert d["scale_kind"] == "max |CI|" and math.isnan(d["band_low"])


def test_forest_csv_written_matches_data(tmp_path):
    sweep = _world_sweep(tmp_path)
    res = write_effects(sweep, tmp_path / "o", resamples=300, sheets=[])
    _, rows = _read(res.files["forest_csv"])
    effects = {(r.arm, r.metric): r for r in res.effects}
    assert len(rows) == len(effects)
    for r in rows:
        e = effects[(r["arm"], r["metric"])]
        assert float(r["delta"]) == pytest.approx(e.delta) and float(r["x"]) * float(r["scale"]) == pytest.approx(
            e.delta
        )


def test_keyframe_sheet_grid(tmp_path):
    from PIL import Image

    from reports.keyframes import find_keyframes, keyframe_sheet

    colours = write_keyframes(tmp_path / "run", 3, 4, size=32)
    frames = find_keyframes(tmp_path / "run")
    assert list(frames) == ["01", "02", "03"] and sorted(frames["02"]) == [1, 2, 3, 4]
    path = keyframe_sheet(tmp_path / "run", tmp_path / "sheet.png", thumb=32)
    im = Image.open(path).convert("RGB")
    pad, left, top = 4, 64, 30
    assert im.size == (max(left + 4 * 36 + pad, 240), top + 3 * 36 + pad)
    for (s, n), c in colours.items():
        assert im.getpixel((left + (n - 1) * 36 + 16, top + (s - 1) * 36 + 16)) == c
    assert keyframe_sheet(tmp_path / "empty", tmp_path / "none.png") is None


def test_table1_writes_effects_when_the_sweep_has_them(tmp_path, capsys):
    sweep = _world_sweep(tmp_path)
    assert main(["report", "table1", str(sweep), "--resamples", "200", "--no-figures"]) == 0
    assert (sweep / "report" / "effects.csv").is_file() and (sweep / "report" / "effects.md").is_file()
    assert "no Table 1" in capsys.readouterr().err  # per-story CSVs only: no results_row.json to tabulate


def test_summary_links_effects_and_labels_table1(tmp_path):
    from reports.summary import summary_markdown
    from reports.table1 import build_table1

    text = summary_markdown(build_table1([]), [], {}, tmp_path, "t", effects={"effects_md": tmp_path / "effects.md"})
    assert "[effects.md](effects.md)" in text
    assert "a reproduction table, not an effect estimate" in text


##### bad input


def test_errors_name_the_file_and_line(tmp_path):
    good = "story,metric,family,higher_is_better,value\n01,diag.x,diag,0,1.5\n"
    cases = {
        "story,metric,value\n01,diag.x,1\n": "lacks column(s) family, higher_is_better",
        good + "02,diag.x,diag,0,abc\n": "perstory_long.csv:3: column 'value' is not a number: 'abc'",
        good + "02,diag.x,weird,0,1\n": "family 'weird' is not one of",
        good + "02,diag.x,diag,2,1\n": "higher_is_better must be 1 or 0",
        good + "02,diag.x,diag,1,1\n": "changes family or higher_is_better",
        good + "01,diag.x,diag,0,2.0\n": "given twice",
        good + "02,diag.x,toy,0,2.0\n": "changes family",
        good + "02,diag.x,diag\n": "wrong number of cells",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / str(i) / "perstory_long.csv"
        path.parent.mkdir()
        path.write_text(text)
        with pytest.raises(EffectsInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_perstory_long(path)
    empty = tmp_path / "e.csv"
    empty.write_text("story,metric,family,higher_is_better,value\n01,diag.x,diag,0,\n")
    assert math.isnan(read_perstory_long(empty).values[0, 0])  # empty = undefined, counted
    assert read_perstory_long(empty).n_undefined == {"diag.x": 1}
    empty.write_text("story,metric,family,higher_is_better,value\n01,diag.x,diag,True,1\n")
    assert read_perstory_long(empty).higher_is_better == {"diag.x": True}  # str(bool) is read, not refused


def test_missing_arm_json_and_bad_references(tmp_path, capsys):
    x = np.zeros((1, 2))
    m = [Metric("diag.x")]
    root = tmp_path / "s"
    write_run(root, "full.seed0", "full", 0, "reference", None, x, m)
    run = write_run(root, "abl.seed0", "abl", 0, "ablation", "full", x, m)
    (run / "arm.json").unlink()
    assert main(["report", "effects", str(root)]) == 2
    assert "abl.seed0/arm.json: missing" in capsys.readouterr().err
    write_run(root, "abl.seed0", "abl", 0, "ablation", "nothere", x, m)
    with pytest.raises(EffectsInputError, match="measured against 'nothere', which has no run folder"):
        load_arms(root)
    write_run(root, "abl.seed0", "abl", 0, "sideways", "full", x, m)
    with pytest.raises(EffectsInputError, match="'role' must be one of"):
        load_arms(root)
    (root / "abl.seed0" / "arm.json").write_text("{not json")
    with pytest.raises(EffectsInputError, match="not valid JSON"):
        load_arms(root)
    write_run(root, "abl.seed0", "abl", 0, "ablation", "full", x, m)
    (root / "abl.seed0" / "metrics" / "perstory_long.csv").unlink()
    with pytest.raises(EffectsInputError, match=r"perstory_long\.csv: missing"):
        load_arms(root)
    assert main(["report", "effects", str(tmp_path / "absent")]) == 2
    assert "no such sweep folder" in capsys.readouterr().err


def test_external_arm_without_scores_still_gets_its_sheet(tmp_path):
    sweep = _world_sweep(tmp_path)
    (sweep / "ground_truth" / "metrics" / "perstory_long.csv").unlink()
    res = write_effects(sweep, tmp_path / "o", resamples=100)
    assert "keyframes_ground_truth" in res.files
    assert not any(r["arm"] == "ground_truth" for r in res.means)
    (sweep / "full.seed1" / "metrics" / "perstory_long.csv").unlink()  # a trained run must have its scores
    with pytest.raises(EffectsInputError, match=r"full\.seed1/metrics/perstory_long\.csv: missing"):
        load_arms(sweep)


def test_unknown_sheet_run_is_an_error(tmp_path, capsys):
    sweep = _world_sweep(tmp_path)
    assert main(["report", "effects", str(sweep), "--resamples", "100", "--sheets", "full.seed0,nope"]) == 2
    assert "no run folder named nope" in capsys.readouterr().err


def test_bad_expected_direction(tmp_path):
    from reports.effects_io import read_controls

    sweep = _world_sweep(tmp_path)
    with (sweep / "controls" / "expected.csv").open("a") as f:
        f.write("noise,diag.cont_ce,sideways,1\n")
    with pytest.raises(EffectsInputError, match=r"expected\.csv:6: expected must be down, up or any"):
        read_controls(sweep)


@pytest.mark.slow
def test_on_a_real_sweep_with_controls(tmp_path):
    """The real runner's files (two external ground-truth arms, identity-swap and noise controls, toy backbones)
    read without error; every oracle metric detects the noise control and identity accuracy the swap; the ground
    truth scores 1 on oracle identity; its keyframe sheet is found through config.yaml."""
    from ablations.config import load_sweep
    from ablations.runner import run_sweep
    from tests.ablations.helpers import ext_sweep_doc, write_yaml

    doc = ext_sweep_doc("real", n_stories=3, metrics=["csd", "occm"])
    doc["arms"]["gt2"] = {"external": {"outputs": "{data}/eval/outputs", "method": "ground_truth"}}
    doc["controls"] = ["identity_swap", "noise"]
    res = run_sweep(load_sweep(write_yaml(tmp_path / "real.yaml", doc)), runs=tmp_path / "runs", progress=False,
                    log=lambda m: None, jobs=1)  # fmt: skip
    assert res.ok, res.arms
    out = write_effects(tmp_path / "runs" / "real", resamples=500)
    assert out.effects == []  # no reference arm in this sweep
    detected = {(c.corruption, c.metric): c.detected for c in out.controls}
    assert detected[("identity_swap", "oracle.identity_acc")] and detected[("noise", "oracle.identity_acc")]
    assert all(d for (c, m), d in detected.items() if c == "noise" and m.startswith("oracle."))
    gt = [r for r in out.means if r["arm"] == "gt" and r["metric"] == "oracle.identity_acc"]
    assert gt and gt[0]["mean"] == 1.0
    assert out.files["keyframes_gt"].stat().st_size > 1000


@pytest.mark.slow
def test_power_on_an_issue_11_like_effect():
    """What 3 vs 5 seeds buy: +0.044 on one of 20 metrics (issue 11's continuation-CE effect), per-arm seed sd
    0.0035, 48 stories. With 3 seeds the two-level CI excludes 0 in nearly every world but Holm over 20 metrics
    rarely passes (its seed-level t has 2 degrees of freedom); with 5 seeds it usually does.
    Measured (300 worlds, seed 3): K=3 CI 0.95, Holm 0.18; K=5 CI 1.00, Holm 0.93."""
    rng = np.random.default_rng(3)
    rates = {}
    for k in (3, 5):
        ci = holm_ok = 0
        for _ in range(300):
            eff = np.zeros(20)
            eff[0] = 0.044
            x = simulate(rng, 20, {"f": k, "a": k}, 48, {"a": eff}, sd_seed=0.0035, sd_story=0.05, sd_cell=0.04)
            u, w = _draws(rng, 1, k, 48)
            st = estimate_effect(x["a"], x["f"], "twolevel", u, w)
            ci += st.ci_low[0] > 0
            holm_ok += st.ci_low[0] > 0 and holm(st.p)[0] < 0.05
        rates[k] = (ci / 300, holm_ok / 300)
    print(rates)
    assert rates[3][0] > 0.9 and rates[3][1] < 0.3
    assert rates[5][1] > 0.8
