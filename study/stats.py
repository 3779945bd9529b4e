"""User-study statistics: GSB, rank aggregation, agreement and Bradley–Terry, each with its formula stated.

Pure functions over plain arrays (numpy, scipy, `krippendorff`); no database, no Streamlit, no torch, so every
number can be checked on its own against a hand-computed case (tests/study/test_stats.py).

Conventions (peers-and-practice §3):

- GSB **net** score ``(G − B) / (G + S + B)`` in [−1, 1] and the **ratio** form ``(G + S) / (S + B)`` (>1 means
  better) are both reported, always next to the raw counts, and never read as "x % improvement".
- Confidence intervals are percentile bootstraps that resample *items* (stories), the unit that varies;
  answers of one item move together.
- Ranks are 1 = best. Bradley–Terry scores are natural-log strengths centred at mean 0; `elo` rescales them
  to the familiar Elo scale (400 points per factor 10 in odds, centred at 1000). Ties count as half a win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

AlphaLevel = Literal["nominal", "ordinal", "interval", "ratio"]

ELO_SCALE = 400.0 / math.log(10.0)
ELO_CENTER = 1000.0


# ---------------------------------------------------------------------------------------------------- GSB
def gsb_counts(answers: Sequence[str]) -> tuple[int, int, int]:
    """(G, S, B) counts of a sequence of "G"/"S"/"B" answers.

    Raises:
        ValueError: an answer is not G, S or B.
    """
    bad_values = [a for a in answers if a not in ("G", "S", "B")]
    if bad_values:
        raise ValueError(f"gsb answers must be G, S or B; got {bad_values[:3]}")
    return sum(a == "G" for a in answers), sum(a == "S" for a in answers), sum(a == "B" for a in answers)


def gsb_net(good: float, same: float, bad: float) -> float:
    """Net GSB score (G − B) / (G + S + B); NaN when there are no answers."""
    n = good + same + bad
    return (good - bad) / n if n > 0 else math.nan


def gsb_ratio(good: float, same: float, bad: float) -> float:
    """Ratio GSB score (G + S) / (S + B); +inf when S + B = 0 < G, NaN when there are no answers."""
    den = same + bad
    if den > 0:
        return (good + same) / den
    return math.inf if good > 0 else math.nan


@dataclass(frozen=True)
class GSBResult:
    """GSB of one test method against the reference on one criterion.

    ``net_ci`` / ``ratio_ci`` are percentile bootstrap intervals over items at level ``confidence``.
    """

    good: int
    same: int
    bad: int
    n_items: int
    net: float
    ratio: float
    win_rate: float
    tie_rate: float
    net_ci: tuple[float, float]
    ratio_ci: tuple[float, float]
    confidence: float

    @property
    def n(self) -> int:
        return self.good + self.same + self.bad


def gsb_summary(
    answers_by_item: Sequence[Sequence[str]], *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> GSBResult:
    """GSB counts, net and ratio scores, win rate G/(G+B), tie rate S/N, and bootstrap CIs over items.

    Args:
        answers_by_item: per item (story), the G/S/B answers of all raters for the test method vs the reference.
        n_boot: bootstrap resamples (0 disables the CIs, which are then NaN).
        seed: seed of the resampling.
        confidence: two-sided interval level.
    """
    per_item = np.array([gsb_counts(list(a)) for a in answers_by_item], dtype=np.float64).reshape(-1, 3)  # (I, 3)
    g, s, b = (int(x) for x in per_item.sum(axis=0))
    n = g + s + b
    net_ci = ratio_ci = (math.nan, math.nan)
    if n_boot > 0 and len(per_item) > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(per_item), size=(n_boot, len(per_item)))
        boot = per_item[idx].sum(axis=1)  # (n_boot, 3)
        bg, bs, bb = boot[:, 0], boot[:, 1], boot[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            nets = (bg - bb) / (bg + bs + bb)
            ratios = np.where(bs + bb > 0, (bg + bs) / (bs + bb), np.where(bg > 0, np.inf, np.nan))
        net_ci = _percentile_ci(nets, confidence)
        ratio_ci = _percentile_ci(ratios, confidence)
    return GSBResult(
        good=g,
        same=s,
        bad=b,
        n_items=len(per_item),
        net=gsb_net(g, s, b),
        ratio=gsb_ratio(g, s, b),
        win_rate=g / (g + b) if g + b > 0 else math.nan,
        tie_rate=s / n if n > 0 else math.nan,
        net_ci=net_ci,
        ratio_ci=ratio_ci,
        confidence=confidence,
    )


def _percentile_ci(values: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    # inverted_cdf picks observed values (no interpolation), so an infinite ratio cannot turn into inf - inf
    lo, hi = np.quantile(v, [alpha, 1.0 - alpha], method="inverted_cdf")
    return (float(lo), float(hi))


# ---------------------------------------------------------------------------------------------------- ranks
def ranks_from_orderings(orderings: Sequence[Sequence[str]], methods: Sequence[str]) -> NDArray[np.float64]:
    """Rank matrix (n_orderings, k) from best→worst orderings: entry [b, j] is the rank (1 = best) of ``methods[j]``.

    Raises:
        ValueError: an ordering is not a permutation of ``methods``.
    """
    index = {m: j for j, m in enumerate(methods)}
    out = np.empty((len(orderings), len(methods)), dtype=np.float64)
    for b, order in enumerate(orderings):
        if sorted(order) != sorted(methods):
            raise ValueError(f"ordering {list(order)} is not a permutation of {list(methods)}")
        for r, m in enumerate(order):
            out[b, index[m]] = r + 1
    return out


@dataclass(frozen=True)
class RankSummary:
    """Average rank (lower = better), its standard deviation, first-place share, and the Friedman test.

    ``friedman_stat``/``friedman_p`` are NaN when fewer than 3 methods or 2 rankings (scipy's test needs both).
    """

    methods: tuple[str, ...]
    mean_rank: tuple[float, ...]
    sd_rank: tuple[float, ...]
    first_share: tuple[float, ...]
    n_rankings: int
    friedman_stat: float
    friedman_p: float


def rank_summary(ranks: ArrayLike, methods: Sequence[str]) -> RankSummary:
    """Summarise a rank matrix (n_rankings, k) (see `ranks_from_orderings`); each row is one Friedman block."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != len(methods):
        raise ValueError(f"ranks must have shape (n, {len(methods)}), got {r.shape}")
    n, k = r.shape
    stat = p = math.nan
    if k >= 3 and n >= 2:
        res = sps.friedmanchisquare(*(r[:, j] for j in range(k)))
        stat, p = float(res.statistic), float(res.pvalue)
    return RankSummary(
        methods=tuple(methods),
        mean_rank=tuple(float(x) for x in (r.mean(axis=0) if n else np.full(k, math.nan))),
        sd_rank=tuple(float(x) for x in (r.std(axis=0, ddof=1) if n > 1 else np.full(k, math.nan))),
        first_share=tuple(float(x) for x in ((r == 1).mean(axis=0) if n else np.full(k, math.nan))),
        n_rankings=n,
        friedman_stat=stat,
        friedman_p=p,
    )


def kendalls_w(ranks: ArrayLike, *, tie_correction: bool = True) -> float:
    """Kendall's coefficient of concordance W of m judges ranking n objects.

    ``W = 12 S / (m² (n³ − n) − m Σ_j T_j)`` with ``S = Σ_i (R_i − R̄)²`` over the objects' rank sums and, for the
    tie correction, ``T_j = Σ_groups (t³ − t)`` over the groups of tied ranks of judge j. Each row is re-ranked with
    average ranks, so raw scores are accepted too.

    Args:
        ranks: (m judges, n objects); rows with NaN are not allowed.
        tie_correction: subtract the tie term (without ties the two forms agree).

    Returns:
        W in [0, 1]; NaN when it is undefined (m < 2, n < 2, or every judge ties everything).
    """
    x = np.asarray(ranks, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"ranks must be 2-D (judges, objects), got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("ranks contain NaN; Kendall's W needs complete rankings")
    m, n = x.shape
    if m < 2 or n < 2:
        return math.nan
    r = np.vstack([sps.rankdata(row) for row in x])  # (m, n) average ranks
    rank_sums = r.sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    ties = 0.0
    if tie_correction:
        for row in r:
            _, counts = np.unique(row, return_counts=True)
            ties += float((counts**3 - counts).sum())
    denom = m**2 * (n**3 - n) - m * ties
    return 12.0 * s / denom if denom > 0 else math.nan


def krippendorff_alpha(reliability_data: ArrayLike, level: AlphaLevel = "ordinal") -> float:
    """Krippendorff's alpha for (raters, units) data with NaN for missing ratings (the `krippendorff` package).

    Args:
        reliability_data: (n_raters, n_units); values are the codes (e.g. B=0 < S=1 < G=2, or ranks).
        level: "nominal", "ordinal", "interval" or "ratio".

    Returns:
        alpha; NaN when it is undefined (fewer than two pairable values, or a single value in the data).
    """
    import krippendorff

    x = np.asarray(reliability_data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"reliability_data must be 2-D (raters, units), got shape {x.shape}")
    pairable = (~np.isnan(x)).sum(axis=0) >= 2
    values = x[:, pairable]
    if not pairable.any() or np.unique(values[~np.isnan(values)]).size < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=x, level_of_measurement=level))


