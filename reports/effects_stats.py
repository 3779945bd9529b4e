"""Statistics of arm-vs-reference effects over training seeds and stories, and of positive controls (numpy only).

Data of one arm is ``x[m, k, s]``: metric ``m``, training seed ``k``, story ``s`` (NaN = undefined, skipped). The
effect of an arm on a metric is ``delta = mean(arm) − mean(reference)`` over all its (seed, story) cells.

Why two levels of resampling. A training seed changes the whole model, so every story scored from one checkpoint
shares that seed's luck: the stories of one run are not independent replicates of the arm, the seeds are. Issue 11
measured it: retraining the same arm with another seed moved held-out continuation CE by +0.061 nats/byte while a
bootstrap over the stories of one run put its CI at ±0.01, so a story-only bootstrap calls seed noise an effect.
The resampling unit is therefore the seed (within each arm: the arms are trained separately) and, inside it, the
story; the story draw is the *same* for both arms (both score the same stories, so per-story difficulty cancels —
the comparison is paired), and seed ``k`` of the arm is paired with seed ``k`` of the reference (same position in
ascending seed order: same data order and initial RNG where the configs allow it). When the arms have different
seed counts each arm's seed draw is still an ordinary resample of its own seeds, coupled only through the shared
uniform numbers (:func:`seed_counts`).

Estimators of the interval and p-value, all from the same cells:

- ``"bootstrap"``: the hierarchical bootstrap as such — per resample draw the seeds of each arm with replacement,
  then the stories (paired), recompute ``delta``; 95 % percentile CI; two-sided p-value
  ``min(1, 2·min(1 + #{δ* ≤ 0}, 1 + #{δ* ≥ 0}) / (B + 1))`` (the +1 keeps p > 0 with finitely many resamples).
  With K = 3 seeds it is badly anti-conservative when seed noise dominates: the resampled seed level has only
  K − 1 = 2 degrees of freedom, its variance is shrunk by (K − 1)/K, its support is bounded by the seed range, and
  the reference is normal-like. Measured on simulated null worlds (3 seeds × 50 stories, seed sd 2, cell sd 1;
  ``tests/reports/test_effects.py``): it rejects at 0.05 for 26 % of metrics, and a null arm with 10 metrics has a
  Holm-significant one in 89 % of worlds.
- ``"welch"``: the same two variance components estimated without resampling: ``A`` (seed level: variance of the
  per-seed deltas / K when the arms are paired; else the sum over arms of the variances of the per-seed means / K)
  and ``B`` (story level: variance of the per-story deltas / S); ``SE² = A + B`` and a t reference with
  Welch–Satterthwaite degrees of freedom ``ν = (A + B)² / (A²/df_A + B²/df_B)``. The hierarchical bootstrap's own
  variance is ≈ (K − 1)/K·A + B (checked in the tests), so this is its variance with the shrinkage undone. ``A + B``
  counts the cell noise twice (conservative without seed noise). Calibrated at 0.05 per metric, but when A is
  estimated low from its 2 degrees of freedom ν comes out large, so the tails are too thin: at seed sd 1 a
  10-metric null arm is Holm-significant in 18 % of worlds.
- ``"twolevel"`` (the report's default): ``welch`` *and* the seed level alone — a paired t-test on the per-seed
  deltas (Welch's two-sample t on per-seed means when the seed counts differ), stories held fixed, K − 1 degrees
  of freedom — must both reject: p is the larger p, the interval spans both intervals. Each test covers the other's
  blind spot (the seed t ignores story sampling; Welch's ν can be fooled by a low seed-variance estimate). Measured
  null rates (2000 worlds × 10 metrics): per metric 0.010 / 0.042 / 0.051 and any-Holm 0.002 / 0.033 / 0.040 at
  seed sd 0 / 0.3 / 2. The price is power with few seeds: with K = 3 a Holm-significant effect needs a seed-level
  t_2 p below 0.05/m, i.e. per-seed deltas that agree to within a few percent of their mean. With one seed a side
  the seed level cannot be tested and ``welch`` over stories alone is reported (the summary says so).
- ``"story"``: the bootstrap over stories with the seeds kept, for contrast only (what issue 11 shows is wrong).

Positive controls (:func:`control_effect`): one set of ground-truth keyframes, clean vs corrupted, per story; the
story is the only unit, so a plain percentile bootstrap over stories of the mean paired difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["twolevel", "welch", "bootstrap", "story"]
METHODS: tuple[str, ...] = ("twolevel", "welch", "bootstrap", "story")
#: Resamples are processed in blocks of this many, so memory stays at M × block × S floats.
BLOCK = 1024


@dataclass
class EffectStats:
    """Per metric of one arm-vs-reference comparison (arrays of length M; NaN where undefined).

    Attributes:
        delta: mean(arm) − mean(reference) over the defined (seed, story) cells of the common stories.
        ci_low / ci_high: the interval at ``confidence``.
        p: two-sided p-value of delta = 0.
        se: standard error behind the interval (``welch``), or the standard deviation of the resampled deltas.
        df: the t reference's degrees of freedom (``welch``; NaN otherwise).
        n_stories: stories with a defined value in both arms.
    """

    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    se: np.ndarray
    df: np.ndarray
    n_stories: np.ndarray


##### resampling weights


def draw_story_counts(rng: np.random.Generator, n_resamples: int, n_stories: int) -> np.ndarray:
    """Per resample, how often each story is drawn (``[B, S]`` counts of S draws with replacement)."""
    idx = rng.integers(0, n_stories, size=(n_resamples, n_stories))
    return _counts(idx, n_stories)


def seed_counts(u: np.ndarray, n_seeds: int) -> np.ndarray:
    """Per resample, how often each of ``n_seeds`` seeds is drawn, from shared uniforms ``u`` (``[B, ≥K]``).

    Draw ``j`` takes seed ``floor(u[:, j]·K)``: with equal counts both arms draw the same seed positions (paired);
    with different counts each arm's draw is still uniform over its own seeds.
    """
    if u.shape[1] < n_seeds:
        raise ValueError(f"need uniforms for {n_seeds} seeds, got {u.shape[1]}")
    idx = np.minimum((u[:, :n_seeds] * n_seeds).astype(np.int64), n_seeds - 1)
    return _counts(idx, n_seeds)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def weighted_means(x: np.ndarray, seed_w: np.ndarray, story_w: np.ndarray) -> np.ndarray:
    """``Σ v_k w_s x_mks / Σ v_k w_s [x_mks defined]`` per metric and resample: ``[M, K, S] → [M, B]``."""
    defined = np.isfinite(x)
    x0 = np.where(defined, x, 0.0)
    # stories first: (M, K, S) @ (S, B) -> (M, K, B) is one BLAS call with a small output, then the seed weights
    m, k, s = x.shape
    wt = np.ascontiguousarray(story_w.T)  # (S, B)
    vt = seed_w.T[None]  # (1, K, B)
    num = ((x0.reshape(m * k, s) @ wt).reshape(m, k, -1) * vt).sum(axis=1)
    if defined.all():
        den = (seed_w.sum(axis=1) * story_w.sum(axis=1))[None, :]
    else:
        den = ((defined.reshape(m * k, s).astype(np.float64) @ wt).reshape(m, k, -1) * vt).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


##### intervals and p-values from resamples


def percentile_ci(deltas: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of resampled deltas ``[M, B]`` (NaN resamples ignored)."""
    a = (1.0 - confidence) / 2.0
    finite = np.isfinite(deltas).all(axis=-1)
    lo, hi = np.full(deltas.shape[:-1], np.nan), np.full(deltas.shape[:-1], np.nan)
    if finite.any():  # the common case, without nanquantile's per-row Python loop
        q = np.quantile(deltas[finite], [a, 1.0 - a], axis=-1)
        lo[finite], hi[finite] = q[0], q[1]
    if not finite.all():
        with np.errstate(invalid="ignore"), _quiet():
            q = np.nanquantile(deltas[~finite], [a, 1.0 - a], axis=-1)
        lo[~finite], hi[~finite] = q[0], q[1]
    return lo, hi


