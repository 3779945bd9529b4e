"""User-study figures from a study database (DESIGN.md §3.6), through ``study`` and ``study.stats``.

- Ranking distribution per method and criterion (the paper's Figure 9): for each ``rank`` criterion, a stacked
  horizontal bar per method with the share of rankings that put it 1st, 2nd, …, annotated with the mean rank that
  ``study.stats.rank_summary`` reports.
- GSB bars with raw counts: for each ``gsb`` criterion, a stacked bar per test method vs the reference with the
  G / S / B counts written on the segments and the net score ``(G − B) / N`` with its bootstrap interval (the
  dashboard's formula; the raw counts are printed because the net score alone is easy to over-read).

The statistics come from ``StudyStore.statistics`` (exclusions applied, catch trials dropped); this module only
counts ranks for the stacked shares. The dashboard package is imported lazily, so ``reports`` stays importable
without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.figures import _new_figure, save_figure

RANK_COLORS = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027", "#999999", "#666666")
GSB_COLORS = {"G": "#1a9850", "S": "#bdbdbd", "B": "#d73027"}


def rank_distribution(frame: Any, methods: list[str], criterion: str) -> list[dict[str, Any]]:
    """Per (method, rank): how many kept rankings of ``criterion`` put the method at that rank, and the share."""
    from study import stats

    sub = frame[frame["criterion"] == criterion]
    orderings = [list(r) for r in sub["ranking"]]
    if not orderings:
        return []
    ranks = stats.ranks_from_orderings(orderings, methods)  # (n_rankings, k)
    n, k = ranks.shape
    out = []
    for j, m in enumerate(methods):
        for r in range(1, k + 1):
            count = int((ranks[:, j] == r).sum())
            out.append({"criterion": criterion, "method": m, "rank": r, "count": count, "share": count / n})
    return out


def study_figures(
    url: str | Path, out_dir: str | Path, study_id: int | None = None, n_boot: int = 1000
) -> dict[str, dict[str, Path]]:
    """Write the ranking-distribution and GSB figures of one study (or every study) into ``out_dir``.

    Returns:
        Figure name (``study<ID>_ranks``, ``study<ID>_gsb``) → {png, pdf, csv}.

    Raises:
        ValueError: no study in the database, or an unknown ``study_id``.
    """
    from study import open_store

    store = open_store(url)
    try:
        ids = [s.study_id for s in store.list_studies()] if study_id is None else [study_id]
        if not ids:
            raise ValueError(f"{url}: the database holds no study")
        written: dict[str, dict[str, Path]] = {}
        for sid in ids:
            try:
                info = store.get_study(sid)
            except Exception as e:  # StoreError for an unknown id
                raise ValueError(str(e)) from e
            frame = store.answers_frame(sid, include_catch=False, include_excluded=False)
            report = store.statistics(sid, n_boot=n_boot)
            written.update(_study(info.spec, frame, report, Path(out_dir), f"study{sid}"))
        return written
    finally:
        store.close()


def _study(spec: Any, frame: Any, report: Any, out: Path, stem: str) -> dict[str, dict[str, Path]]:
    written: dict[str, dict[str, Path]] = {}
    methods = list(spec.methods)
    rank_crit = [c for c in report.criteria if c.kind == "rank" and c.ranks is not None and c.ranks.n_rankings]
    if rank_crit:
        fig = _new_figure(3.6 * len(rank_crit), 0.5 * len(methods) + 1.8)
        axes = fig.subplots(1, len(rank_crit), squeeze=False).ravel()
        data: list[dict[str, Any]] = []
        for ax, c in zip(axes, rank_crit):
            dist = rank_distribution(frame, methods, c.key)
            mean_rank = dict(zip(c.ranks.methods, c.ranks.mean_rank))
            for d in dist:
                d["mean_rank"] = mean_rank[d["method"]]
            data += dist
            order = sorted(methods, key=lambda m: mean_rank[m], reverse=True)  # best at the top
            left = [0.0] * len(order)
            for r in range(1, len(methods) + 1):
                shares = [next(d["share"] for d in dist if d["method"] == m and d["rank"] == r) for m in order]
                ax.barh(order, shares, left=left, color=RANK_COLORS[(r - 1) % len(RANK_COLORS)], label=f"rank {r}")
                left = [a + b for a, b in zip(left, shares)]
            for y, m in enumerate(order):
                ax.text(1.02, y, f"{mean_rank[m]:.2f}", va="center", fontsize=7)
            ax.set_xlim(0, 1.15)
            ax.set_title(f"{c.label} (n={c.ranks.n_rankings})", fontsize=9)
            ax.tick_params(labelsize=7)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=len(methods))
        fig.suptitle("share of rankings per rank (mean rank at right; lower is better)", fontsize=8)
        written[f"{stem}_ranks"] = save_figure(fig, out, f"{stem}_ranks", data)
    gsb_crit = [c for c in report.criteria if c.kind == "gsb" and c.gsb]
    if gsb_crit:
        n_rows = max(len(c.gsb) for c in gsb_crit)
        fig = _new_figure(max(6.0, 4.2 * len(gsb_crit)), 0.6 * n_rows + 1.8)
        axes = fig.subplots(1, len(gsb_crit), squeeze=False).ravel()
        data = []
        for ax, c in zip(axes, gsb_crit):
            tests = list(c.gsb)
            widest = max(c.gsb[m].n for m in tests)
            for y, m in enumerate(tests):
                g = c.gsb[m]
                start = 0
                for key, count in (("G", g.good), ("S", g.same), ("B", g.bad)):
                    ax.barh([y], [count], left=start, color=GSB_COLORS[key])
                    if count:
                        ax.text(start + count / 2, y, f"{key} {count}", ha="center", va="center", fontsize=7)
                    start += count
                ax.text(
                    start + 0.04 * widest,
                    y,
                    f"net {g.net:+.2f} [{g.net_ci[0]:+.2f}, {g.net_ci[1]:+.2f}]",
                    va="center",
                    fontsize=7,
                )
                data.append(
                    {
                        "criterion": c.key,
                        "test_method": m,
                        "reference_method": spec.reference_method,
                        "G": g.good,
                        "S": g.same,
                        "B": g.bad,
                        "net": g.net,
                        "net_ci_low": g.net_ci[0],
                        "net_ci_high": g.net_ci[1],
                    }
                )
            ax.set_yticks(range(len(tests)), [f"{m}\nvs {spec.reference_method}" for m in tests], fontsize=7)
            ax.set_xlim(0, widest * 1.9 + 1)
            ax.set_title(f"{c.label}: GSB counts", fontsize=9)
            ax.tick_params(labelsize=7)
        fig.suptitle(
            "Good / Same / Bad counts vs the reference\nnet = (G − B) / N, 95% bootstrap CI over stories", fontsize=8
        )
        written[f"{stem}_gsb"] = save_figure(fig, out, f"{stem}_gsb", data)
    return written
