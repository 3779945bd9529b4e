"""Figures of a sweep (matplotlib, Agg canvas; PNG + PDF, each with the plotted numbers as CSV beside it).

- :func:`metric_bars` — per Table 1 column, one bar per arm/method at the value of its ``results_row.json``, error
  bars = 95 % percentile bootstrap over stories (:mod:`reports.perstory`); Inception (pooled over images) has none.
- :func:`cids_distributions` — per-character CIDS-self and CIDS-cross per arm (the paper's claim is about
  multi-character identity, so the spread over characters matters more than the mean).
- :func:`training_curves` — the losses per training stage (``icl/ce``, ``icl/mse``, ``del/ce``, ``del/mse`` ...)
  from each arm's Lightning CSVLogger file ``checkpoints/logs/csv/metrics.csv``.

Why a CSV beside each figure: the numbers a reader sees can be checked (and are, in the tests) against the results
table without reading pixels. Figures use ``matplotlib.figure.Figure`` with an Agg canvas directly, never pyplot, so
no global backend or state is touched. Nothing here imports torch or recomputes a metric.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsio
from formats.results import ALL_COLUMNS, DECIMALS, HEADERS
from reports.perstory import character_values, column_stat
from reports.rows import MeasuredRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIG_COLUMNS = ALL_COLUMNS


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _atomic_bytes(path: Path, data: bytes) -> None:
    fsio.atomic_write_bytes(path, data)


def save_figure(fig: Figure, out_dir: str | Path, stem: str, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.csv`` (the plotted data) atomically."""
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths[fmt] = out / f"{stem}.{fmt}"
        _atomic_bytes(paths[fmt], buf.getvalue())
    text = io.StringIO()
    if rows:
        w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    paths["csv"] = out / f"{stem}.csv"
    _atomic_bytes(paths["csv"], text.getvalue().encode())
    return paths


def _fmt_value(value: float | None, column: str) -> str:
    return "–" if value is None else f"{value:.{DECIMALS.get(column, 2)}f}"


def _short(label: str) -> str:
    return label.split("/", 1)[1] if "/" in label else label


##### per-metric bars