def bootstrap_p(deltas: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of 0 against resampled deltas ``[M, B]``, with the +1 correction."""
    ok = np.isfinite(deltas)
    n = ok.sum(axis=-1)
    below = 1 + ((deltas <= 0) & ok).sum(axis=-1)
    above = 1 + ((deltas >= 0) & ok).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, 2.0 * np.minimum(below, above) / (n + 1))
    return np.where(n > 0, p, np.nan)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN-slice RuntimeWarning (the NaN it returns is the answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


##### Holm


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and do not count towards the number of tests.

    ``p_holm_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))`` over the sorted defined p-values.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


##### arm vs reference


def _common(arm: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both arrays with stories not defined in both arms (per metric) set to NaN; and the story counts."""
    usable = np.isfinite(arm).any(axis=1) & np.isfinite(ref).any(axis=1)  # [M, S]
    a = np.where(usable[:, None, :], arm, np.nan)
    r = np.where(usable[:, None, :], ref, np.nan)
    return a, r, usable.sum(axis=1)


def _nanmean(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(x, axis=axis)


def _nanvar(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample variance (ddof 1) ignoring NaN, and the number of defined values."""
    n = np.isfinite(x).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        v = np.nanvar(x, axis=axis, ddof=1)
    return np.where(n >= 2, v, np.nan), n


def welch_components(arm: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seed-level ``A`` and story-level ``B`` variance components of delta, with their degrees of freedom.

    ``arm`` and ``ref`` are ``[M, K, S]`` on common stories. A is 0 (df NaN) when a side has a single seed: the
    seed noise cannot be estimated then, and the interval is over stories only.
    """
    ka, kr = arm.shape[1], ref.shape[1]
    per_seed_a = _nanmean(arm, axis=2)  # [M, Ka]
    per_seed_r = _nanmean(ref, axis=2)
    if ka == kr and ka >= 2:
        var_d, n_d = _nanvar(per_seed_a - per_seed_r, axis=1)
        A = var_d / n_d
        df_a = n_d - 1.0
    else:
        A = np.zeros(arm.shape[0])
        inv_df = np.zeros(arm.shape[0])
        for per_seed in (per_seed_a, per_seed_r):
            v, n = _nanvar(per_seed, axis=1)
            part = np.where(n >= 2, v / np.maximum(n, 1), 0.0)
            A = A + np.nan_to_num(part)
            inv_df = inv_df + np.where(n >= 2, np.nan_to_num(part) ** 2 / np.maximum(n - 1, 1), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            df_a = np.where(A > 0, A**2 / inv_df, np.nan)
    e = _nanmean(arm, axis=1) - _nanmean(ref, axis=1)  # [M, S]
    var_e, n_e = _nanvar(e, axis=1)
    B = var_e / n_e
    return np.nan_to_num(A), df_a, B, n_e - 1.0


def welch_effect(arm: np.ndarray, ref: np.ndarray, confidence: float = 0.95) -> EffectStats:
    """Delta with a Welch–Satterthwaite t interval and p-value from the seed and story components (module doc)."""
    from scipy import stats

    a, r, n_stories = _common(arm, ref)
    delta = _nanmean(a, axis=(1, 2)) - _nanmean(r, axis=(1, 2))
    A, df_a, B, df_b = welch_components(a, r)
    var = A + B
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(A > 0, A**2 / df_a, 0.0) + np.where(B > 0, B**2 / df_b, 0.0)
        df = np.where(inv > 0, var**2 / inv, np.inf)
        se = np.sqrt(var)
        t = np.abs(delta) / se
    q = stats.t.ppf(0.5 + confidence / 2.0, np.where(np.isfinite(df), df, 1e12))
    lo, hi = delta - q * se, delta + q * se
    p = 2.0 * stats.t.sf(t, np.where(np.isfinite(df), df, 1e12))
    exact = se == 0  # no variation at all: the difference is what it is
    p = np.where(exact, np.where(delta == 0, 1.0, 0.0), p)
    bad = ~np.isfinite(delta) | ~np.isfinite(var) | (n_stories < 2)
    nan = np.full(delta.shape, np.nan)
    return EffectStats(
        delta=delta,
        ci_low=np.where(bad, nan, lo),
        ci_high=np.where(bad, nan, hi),
        p=np.where(bad, nan, p),
        se=np.where(bad, nan, se),
        df=np.where(bad, nan, df),
        n_stories=n_stories,
    )


def seed_t_effect(arm: np.ndarray, ref: np.ndarray, confidence: float = 0.95) -> EffectStats:
    """The seed level alone: a paired t-test on the per-seed deltas (equal seed counts) or Welch's two-sample t on
    the per-seed means (different counts), stories held fixed. Undefined (NaN) with fewer than 2 seeds a side."""
    from scipy import stats

    a, r, n_stories = _common(arm, ref)
    delta = _nanmean(a, axis=(1, 2)) - _nanmean(r, axis=(1, 2))
    sa, sr = _nanmean(a, axis=2), _nanmean(r, axis=2)  # [M, K]
    if sa.shape[1] == sr.shape[1]:
        v, n = _nanvar(sa - sr, axis=1)
        var, df = v / n, n - 1.0
    else:
        va, na = _nanvar(sa, axis=1)
        vr, nr = _nanvar(sr, axis=1)
        var = va / na + vr / nr
        with np.errstate(invalid="ignore", divide="ignore"):
            df = var**2 / ((va / na) ** 2 / (na - 1) + (vr / nr) ** 2 / (nr - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(var)
        t = np.abs(delta) / se
    ok = np.isfinite(var) & np.isfinite(df) & (df > 0) & np.isfinite(delta)
    df_safe = np.where(ok, df, 1.0)
    q = stats.t.ppf(0.5 + confidence / 2.0, df_safe)
    p = np.where(se == 0, np.where(delta == 0, 1.0, 0.0), 2.0 * stats.t.sf(np.nan_to_num(t), df_safe))
    nan = np.full(delta.shape, np.nan)
    return EffectStats(
        delta=delta,
        ci_low=np.where(ok, delta - q * se, nan),
        ci_high=np.where(ok, delta + q * se, nan),
        p=np.where(ok, p, nan),
        se=np.where(ok, se, nan),
        df=np.where(ok, df, nan),
        n_stories=n_stories,
    )


def twolevel_effect(arm: np.ndarray, ref: np.ndarray, confidence: float = 0.95) -> EffectStats:
    """Both :func:`welch_effect` and :func:`seed_t_effect` must reject: p is the larger of the two, the interval
    spans both. Where a side has a single seed the seed-level test is undefined and Welch's (over stories) is used."""
    w = welch_effect(arm, ref, confidence)
    s = seed_t_effect(arm, ref, confidence)
    have = np.isfinite(s.p)
    return EffectStats(
        delta=w.delta,
        ci_low=np.where(have, np.fmin(w.ci_low, s.ci_low), w.ci_low),
        ci_high=np.where(have, np.fmax(w.ci_high, s.ci_high), w.ci_high),
        p=np.where(have, np.fmax(w.p, s.p), w.p),
        se=np.where(have, np.fmax(w.se, s.se), w.se),
        df=np.where(have, np.fmin(w.df, s.df), w.df),
        n_stories=w.n_stories,
    )


def bootstrap_deltas(
    arm: np.ndarray, ref: np.ndarray, u: np.ndarray, story_w: np.ndarray, resample_seeds: bool = True
) -> np.ndarray:
    """Resampled deltas ``[M, B]``: seeds of each arm drawn from ``u`` (or kept: story-only), stories by ``story_w``."""
    a, r, _ = _common(arm, ref)
    out = np.empty((arm.shape[0], story_w.shape[0]))
    for start in range(0, story_w.shape[0], BLOCK):
        sl = slice(start, start + BLOCK)
        w = story_w[sl]
        if resample_seeds:
            va, vr = seed_counts(u[sl], a.shape[1]), seed_counts(u[sl], r.shape[1])
        else:
            va, vr = np.ones((w.shape[0], a.shape[1])), np.ones((w.shape[0], r.shape[1]))
        out[:, sl] = weighted_means(a, va, w) - weighted_means(r, vr, w)
    return out


def bootstrap_effect(
    arm: np.ndarray,
    ref: np.ndarray,
    u: np.ndarray,
    story_w: np.ndarray,
    confidence: float = 0.95,
    resample_seeds: bool = True,
) -> EffectStats:
    """Delta with the (hierarchical, or story-only) bootstrap percentile interval and +1-corrected p-value."""
    a, r, n_stories = _common(arm, ref)
    delta = _nanmean(a, axis=(1, 2)) - _nanmean(r, axis=(1, 2))
    d = bootstrap_deltas(a, r, u, story_w, resample_seeds)
    lo, hi = percentile_ci(d, confidence)
    with _quiet():
        se = np.nanstd(d, axis=1)
    bad = ~np.isfinite(delta) | (n_stories < 2)
    nan = np.full(delta.shape, np.nan)
    return EffectStats(
        delta=delta,
        ci_low=np.where(bad, nan, lo),
        ci_high=np.where(bad, nan, hi),
        p=np.where(bad, nan, bootstrap_p(d)),
        se=np.where(bad, nan, se),
        df=nan.copy(),
        n_stories=n_stories,
    )


def estimate_effect(
    arm: np.ndarray,
    ref: np.ndarray,
    method: str,
    u: np.ndarray,
    story_w: np.ndarray,
    confidence: float = 0.95,
) -> EffectStats:
    """Dispatch on ``method``: ``twolevel``, ``welch``, ``bootstrap``, or ``story`` (story-only bootstrap, for contrast)."""
    if arm.ndim != 3 or ref.ndim != 3 or arm.shape[0] != ref.shape[0] or arm.shape[2] != ref.shape[2]:
        raise ValueError(f"arm {arm.shape} and reference {ref.shape} must be [M, K, S] with the same M and S")
    if method == "twolevel":
        return twolevel_effect(arm, ref, confidence)
    if method == "welch":
        return welch_effect(arm, ref, confidence)
    if method == "bootstrap":
        return bootstrap_effect(arm, ref, u, story_w, confidence, resample_seeds=True)
    if method == "story":
        return bootstrap_effect(arm, ref, u, story_w, confidence, resample_seeds=False)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


##### positive controls


@dataclass
class ControlStats:
    """Mean corrupted − clean over stories with its story-bootstrap percentile interval."""

    delta: float
    ci_low: float
    ci_high: float
    n_stories: int


def control_effect(
    clean: np.ndarray, corrupted: np.ndarray, story_w: np.ndarray, confidence: float = 0.95
) -> ControlStats:
    """``story_w`` are ``[B, S]`` story counts for exactly these S stories (:func:`draw_story_counts`)."""
    diff = np.asarray(corrupted, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return ControlStats(math.nan, math.nan, math.nan, 0)
    delta = float(diff.mean())
    if n < 2:
        return ControlStats(delta, math.nan, math.nan, n)
    if story_w.shape[1] != n:
        raise ValueError(f"story weights cover {story_w.shape[1]} stories, the control has {n}")
    d = story_w @ diff / n
    lo, hi = percentile_ci(d[None, :], confidence)
    return ControlStats(delta, float(lo[0]), float(hi[0]), n)


def detected(direction: str, ci_low: float, ci_high: float) -> bool:
    """Whether the interval excludes 0 in the expected direction (``any``: either side)."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return False
    down, up = ci_high < 0, ci_low > 0
    if direction == "down":
        return bool(down)
    if direction == "up":
        return bool(up)
    if direction == "any":
        return bool(down or up)
    raise ValueError(f"expected direction must be down, up or any, got {direction!r}")
