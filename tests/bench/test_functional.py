"""Known-answer tests of the functional metrics, each against an independent computation in the test."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from bench import functional as F
from bench.backbones.base import IdentityFeatures, identity_similarity

# ---------------------------------------------------------------- OCCM (§5)


@pytest.mark.parametrize(
    ("e", "d", "published"), [(1, 0, 36.79), (1, 2, 36.79), (2, 1, 60.65), (3, 2, 71.65), (2, 2, 100.0)]
)
def test_occm_published_examples_eras_b_c(e, d, published):
    # §5 examples; with eps = 1e-6 they hold to 2 dp.
    for era in ("B", "C"):
        assert round(F.occm([e], [d], era=era), 2) == published


@pytest.mark.parametrize(("e", "d"), [(1, 0), (2, 1), (3, 2), (4, 1)])
def test_occm_era_a_uses_eps_e_minus_6(e, d):
    expected = 100 * math.exp(-abs(d - e) / (math.exp(-6) + e))
    assert F.occm([e], [d], era="A") == pytest.approx(expected, abs=1e-12)
    # Era A's larger eps moves the E=1,D=0 value from 36.79 to 36.88: the eras must not be mixed up.
    assert round(F.occm([1], [0], era="A"), 2) == 36.88


def test_occm_zero_expected_per_era():
    # E = 0: included as 100 in A/B, skipped in C.
    assert F.occm([0, 1], [0, 0], era="A") == pytest.approx((100 + 100 * math.exp(-1 / (1 + math.exp(-6)))) / 2)
    assert F.occm([0, 1], [3, 0], era="B") == pytest.approx(round((100 + 100 * math.exp(-1 / (1 + 1e-6))) / 2, 4))
    assert F.occm([0, 1], [3, 0], era="C") == pytest.approx(round(100 * math.exp(-1 / (1 + 1e-6)), 4))
    assert math.isnan(F.occm([0], [2], era="C"))


def test_occm_bad_input():
    with pytest.raises(ValueError, match="era"):
        F.occm([1], [1], era="D")
    with pytest.raises(ValueError, match="one entry per shot"):
        F.occm([1, 2], [1], era="A")
    with pytest.raises(ValueError, match=">= 0"):
        F.occm([1], [-1], era="A")


# ---------------------------------------------------------------- Alignment (§6.3)


def test_alignment_uno_published():
    # UNO full (Era A): sub-scores published to 3 dp; the published Alignment is 70.430. Rounding each sub-score to
    # 3 dp moves the result by at most 25 * 0.0005 = 0.0125.
    value = F.alignment(3.47, 3.062, 2.617, 2.121)
    assert value == pytest.approx(25 * (3.47 + 3.062 + 2.617 + 2.121) / 4)
    assert abs(value - 70.430) <= 0.0125


@pytest.mark.parametrize(
    ("subs", "published"),
    [
        ((3.111, 2.941, 1.835, 1.67), 59.724),
        ((1.878, 3.266, 2.411, 2.23), 61.151),
        ((2.673, 1.645, 0.874, 0.875), 37.923),
        ((3.456, 2.985, 3.233, 2.496), 76.061),
    ],
)
def test_alignment_other_published_rows(subs, published):
    assert abs(F.alignment(*subs) - published) <= 0.0125


def test_alignment_rejects_out_of_range():
    with pytest.raises(ValueError, match="camera"):
        F.alignment(3.0, 4.5, 2.0, 1.0)


def test_single_action_per_era():
    shots = [[3, 2], [], [4], None]
    # Era A: sum / (n + e^-6), None treated as no match; story = mean (4 dp).
    eps = math.exp(-6)
    a = [5 / (2 + eps), 0.0, 4 / (1 + eps), 0.0]
    assert F.single_action_story(shots, "A") == round(sum(a) / 4, 4)
    # Era B: banker's rounding per shot (round(2.5) = 2), then per story.
    assert F.single_action_story(shots, "B") == float(round((2 + 0 + 4 + 0) / 4))
    # Era C: None shots dropped.
    assert F.single_action_story(shots, "C") == float(round((2 + 0 + 4) / 3))
    assert F.single_action_story([[1, 2]], "B") == 2.0  # round(1.5) = 2 (banker's: to even)
    assert F.single_action_story([[2, 3]], "B") == 2.0  # round(2.5) = 2


# ---------------------------------------------------------------- Inception Score (§8)


def _is_scipy(probs: np.ndarray) -> float:
    p_mean = probs.mean(axis=0)
    return float(np.exp(np.mean([scipy.stats.entropy(p, p_mean) for p in probs])))


def _logits() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(37, 1000, dtype=torch.float64) * 3


def test_inception_score_equals_scipy_and_torchmetrics_formula():
    logits = _logits()
    probs = torch.softmax(logits, dim=1)
    ours = F.inception_score(logits)
    assert ours == pytest.approx(_is_scipy(probs.numpy()), rel=1e-10)
    # torchmetrics.image.inception.InceptionScore.compute, splits=1, written out on the same probabilities.
    log_prob = torch.log_softmax(logits, dim=1)
    kl = (probs * (log_prob - probs.mean(dim=0, keepdim=True).log())).sum(dim=1).mean().exp()
    assert ours == pytest.approx(float(kl), rel=1e-10)
    assert F.inception_score_from_probs(probs) == pytest.approx(ours, rel=1e-12)


@pytest.mark.slow  # importing torchmetrics.image.inception takes ~20 s on a loaded machine
def test_inception_score_equals_torchmetrics_class():
    logits = _logits()
    ours = F.inception_score(logits)

    from torchmetrics.image.inception import InceptionScore

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = InceptionScore(feature=Identity(), splits=1)
        tm.update(logits)
        tm_mean, _ = tm.compute()
    assert ours == pytest.approx(float(tm_mean), rel=1e-10)


def test_inception_score_known_extremes():
    # N one-hot predictions on N distinct classes → IS = N; identical predictions → IS = 1.
    assert F.inception_score_from_probs(torch.eye(5, dtype=torch.float64)) == pytest.approx(5.0)
    assert F.inception_score(torch.randn(1, 10).repeat(4, 1)) == pytest.approx(1.0)


# ---------------------------------------------------------------- CSD (§3)


def test_csd_self_and_cross_hand_built():
    s = math.sqrt(0.5)
    e = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])
    # pairs: (0,1)=s, (0,2)=0, (1,2)=s
    assert F.csd_self(e) == pytest.approx(2 * s / 3)
    assert F.csd_self(e[:1]) == 0.0
    ref = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert F.csd_cross(ref, e) == pytest.approx((1 + s + 1) / 3)
    assert math.isnan(F.csd_cross(torch.zeros(0, 2), torch.zeros(0, 2)))


def test_csd_cross_era_c_mean_reference_is_mean_of_cosines():
    torch.manual_seed(1)
    refs = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    gen = torch.nn.functional.normalize(torch.randn(1, 8), dim=1)
    mean_cos = float((refs @ gen.T).mean())
    assert F.csd_cross(refs.mean(dim=0, keepdim=True), gen) == pytest.approx(mean_cos, abs=1e-6)


# ---------------------------------------------------------------- CIDS (§4.4)


def test_cids_hand_built():
    s = math.sqrt(0.5)
    gen = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    self_, cross = F.cids(gen, ref, decimals=None)
    assert self_ == pytest.approx(2 * s / 3)  # upper triangle mean
    assert cross == pytest.approx((1 + 0 + s + s + 0 + 1) / 6)  # full G x R mean, not max
    assert F.cids(gen, ref) == (round(2 * s / 3, 4), round((2 + 2 * s) / 6, 4))
    assert F.cids(gen[:1], ref) == (1.0, 0.5)  # one crop → self 1.0
    assert F.cids(torch.zeros(0, 2), ref) == (0.0, 0.0)  # never matched → 0, 0


def test_cids_face_ensemble_matches_backbone_identity_similarity():
    torch.manual_seed(2)
    unit = lambda n: torch.nn.functional.normalize(torch.randn(n, 4), dim=1)  # noqa: E731
    a_arc, a_ada, b_arc, b_ada = unit(2), unit(2), unit(3), unit(3)
    a_valid_ada = torch.tensor([True, False])
    feats_a = IdentityFeatures(
        {"arcface": a_arc, "adaface": a_ada * a_valid_ada[:, None]},
        {"arcface": torch.ones(2, dtype=torch.bool), "adaface": a_valid_ada},
    )
    feats_b = IdentityFeatures(
        {"arcface": b_arc, "adaface": b_ada},
        {"arcface": torch.ones(3, dtype=torch.bool), "adaface": torch.ones(3, dtype=torch.bool)},
    )
    dict_a = [{"arcface": a_arc[0], "adaface": a_ada[0]}, {"arcface": a_arc[1]}]
    dict_b = [{"arcface": b_arc[j], "adaface": b_ada[j]} for j in range(3)]
    ours = F.ensemble_similarity(dict_a, dict_b)
    # Independent: row 0 averages both models, row 1 uses ArcFace only.
    expected = torch.stack([((a_arc[0] @ b_arc.T) + (a_ada[0] @ b_ada.T)) / 2, a_arc[1] @ b_arc.T]).double()
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(ours.float(), identity_similarity(feats_a, feats_b), atol=1e-6)
    assert F.ensemble_similarity([{}], dict_b).abs().sum() == 0


# ---------------------------------------------------------------- matching (§4.3)


def test_greedy_and_hungarian_differ_on_constructed_case():
    # Character 0 prefers box 0 (0.9), character 1 also prefers box 0 (0.85) but loses it, and its only other box is
    # dominated by character 0 (0.8 > 0.1) → greedy leaves character 1 missing. Hungarian maximises the total
    # (0.8 + 0.85 = 1.65 > 0.9 + 0.1 = 1.0) and matches both.
    sim = torch.tensor([[0.9, 0.8], [0.85, 0.1]])
    assert F.greedy_match(sim) == [0, None]
    assert F.hungarian_match(sim) == [1, 0]
    # Brute force over all assignments for the Hungarian optimum.
    best = max(((0, 1), (1, 0)), key=lambda p: float(sim[0, p[0]] + sim[1, p[1]]))
    assert tuple(F.hungarian_match(sim)) == best


def test_greedy_tie_lets_two_characters_share_a_box():
    assert F.greedy_match(torch.tensor([[0.5, 0.1], [0.5, 0.2]])) == [0, 0]


def test_matchers_respect_invalid_entries():
    sim = torch.tensor([[0.9, 0.2], [0.3, 0.4]])
    valid = torch.tensor([[False, True], [True, True]])
    assert F.greedy_match(sim, valid) == [None, 1]  # box 1: char 1 has 0.4 > 0.2
    assert F.hungarian_match(sim, valid) == [1, 0]
    none_valid = torch.zeros(2, 2, dtype=torch.bool)
    assert F.hungarian_match(sim, none_valid) == [None, None]
    assert F.greedy_match(torch.zeros(2, 0)) == [None, None]
    assert F.hungarian_match(torch.zeros(0, 3)) == []


def test_top_boxes():
    assert F.top_boxes(torch.tensor([0.3, 0.9, 0.5]), 2) == [1, 2]
    assert F.top_boxes(torch.tensor([0.3]), 5) == [0]


# ---------------------------------------------------------------- copy-paste (§4.5)


def test_copy_paste_hand_built():
    gr = torch.tensor([[0.9, 0.5, 0.7], [0.6, 0.6, 0.3]], dtype=torch.float64)
    expected = np.mean([0.9 - 0.5, 0.9 - 0.7, 0.0, 0.6 - 0.3])
    assert F.copy_paste(gr) == pytest.approx(expected)
    assert F.copy_paste(gr[:, :1]) is None
    p, m = torch.tensor([0.9, 0.5]), torch.tensor([0.89, 0.5])
    expected_c = np.mean([1 / (1 + math.exp((0.89 - 0.9) / 0.01)), 0.5])
    assert F.copy_paste_mirror(p, m) == pytest.approx(expected_c, abs=1e-6)


# ---------------------------------------------------------------- aggregation


def test_era_a_pooled_vs_era_bc_per_story():
    per_story = {"01": [0.9, 0.1, 0.2], "02": [0.6]}
    assert F.aggregate_cids(per_story, "A") == pytest.approx((0.9 + 0.1 + 0.2 + 0.6) / 4)
    assert F.aggregate_cids(per_story, "B") == pytest.approx(((0.9 + 0.1 + 0.2) / 3 + 0.6) / 2)
    assert F.aggregate_cids(per_story, "C") == F.aggregate_cids(per_story, "B")
    assert F.aggregate_cids(per_story, "A") != pytest.approx(F.aggregate_cids(per_story, "B"))


def test_mean_over_stories_skips_nan_and_aesthetics():
    assert F.mean_over_stories({"a": 1.0, "b": float("nan"), "c": 3.0}) == 2.0
    assert F.aesthetics(torch.tensor([4.0, 5.0, 6.5])) == pytest.approx(5.1666666, abs=1e-6)
    assert math.isnan(F.aesthetics([]))