def bar_data(measured: Sequence[MeasuredRow], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per (column, row): the value from results_row.json and the bootstrap interval over stories."""
    out = []
    for c in FIG_COLUMNS:
        if all(m.value(c) is None for m in measured):
            continue
        for m in measured:
            v = m.value(c)
            stat = column_stat(m.path, c)
            lo, hi = stat.bootstrap(n_boot, seed) if stat is not None else (math.nan, math.nan)
            out.append(
                {
                    "column": c,
                    "label": m.label,
                    "value": v,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_stories": len(stat.stories) if stat is not None else m.values.get("n_stories"),
                    "comparable": m.comparable,
                }
            )
    return out


def metric_bars(
    measured: Sequence[MeasuredRow], n_boot: int = 1000, seed: int = 0
) -> tuple[Figure, list[dict[str, Any]]]:
    """One panel per measured column, one bar per row; returns the figure and the plotted data."""
    data = bar_data(measured, n_boot, seed)
    columns = list(dict.fromkeys(d["column"] for d in data))
    ncols = min(4, max(1, len(columns)))
    nrows = max(1, math.ceil(len(columns) / ncols))
    fig = _new_figure(3.2 * ncols, 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = [f"C{i % 10}" for i in range(len(measured))]
    for ax, c in zip(axes, columns):
        items = [d for d in data if d["column"] == c]
        xs = list(range(len(items)))
        heights = [d["value"] if d["value"] is not None else 0.0 for d in items]
        bars = ax.bar(xs, heights, color=cmap[: len(items)])
        with_ci = [i for i, d in enumerate(items) if math.isfinite(d["ci_low"]) and math.isfinite(d["ci_high"])]
        if with_ci:
            ax.errorbar(
                [xs[i] for i in with_ci],
                [heights[i] for i in with_ci],
                yerr=[
                    [heights[i] - items[i]["ci_low"] for i in with_ci],
                    [items[i]["ci_high"] - heights[i] for i in with_ci],
                ],
                fmt="none",
                ecolor="black",
                capsize=3,
                linewidth=1,
            )
        ax.bar_label(
            bars,
            labels=[_fmt_value(d["value"], c) for d in items],
            fontsize=6,
            label_type="center",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
        for b, d in zip(bars, items):
            b.set_label(d["label"])
            b.set_gid(f"{c}|{d['label']}")
            if not d["comparable"]:
                b.set_hatch("//")
        ax.set_title(HEADERS.get(c, c) + ("" if c != "inception" else " (pooled, no CI)"), fontsize=9)
        ax.set_xticks(xs, [_short(d["label"]) for d in items], rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    note = "error bars: 95% bootstrap over stories"
    if any(not m.comparable for m in measured):
        note += "; hatched = toy backbones/judge, NOT comparable with published numbers"
    fig.suptitle(note, fontsize=8)
    return fig, data


##### per-character CIDS


def cids_distributions(measured: Sequence[MeasuredRow]) -> tuple[Figure, list[dict[str, Any]]]:
    """Per-character CIDS-self and CIDS-cross (×100) per row: box plots with every character as a dot."""
    data = []
    for m in measured:
        for item in character_values(m.path):
            data.append({"label": m.label, **item})
    fig = _new_figure(max(5.0, 1.2 * len(measured) + 2), 3.2)
    axes = fig.subplots(1, 2, squeeze=False).ravel()
    labels = [m.label for m in measured]
    for ax, key in zip(axes, ("cids_self", "cids_cross")):
        groups = [[d[key] for d in data if d["label"] == lab and d[key] is not None] for lab in labels]
        positions = list(range(1, len(labels) + 1))
        ax.boxplot([g if g else [math.nan] for g in groups], positions=positions, widths=0.5, showfliers=False)
        for p, g in zip(positions, groups):
            jitter = [p + 0.12 * ((i * 7919) % 11 - 5) / 5 for i in range(len(g))]
            ax.scatter(jitter, g, s=10, alpha=0.7, color=f"C{p - 1}", zorder=3)
        ax.set_xticks(positions, [_short(lab) for lab in labels], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{HEADERS[key]} per character", fontsize=9)
        ax.set_ylim(-3, 103)
    fig.suptitle("one dot per (story, character)", fontsize=8)
    return fig, data


##### training curves


def read_train_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a Lightning CSVLogger ``metrics.csv`` as floats (empty cells dropped)."""
    rows = []
    with Path(path).open(encoding="utf-8", newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if v not in (None, ""):
                    try:
                        row[k] = float(v)
                    except ValueError:
                        continue
            rows.append(row)
    return rows


def loss_columns(rows: Sequence[dict[str, float]]) -> list[str]:
    """Loss columns per stage, ``<stage>/<loss>`` (e.g. ``icl/ce``, ``del/mse``), in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            head, _, tail = k.partition("/")
            if tail in ("ce", "mse", "loss") and head not in ("train", "val", "data"):
                seen[k] = None
    return list(seen)


#: ``train/stage`` values the training module logs (0 = Interleaved Concept Learning, 1 = Disentangled Expert Learning).
STAGE_INDEX = {"icl": 0.0, "del": 1.0}


def _in_stage(row: dict[str, float], column: str) -> bool:
    """A ``<stage>/<loss>`` value counts only on steps of that stage: the logger repeats the last icl value during
    del (a carried-over epoch aggregate), which would draw a flat tail that is not a measurement."""
    stage = STAGE_INDEX.get(column.split("/", 1)[0])
    return stage is None or "train/stage" not in row or row["train/stage"] == stage


def training_curves(logs: dict[str, Path]) -> tuple[Figure, list[dict[str, Any]]]:
    """One panel per ``<stage>/<loss>`` column, one line per arm (label → metrics.csv)."""
    per_arm = {label: read_train_log(p) for label, p in logs.items()}
    columns = list(dict.fromkeys(c for rows in per_arm.values() for c in loss_columns(rows)))
    ncols = min(4, max(1, len(columns)))
    nrows = max(1, math.ceil(len(columns) / ncols))
    fig = _new_figure(3.2 * ncols, 2.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    data = []
    for ax, col in zip(axes, columns):
        for i, (label, rows) in enumerate(per_arm.items()):
            pts = [(r["step"], r[col]) for r in rows if col in r and "step" in r and _in_stage(r, col)]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=f"C{i}", label=_short(label))
            data += [{"label": label, "column": col, "step": s, "value": v} for s, v in pts]
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    if not columns:
        axes[0].text(0.5, 0.5, "no loss columns in the logs", ha="center", va="center")
    return fig, data


def sweep_figures(
    measured: Sequence[MeasuredRow], out_dir: str | Path, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, Path]]:
    """Write every figure a sweep has data for into ``out_dir``; returns name → {png, pdf, csv} paths."""
    out: dict[str, dict[str, Path]] = {}
    if not measured:
        return out
    fig, data = metric_bars(measured, n_boot, seed)
    out["metric_bars"] = save_figure(fig, out_dir, "metric_bars", data)
    fig, data = cids_distributions(measured)
    if data:
        out["cids_per_character"] = save_figure(fig, out_dir, "cids_per_character", data)
    logs = {}
    for m in measured:
        if m.arm is not None:
            log = m.path.parent / "checkpoints" / "logs" / "csv" / "metrics.csv"
            if log.is_file():
                logs[m.label] = log
    if logs:
        fig, data = training_curves(logs)
        out["training_curves"] = save_figure(fig, out_dir, "training_curves", data)
    return out
