"""Metric classes: shared tester (accumulation, batches, reset, pickling, state merging) against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from bench import functional as F
from bench.metrics import CIDS, OCCM, Aesthetics, CSDCross, CSDSelf, InceptionScore, PromptAlignment
from tests.bench._tester import check_metric


def unit(n: int, d: int = 8) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)


def mean(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def test_csd_self():
    stories = [(unit(n),) for n in (3, 1, 5, 2, 4)]

    # Independent reference: explicit double loop over pairs.
    def ref(batch):
        vals = []
        for (e,) in batch:
            pairs = [float(e[i] @ e[j]) for i in range(len(e)) for j in range(i + 1, len(e))]
            vals.append(sum(pairs) / len(pairs) if pairs else 0.0)
        return mean(vals)

    check_metric(CSDSelf, stories, ref)
    check_metric(CSDSelf, stories, lambda b: mean([F.csd_self(*a) for a in b]))


def test_csd_cross():
    stories = [(unit(n), unit(n)) for n in (3, 2, 4, 1, 0)]

    def ref(b):
        return mean([float(np.mean([float(r[i] @ g[i]) for i in range(len(r))])) if len(r) else math.nan for r, g in b])

    check_metric(CSDCross, stories, ref)


@pytest.mark.parametrize("era", ["A", "B", "C"])
def test_cids(era):
    stories = []
    for n_chars in (2, 1, 3, 2, 1):
        gen = [unit(int(g)) for g in torch.randint(0, 4, (n_chars,))]
        refs = [unit(int(r)) for r in torch.randint(1, 3, (n_chars,))]
        stories.append((gen, refs))

    def ref(batch):
        per_story = {str(i): [F.cids(g, r) for g, r in zip(*args)] for i, args in enumerate(batch)}
        return {
            "self": F.aggregate_cids({k: [s for s, _ in v] for k, v in per_story.items()}, era),
            "cross": F.aggregate_cids({k: [c for _, c in v] for k, v in per_story.items()}, era),
        }

    check_metric(lambda: CIDS(era=era), stories, ref)


def test_cids_era_a_pooled_differs_from_b():
    a, b = CIDS(era="A"), CIDS(era="B")
    one = unit(1)
    for m in (a, b):
        m.update([one, one, torch.zeros(0, 8)], [one, one, one])  # three characters: cross 1, 1, 0
        m.update([one], [one])  # one character: cross 1
    assert float(a.compute()["cross"]) == pytest.approx(3 / 4)
    assert float(b.compute()["cross"]) == pytest.approx((2 / 3 + 1) / 2)


@pytest.mark.parametrize("era", ["A", "B", "C"])
def test_occm(era):
    stories = [([1, 2, 0], [1, 1, 0]), ([3, 1], [2, 0]), ([2], [2]), ([0, 1, 1], [0, 1, 0]), ([1], [3])]
    eps = math.exp(-6) if era == "A" else 1e-6

    def story(e, d):
        vals = [
            100.0 if ei == 0 else 100 * math.exp(-abs(di - ei) / (eps + ei))
            for ei, di in zip(e, d)
            if not (era == "C" and ei == 0)
        ]
        v = sum(vals) / len(vals)
        return v if era == "A" else round(v, 4)

    check_metric(lambda: OCCM(era=era), stories, lambda b: mean([story(*a) for a in b]))


@pytest.mark.parametrize("era", ["A", "B", "C"])
def test_prompt_alignment(era):
    rng = np.random.default_rng(0)
    stories = []
    for n in (3, 2, 4, 1, 2):

        def s(n=n):
            return [int(x) for x in rng.integers(0, 5, n)]

        single = [[int(x) for x in rng.integers(0, 5, rng.integers(0, 3))] for _ in range(n)]
        single[0] = None if era == "C" else single[0]
        stories.append((s(), s(), s(), single))

    def ref(batch):
        out = {
            "scene": mean([float(np.mean(a[0])) for a in batch]),
            "camera": mean([float(np.mean(a[1])) for a in batch]),
            "global_action": mean([float(np.mean(a[2])) for a in batch]),
            "single_action": mean([F.single_action_story(a[3], era) for a in batch]),
        }
        out["alignment"] = 25 * sum(out.values()) / 4
        return out

    check_metric(lambda: PromptAlignment(era=era), stories, ref)


def test_inception_score():
    stories = [(torch.randn(n, 20, dtype=torch.float64) * 2,) for n in (3, 5, 2, 4)]

    def ref(batch):
        logits = torch.cat([a[0] for a in batch])
        p = torch.softmax(logits, dim=1).numpy()
        return float(np.exp(np.mean([scipy.stats.entropy(pi, p.mean(axis=0)) for pi in p])))

    check_metric(InceptionScore, stories, ref)


def test_aesthetics():
    stories = [(torch.rand(n) * 9 + 1,) for n in (3, 1, 4, 2)]
    check_metric(Aesthetics, stories, lambda b: mean([float(a[0].double().mean()) for a in b]))


def test_metric_bad_input():
    with pytest.raises(ValueError, match="era"):
        OCCM(era="Z")
    with pytest.raises(ValueError, match="same characters"):
        CIDS().update([unit(1)], [])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        InceptionScore().update(torch.zeros(3))