# ---------------------------------------------------------------------------------------------------- Bradley–Terry
def win_matrix(comparisons: Sequence[tuple[int, int, float]], k: int) -> NDArray[np.float64]:
    """(k, k) matrix W with W[i, j] = wins of i over j from (i, j, outcome) triples, outcome 1 (i wins), 0.5, 0."""
    w = np.zeros((k, k), dtype=np.float64)
    for i, j, o in comparisons:
        if i == j:
            continue
        w[i, j] += o
        w[j, i] += 1.0 - o
    return w


def comparisons_from_orderings(
    orderings: Sequence[Sequence[str]], methods: Sequence[str]
) -> list[tuple[int, int, float]]:
    """Expand each best→worst ordering of k methods into its k(k−1)/2 pairwise wins (winner, loser, 1.0)."""
    index = {m: j for j, m in enumerate(methods)}
    out = []
    for order in orderings:
        for a in range(len(order)):
            for b in range(a + 1, len(order)):
                out.append((index[order[a]], index[order[b]], 1.0))
    return out


def comparisons_from_gsb(answers: Sequence[str], test: int, reference: int) -> list[tuple[int, int, float]]:
    """G → test beats reference, B → reference beats test, S → a tie (half a win each)."""
    outcome = {"G": 1.0, "S": 0.5, "B": 0.0}
    return [(test, reference, outcome[a]) for a in answers]


