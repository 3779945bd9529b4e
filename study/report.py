"""From stored answers to the study's statistics (calls `study.stats`; no database access here).

Per criterion:

- ``gsb`` criteria: GSB of every test method against the reference (counts, net, ratio, bootstrap CIs over
  stories), Krippendorff's alpha (ordinal, B < S < G; units = pair items, one column per rater), and Bradley–Terry
  over all pairs (ties as half wins).
- ``rank`` criteria: average rank, first-place share, Friedman test (each annotator's ranking of an item is a
  block), Kendall's W over all rankings (agreement on the method order) and the mean of the per-item W among an
  item's raters, Krippendorff's alpha (ordinal; units = (item, method), value = the rank), and Bradley–Terry with
  each ranking expanded into its pairwise wins.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from study import stats
from study.types import StudySpec

GSB_CODE = {"B": 0.0, "S": 1.0, "G": 2.0}


@dataclass(frozen=True)
class CriterionReport:
    """Statistics of one criterion; fields of the other kind are empty/None."""

    key: str
    label: str
    kind: str
    n_answers: int
    n_annotators: int
    n_items: int
    gsb: dict[str, stats.GSBResult] = field(default_factory=dict)
    ranks: stats.RankSummary | None = None
    kendall_w: float = math.nan
    kendall_w_items_mean: float = math.nan
    alpha: float = math.nan
    bt: stats.BTResult | None = None


@dataclass(frozen=True)
class StudyReport:
    """All criteria of a study, plus the annotator counts before and after exclusion."""

    study_name: str
    reference_method: str | None
    n_annotators_answering: int
    n_annotators_kept: int
    excluded_annotators: tuple[str, ...]
    criteria: tuple[CriterionReport, ...]

    def summary_frame(self) -> pd.DataFrame:
        """One row per (criterion, method): ranks, first share, GSB counts/scores/CIs, BT Elo with CI."""
        rows = []
        for c in self.criteria:
            methods: list[str] = list(c.bt.methods) if c.bt else []
            for m in methods:
                row: dict[str, object] = {"criterion": c.key, "kind": c.kind, "method": m}
                if c.ranks is not None:
                    j = c.ranks.methods.index(m)
                    row.update(
                        mean_rank=c.ranks.mean_rank[j], sd_rank=c.ranks.sd_rank[j], first_share=c.ranks.first_share[j]
                    )
                g = c.gsb.get(m)
                if g is not None:
                    row.update(
                        G=g.good,
                        S=g.same,
                        B=g.bad,
                        gsb_net=g.net,
                        gsb_net_lo=g.net_ci[0],
                        gsb_net_hi=g.net_ci[1],
                        gsb_ratio=g.ratio,
                        win_rate=g.win_rate,
                        tie_rate=g.tie_rate,
                    )
                if c.bt is not None:
                    j = c.bt.methods.index(m)
                    row.update(bt_elo=c.bt.elo[j], bt_elo_lo=c.bt.elo_ci[j][0], bt_elo_hi=c.bt.elo_ci[j][1])
                rows.append(row)
        return pd.DataFrame(rows)


def study_report(
    frame: pd.DataFrame, spec: StudySpec, *, n_boot: int = 1000, seed: int = 0, apply_exclusions: bool = True
) -> StudyReport:
    """Compute the `StudyReport` from an answers frame (`StudyStore.answers_frame`; catch rows are dropped)."""
    frame = frame[frame["catch_kind"].isna()]
    answering = frame["annotator"].unique().tolist()
    excluded = sorted(frame.loc[frame["excluded"], "annotator"].unique().tolist())
    if apply_exclusions:
        frame = frame[~frame["excluded"]]
    reports = []
    for c in spec.criteria:
        sub = frame[frame["criterion"] == c.key]
        if c.kind == "gsb":
            reports.append(_gsb_report(c.key, c.label, sub, spec, n_boot, seed))
        else:
            reports.append(_rank_report(c.key, c.label, sub, spec, n_boot, seed))
    return StudyReport(
        study_name=spec.name,
        reference_method=spec.reference_method,
        n_annotators_answering=len(answering),
        n_annotators_kept=len(answering) - (len(excluded) if apply_exclusions else 0),
        excluded_annotators=tuple(excluded),
        criteria=tuple(reports),
    )


def _gsb_report(key: str, label: str, sub: pd.DataFrame, spec: StudySpec, n_boot: int, seed: int) -> CriterionReport:
    ref = spec.reference_method
    assert ref is not None
    methods = list(spec.methods)
    results: dict[str, stats.GSBResult] = {}
    for m in methods:
        if m == ref:
            continue
        rows = sub[sub["test_method"] == m]
        by_story = [grp["gsb"].tolist() for _, grp in rows.groupby("story_id", sort=True)]
        results[m] = stats.gsb_summary(by_story, n_boot=n_boot, seed=seed)
    comps_by_story: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for r in sub.itertuples():
        comps_by_story[str(r.story_id)] += stats.comparisons_from_gsb(
            [str(r.gsb)], methods.index(str(r.test_method)), methods.index(ref)
        )
    bt = _bt(list(comps_by_story.values()), methods, n_boot, seed)
    alpha = _alpha(sub, unit_cols=["item_id"], value=sub["gsb"].map(GSB_CODE))
    return CriterionReport(
        key,
        label,
        "gsb",
        len(sub),
        sub["annotator_id"].nunique(),
        sub["item_id"].nunique(),
        gsb=results,
        alpha=alpha,
        bt=bt,
    )


def _rank_report(key: str, label: str, sub: pd.DataFrame, spec: StudySpec, n_boot: int, seed: int) -> CriterionReport:
    methods = list(spec.methods)
    orderings = [list(r) for r in sub["ranking"]]
    ranks = stats.ranks_from_orderings(orderings, methods) if orderings else np.zeros((0, len(methods)))
    summary = stats.rank_summary(ranks, methods)
    w_all = stats.kendalls_w(ranks) if len(ranks) >= 2 else math.nan
    per_item = []
    for _, grp in sub.groupby("item_id"):
        if len(grp) >= 2:
            per_item.append(stats.kendalls_w(stats.ranks_from_orderings([list(r) for r in grp["ranking"]], methods)))
    comps_by_story: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for r in sub.itertuples():
        comps_by_story[str(r.story_id)] += stats.comparisons_from_orderings([list(r.ranking)], methods)
    bt = _bt(list(comps_by_story.values()), methods, n_boot, seed)
    long = pd.DataFrame(
        {
            "annotator_id": np.repeat(sub["annotator_id"].to_numpy(), len(methods)),
            "item_id": np.repeat(sub["item_id"].to_numpy(), len(methods)),
            "method": np.tile(methods, len(sub)),
            "rank": ranks.reshape(-1),
        }
    )
    alpha = _alpha(long, unit_cols=["item_id", "method"], value=long["rank"])
    return CriterionReport(
        key,
        label,
        "rank",
        len(sub),
        sub["annotator_id"].nunique(),
        sub["item_id"].nunique(),
        ranks=summary,
        kendall_w=w_all,
        kendall_w_items_mean=float(np.nanmean(per_item)) if per_item and not np.isnan(per_item).all() else math.nan,
        alpha=alpha,
        bt=bt,
    )


def _alpha(frame: pd.DataFrame, *, unit_cols: list[str], value: pd.Series) -> float:
    if frame.empty:
        return math.nan
    table = frame.assign(_v=value.to_numpy()).pivot_table(
        index="annotator_id", columns=unit_cols, values="_v", aggfunc="first"
    )
    return stats.krippendorff_alpha(table.to_numpy(dtype=np.float64), level="ordinal")


def _bt(comps: list[list[tuple[int, int, float]]], methods: list[str], n_boot: int, seed: int) -> stats.BTResult | None:
    if not comps:
        return None
    return stats.bradley_terry_ci(comps, methods, n_boot=min(n_boot, 200), seed=seed)
