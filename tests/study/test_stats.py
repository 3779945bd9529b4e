"""Known-answer tests of study.stats: every expected number is worked out by hand below or comes from an
independent source (Krippendorff's published example, scipy's Friedman test, choix's BT fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from study import stats

# ----------------------------------------------------------------------------------------------- GSB


def test_gsb_scores_from_counts_by_hand():
    # G=6, S=3, B=1: net = (6-1)/10 = 0.5; ratio = (6+3)/(3+1) = 2.25; win rate 6/7; tie rate 3/10
    assert stats.gsb_net(6, 3, 1) == pytest.approx(0.5)
    assert stats.gsb_ratio(6, 3, 1) == pytest.approx(2.25)
    res = stats.gsb_summary([["G"] * 6 + ["S"] * 3 + ["B"]], n_boot=50)
    assert (res.good, res.same, res.bad, res.n, res.n_items) == (6, 3, 1, 10, 1)
    assert res.net == pytest.approx(0.5)
    assert res.ratio == pytest.approx(2.25)
    assert res.win_rate == pytest.approx(6 / 7)
    assert res.tie_rate == pytest.approx(0.3)
    # a single item: every bootstrap resample is that item, so the interval collapses onto the estimate
    assert res.net_ci == pytest.approx((0.5, 0.5))
    assert res.ratio_ci == pytest.approx((2.25, 2.25))


def test_gsb_edge_cases():
    assert math.isnan(stats.gsb_net(0, 0, 0))
    assert math.isnan(stats.gsb_ratio(0, 0, 0))
    assert stats.gsb_ratio(3, 0, 0) == math.inf
    assert stats.gsb_net(0, 0, 4) == -1.0
    assert stats.gsb_ratio(0, 0, 4) == 0.0
    with pytest.raises(ValueError, match="G, S or B"):
        stats.gsb_counts(["G", "X"])


def test_gsb_bootstrap_resamples_items_not_answers():
    # two items: one all-Good (4 answers), one all-Bad (4 answers). Resampling items gives net in {1, 0, -1} with
    # probabilities 1/4, 1/2, 1/4, so the 95% interval is [-1, 1]. Resampling the 8 answers instead would give a
    # much narrower interval (binomial net with sd ~ 0.7/sqrt(8)), so this pins the resampling unit.
    res = stats.gsb_summary([["G"] * 4, ["B"] * 4], n_boot=4000, seed=1)
    assert res.net == 0.0
    assert res.net_ci == (-1.0, 1.0)
    # ratio (G+S)/(S+B): item sets GG -> inf, GB -> 1, BB -> 0; the interval spans them without inf - inf warnings
    assert res.ratio_ci == (0.0, math.inf)


def test_gsb_ci_brackets_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(0)
    small = [list(rng.choice(["G", "S", "B"], p=[0.5, 0.3, 0.2], size=3)) for _ in range(10)]
    large = [list(rng.choice(["G", "S", "B"], p=[0.5, 0.3, 0.2], size=3)) for _ in range(400)]
    a = stats.gsb_summary(small, n_boot=2000)
    b = stats.gsb_summary(large, n_boot=2000)
    for r in (a, b):
        assert r.net_ci[0] <= r.net <= r.net_ci[1]
    assert b.net_ci[1] - b.net_ci[0] < (a.net_ci[1] - a.net_ci[0]) / 3
    assert b.net_ci[0] < 0.3 < b.net_ci[1]  # the true net score is 0.5 - 0.2 = 0.3


# ----------------------------------------------------------------------------------------------- ranks


def test_ranks_average_rank_first_share_and_friedman_by_hand():
    methods = ["a", "b", "c"]
    orderings = [["a", "b", "c"], ["a", "c", "b"], ["b", "a", "c"], ["a", "b", "c"]]
    ranks = stats.ranks_from_orderings(orderings, methods)
    assert ranks.tolist() == [[1, 2, 3], [1, 3, 2], [2, 1, 3], [1, 2, 3]]
    s = stats.rank_summary(ranks, methods)
    # rank sums 5, 8, 11 over n=4 blocks -> means 1.25, 2, 2.75; first places 3/4, 1/4, 0
    assert s.mean_rank == pytest.approx((1.25, 2.0, 2.75))
    assert s.first_share == pytest.approx((0.75, 0.25, 0.0))
    assert s.sd_rank[0] == pytest.approx(np.std([1, 1, 2, 1], ddof=1))
    # Friedman by hand: chi2 = 12/(n k (k+1)) * sum R_j^2 - 3 n (k+1) = 12/48 * (25+64+121) - 48 = 52.5 - 48 = 4.5
    assert s.friedman_stat == pytest.approx(4.5)
    assert s.friedman_p == pytest.approx(math.exp(-4.5 / 2))  # chi-square with 2 df: p = exp(-x/2)
    ref = sps.friedmanchisquare([1, 1, 2, 1], [2, 3, 1, 2], [3, 2, 3, 3])
    assert s.friedman_stat == pytest.approx(ref.statistic)


def test_rank_summary_two_methods_has_no_friedman():
    s = stats.rank_summary([[1, 2], [2, 1]], ["a", "b"])
    assert math.isnan(s.friedman_stat)
    assert s.mean_rank == (1.5, 1.5)


def test_ranks_reject_non_permutations():
    with pytest.raises(ValueError, match="permutation"):
        stats.ranks_from_orderings([["a", "a", "b"]], ["a", "b", "c"])


def test_kendalls_w_by_hand_without_ties():
    # 3 judges x 4 objects; rank sums 4, 6, 8, 12 (mean 7.5); S = 3.5^2 + 1.5^2 + 0.5^2 + 4.5^2 = 35
    # W = 12 S / (m^2 (n^3 - n)) = 420 / (9 * 60) = 7/9
    ranks = [[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]]
    assert stats.kendalls_w(ranks) == pytest.approx(7 / 9)
    # Friedman's statistic equals m (n - 1) W
    fr = sps.friedmanchisquare(*np.array(ranks).T)
    assert fr.statistic == pytest.approx(3 * 3 * 7 / 9)


def test_kendalls_w_by_hand_with_ties():
    # judge 1 ties objects 2 and 3 (scores 1, 2, 2, 3 -> ranks 1, 2.5, 2.5, 4); rank sums 4, 5.5, 8.5, 12
    # S = 3.5^2 + 2^2 + 1^2 + 4.5^2 = 37.5; tie term: one group of t=2 -> 2^3 - 2 = 6
    # W_corrected = 12 * 37.5 / (9 * 60 - 3 * 6) = 450 / 522 = 25/29; uncorrected 450/540
    scores = [[1, 2, 2, 3], [1, 2, 3, 4], [2, 1, 3, 4]]
    assert stats.kendalls_w(scores) == pytest.approx(25 / 29)
    assert stats.kendalls_w(scores, tie_correction=False) == pytest.approx(450 / 540)
    # scipy's Friedman test is tie-corrected too: chi2 = m (n - 1) W_corrected
    fr = sps.friedmanchisquare(*np.array(scores).T)
    assert fr.statistic == pytest.approx(3 * 3 * 25 / 29)


def test_kendalls_w_extremes():
    assert stats.kendalls_w([[1, 2, 3]] * 5) == pytest.approx(1.0)
    assert stats.kendalls_w([[1, 2], [2, 1]]) == pytest.approx(0.0)
    assert math.isnan(stats.kendalls_w([[1, 2, 3]]))
    assert math.isnan(stats.kendalls_w([[1, 1], [2, 2]]))  # everyone ties everything


# ----------------------------------------------------------------------------------------------- Krippendorff


def test_krippendorff_alpha_small_table_by_hand():
    # raters x units: r1 = (1, 2, 3), r2 = (1, 3, 3). Coincidences: o11 = 2, o23 = o32 = 1, o33 = 2;
    # marginals n1 = 2, n2 = 1, n3 = 3, n = 6.
    # ordinal distances d^2(c,k) = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2: d12 = 1.5^2, d13 = 3.5^2, d23 = 2^2
    # D_o = 2 * 1 * 4 = 8; D_e = 2 * (2*1*2.25 + 2*3*12.25 + 1*3*4) = 180; alpha = 1 - (n-1) D_o / D_e = 7/9
    data = [[1, 2, 3], [1, 3, 3]]
    assert stats.krippendorff_alpha(data, "ordinal") == pytest.approx(7 / 9)
    # nominal: D_o = 2, D_e = 2 * (2*1 + 2*3 + 1*3) = 22; alpha = 1 - 5 * 2 / 22 = 6/11
    assert stats.krippendorff_alpha(data, "nominal") == pytest.approx(6 / 11)


def test_krippendorff_alpha_published_example():
    # Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", 4 observers x 12 units with missing data:
    # published alpha = 0.743 (nominal), 0.815 (ordinal), 0.849 (interval)
    nan = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    assert stats.krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert stats.krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert stats.krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_undefined_cases():
    assert math.isnan(stats.krippendorff_alpha([[1, 1, 1], [1, 1, 1]]))  # one value only
    assert math.isnan(stats.krippendorff_alpha([[1, np.nan], [np.nan, 2]]))  # nothing pairable
    assert stats.krippendorff_alpha([[0, 1, 2, 0], [0, 1, 2, 0]]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- Bradley–Terry


def test_bt_two_methods_closed_form():
    # i beats j 3 times out of 4: the MLE satisfies sigma(s_i - s_j) = 3/4, so s_i - s_j = ln 3
    s = stats.bradley_terry([[0, 3], [1, 0]])
    assert s[0] - s[1] == pytest.approx(math.log(3))
    assert s.sum() == pytest.approx(0.0)
    # ties count as half a win: 2 wins, 2 ties, 0 losses -> 3 wins : 1 loss
    comps = [(0, 1, 1.0), (0, 1, 1.0), (0, 1, 0.5), (1, 0, 0.5)]
    s2 = stats.bradley_terry(stats.win_matrix(comps, 2))
    assert s2[0] - s2[1] == pytest.approx(math.log(3))


def test_bt_matches_choix_and_recovers_simulated_order():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(3)
    true = np.array([1.2, 0.5, 0.0, -0.4, -1.3])
    comps, data = [], []
    for _ in range(4000):
        i, j = rng.choice(5, size=2, replace=False)
        if rng.random() < 1 / (1 + math.exp(-(true[i] - true[j]))):
            comps.append((int(i), int(j), 1.0))
            data.append((int(i), int(j)))
        else:
            comps.append((int(i), int(j), 0.0))
            data.append((int(j), int(i)))
    ours = stats.bradley_terry(stats.win_matrix(comps, 5))
    ref = choix.ilsr_pairwise(5, data, alpha=0.0)
    np.testing.assert_allclose(ours, ref - ref.mean(), atol=1e-6)
    assert list(np.argsort(-ours)) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(ours, true - true.mean(), atol=0.15)


def test_bt_from_simulated_rankings_with_bootstrap_ci():
    methods = ["m0", "m1", "m2", "m3"]
    rng = np.random.default_rng(7)
    true = np.array([1.0, 0.4, -0.2, -1.2])
    by_item = []
    for _ in range(40):  # items
        orderings = []
        for _ in range(3):  # raters: Plackett-Luce draws via Gumbel noise
            order = np.argsort(-(true + rng.gumbel(size=4)))
            orderings.append([methods[i] for i in order])
        by_item.append(stats.comparisons_from_orderings(orderings, methods))
    res = stats.bradley_terry_ci(by_item, methods, n_boot=200, seed=0)
    assert res.n_comparisons == 40 * 3 * 6
    assert list(np.argsort(-np.array(res.scores))) == [0, 1, 2, 3]
    for s, lo, hi in zip(res.scores, res.ci_low, res.ci_high):
        assert lo <= s <= hi
    assert res.ci_low[0] > res.ci_high[3]  # best and worst are clearly separated
    assert res.elo[0] == pytest.approx(stats.to_elo(res.scores[0]))
    assert stats.to_elo(math.log(10)) == pytest.approx(1400.0)


def test_bt_mle_needs_prior_when_a_method_never_loses():
    wins = [[0, 5], [0, 0]]
    with pytest.raises(ValueError, match="never"):
        stats.bradley_terry(wins)
    s = stats.bradley_terry(wins, prior=1.0)
    # 5.5 wins vs 0.5: s0 - s1 = ln(11)
    assert s[0] - s[1] == pytest.approx(math.log(11))


def test_comparisons_expansion():
    assert stats.comparisons_from_orderings([["b", "c", "a"]], ["a", "b", "c"]) == [
        (1, 2, 1.0),
        (1, 0, 1.0),
        (2, 0, 1.0),
    ]
    assert stats.comparisons_from_gsb(["G", "S", "B"], 0, 1) == [(0, 1, 1.0), (0, 1, 0.5), (0, 1, 0.0)]


def test_study_imports_neither_torch_nor_streamlit():
    """The study package is what reports and the app share: it must not pull in the app (Streamlit) or torch."""
    import subprocess
    import sys

    code = (
        "import sys, study, study.stats, study.report, study.export, study.quality; "
        "print(sorted(m for m in ('torch', 'streamlit', 'dashboard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # positive control: the same check sees Streamlit when the app's modules are imported
    code = code.replace("import sys, study,", "import sys, dashboard.runs, study,")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['dashboard', 'streamlit']"


# ----------------------------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 6).flatmap(lambda k: st.lists(st.permutations(list(range(1, k + 1))), min_size=2, max_size=12)))
def test_friedman_equals_m_times_k_minus_1_times_w(rows):
    ranks = np.array(rows, dtype=float)
    m, k = ranks.shape
    w = stats.kendalls_w(ranks)
    s = stats.rank_summary(ranks, [f"m{j}" for j in range(k)])
    assert 0.0 <= w <= 1.0 + 1e-12
    if not math.isnan(s.friedman_stat):
        assert s.friedman_stat == pytest.approx(m * (k - 1) * w, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_gsb_net_and_ratio_agree_on_direction(g, s, b):
    if g + s + b == 0:
        return
    net, ratio = stats.gsb_net(g, s, b), stats.gsb_ratio(g, s, b)
    assert -1.0 <= net <= 1.0
    # (G+S)/(S+B) > 1  <=>  G > B  <=>  net > 0
    assert (net > 0) == (ratio > 1) and (net < 0) == (ratio < 1)