def bradley_terry(
    wins: ArrayLike, *, prior: float = 0.0, max_iter: int = 10_000, tol: float = 1e-10
) -> NDArray[np.float64]:
    """Maximum-likelihood Bradley–Terry log-strengths from a win matrix, by Hunter's (2004) MM algorithm.

    ``P(i beats j) = exp(s_i) / (exp(s_i) + exp(s_j))``. The MM update ``p_i ← W_i / Σ_j N_ij / (p_i + p_j)``
    (``W_i`` total wins of i, ``N_ij`` comparisons of i and j) increases the likelihood at every step.

    Args:
        wins: (k, k) with ``wins[i, j]`` = (possibly fractional) wins of i over j.
        prior: pseudo-comparisons added to every pair as ties (``prior/2`` wins each way); > 0 keeps the
            estimate finite when a method wins or loses everything or the comparison graph is disconnected.
        max_iter: iteration cap.
        tol: stop when the largest change of a log-strength is below this.

    Returns:
        (k,) log-strengths with mean 0.

    Raises:
        ValueError: the MLE does not exist (some method has no wins or no losses) and ``prior`` is 0.
    """
    w = np.asarray(wins, dtype=np.float64).copy()
    k = w.shape[0]
    if w.shape != (k, k):
        raise ValueError(f"wins must be square, got {w.shape}")
    if prior > 0:
        w += (prior / 2.0) * (1.0 - np.eye(k))
    np.fill_diagonal(w, 0.0)
    n = w + w.T  # comparisons per pair
    total_wins = w.sum(axis=1)
    if prior == 0 and ((total_wins <= 0).any() or (w.sum(axis=0) <= 0).any()):
        raise ValueError("Bradley-Terry MLE does not exist: a method never wins or never loses (use prior > 0)")
    p = np.ones(k)
    for _ in range(max_iter):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = total_wins / denom
        new /= np.exp(np.log(new).mean())
        delta = np.abs(np.log(new) - np.log(p)).max()
        p = new
        if delta < tol:
            break
    s = np.log(p)
    return s - s.mean()


@dataclass(frozen=True)
class BTResult:
    """Bradley–Terry scores with percentile bootstrap CIs over items (log-strength and Elo scale)."""

    methods: tuple[str, ...]
    scores: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    n_comparisons: float
    confidence: float

    @property
    def elo(self) -> tuple[float, ...]:
        return tuple(to_elo(s) for s in self.scores)

    @property
    def elo_ci(self) -> tuple[tuple[float, float], ...]:
        return tuple((to_elo(lo), to_elo(hi)) for lo, hi in zip(self.ci_low, self.ci_high))


def to_elo(score: float) -> float:
    """Natural-log BT strength → Elo-like rating (400 per factor 10 of odds, 1000 = average)."""
    return ELO_CENTER + ELO_SCALE * score


def bradley_terry_ci(
    comparisons_by_item: Sequence[Sequence[tuple[int, int, float]]],
    methods: Sequence[str],
    *,
    prior: float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> BTResult:
    """Fit BT on all comparisons and bootstrap items (each item's comparisons move together) for CIs.

    Args:
        comparisons_by_item: per item, its (i, j, outcome) triples (see `comparisons_from_orderings`/`_gsb`).
        methods: names of the indices.
        prior: see `bradley_terry` (default 0.5 pseudo-tie per pair, negligible against real studies' counts).
        n_boot: bootstrap resamples (0 → NaN CIs).
        seed: resampling seed.
        confidence: interval level.
    """
    k = len(methods)
    per_item = np.stack([win_matrix(c, k) for c in comparisons_by_item]) if comparisons_by_item else np.zeros((0, k, k))
    total = per_item.sum(axis=0) if len(per_item) else np.zeros((k, k))
    scores = bradley_terry(total, prior=prior)
    lo = hi = np.full(k, math.nan)
    if n_boot > 0 and len(per_item) > 0:
        rng = np.random.default_rng(seed)
        boot = np.empty((n_boot, k))
        for b in range(n_boot):
            idx = rng.integers(0, len(per_item), size=len(per_item))
            boot[b] = bradley_terry(per_item[idx].sum(axis=0), prior=prior)
        alpha = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(boot, alpha, axis=0), np.quantile(boot, 1.0 - alpha, axis=0)
    return BTResult(
        methods=tuple(methods),
        scores=tuple(float(x) for x in scores),
        ci_low=tuple(float(x) for x in lo),
        ci_high=tuple(float(x) for x in hi),
        n_comparisons=float(total.sum()),
        confidence=confidence,
    )
