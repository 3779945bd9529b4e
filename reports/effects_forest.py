"""Forest plot of a sweep's effects: one row per arm × metric, grouped by metric family, null-arm band shaded.

Metrics have different units (nats/byte, accuracies, ×100 scores), so one shared axis would squash most rows. Each
metric's rows are divided by that metric's *seed-noise scale*: the null arm's band half-width (``max(|ci_low|,
|ci_high|)`` of the null arm's delta, :func:`reports.effects.null_bands`) when the sweep has a null arm, else the
largest |CI end| among the metric's rows. On that axis the shaded band is always [−1, 1]: a row whose bar lies
outside it moved more than seed noise alone moves the metric. Beyond ±``LINEAR`` the axis is logarithmic (symlog)
so that large effects and small ones stay readable on one figure. The raw delta and CI, in the metric's own units,
are written at the right of each row, and every plotted number is in the CSV beside the figure.

Filled markers are detected effects (Holm p < 0.05 and CI excluding 0), hollow ones are not; the null arm is grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reports.effects_io import FAMILIES
from reports.figures import _new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reports.effects import EffectRow

#: The axis is linear inside ±LINEAR (in seed-noise units) and logarithmic outside.
LINEAR = 4.0
NULL_COLOR = "0.45"


def _scale(rows: Sequence[EffectRow], band: float | None) -> tuple[float, str]:
    if band is not None and band > 0 and math.isfinite(band):
        return band, "null band"
    ends = [abs(v) for r in rows for v in (r.ci_low, r.ci_high, r.delta) if math.isfinite(v)]
    m = max(ends, default=0.0)
    return (m if m > 0 else 1.0), "max |CI|"


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e4):
        return f"{v:+.2e}"
    digits = 3 if a < 1 else (2 if a < 100 else 1)
    return f"{v:+.{digits}f}"


def forest_data(rows: Sequence[EffectRow], bands: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """The plotted rows, top to bottom: y position, scaled x/low/high, and the raw numbers they come from."""
    order = {f: i for i, f in enumerate(FAMILIES)}
    metrics = list(dict.fromkeys((r.family, r.reference, r.metric) for r in rows))
    metrics.sort(key=lambda k: order.get(k[0], len(order)))
    arms_first_seen = list(dict.fromkeys(r.arm for r in rows))
    out: list[dict[str, Any]] = []
    y = 0
    family = None
    for fam, ref, metric in metrics:
        if fam != family:
            family = fam
            y += 1  # a header row per family
        group = [r for r in rows if r.family == fam and r.reference == ref and r.metric == metric]
        group.sort(key=lambda r: (r.role == "null", arms_first_seen.index(r.arm)))
        band = bands.get((ref, metric))
        scale, scale_kind = _scale(group, band)
        for r in group:
            out.append(
                {
                    "y": y,
                    "family": fam,
                    "metric": metric,
                    "arm": r.arm,
                    "reference": ref,
                    "role": r.role,
                    "x": r.delta / scale,
                    "x_low": r.ci_low / scale,
                    "x_high": r.ci_high / scale,
                    "scale": scale,
                    "scale_kind": scale_kind,
                    "band_low": -1.0 if band else math.nan,
                    "band_high": 1.0 if band else math.nan,
                    "delta": r.delta,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_holm": r.p_holm,
                    "detected": int(r.detected),
                }
            )
            y += 1
    return out


def forest_plot(rows: Sequence[EffectRow], bands: dict[tuple[str, str], float]) -> tuple[Figure, list[dict[str, Any]]]:
    """The forest plot and its data (:func:`forest_data`); markers carry ``gid = "effect|<arm>|<metric>"``."""
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    data = forest_data(rows, bands)
    n_rows = (max(d["y"] for d in data) + 1) if data else 1
    fig = _new_figure(10.0, 1.4 + 0.24 * n_rows)
    ax = fig.subplots()
    arms = list(dict.fromkeys(d["arm"] for d in data if d["role"] != "null"))
    colors = {a: f"C{i % 10}" for i, a in enumerate(arms)}
    finite = [abs(v) for d in data for v in (d["x_low"], d["x_high"], d["x"]) if math.isfinite(v)]
    biggest = max([1.5, *finite])
    span = biggest * (1.6 if biggest > LINEAR * 1.5 else 1.08)  # symlog: the margin must be multiplicative
    # family headers and the null band of each metric (behind its rows)
    family_rows: dict[str, int] = {}
    for d in data:
        family_rows.setdefault(d["family"], d["y"] - 1)
    left = blended_transform_factory(ax.transAxes, ax.transData)
    for fam, y in family_rows.items():
        ax.text(0.005, y, fam, transform=left, fontsize=8, fontweight="bold", va="center", ha="left")
        ax.axhline(y + 0.5, color="0.8", linewidth=0.6, zorder=0)
    by_metric: dict[tuple[str, str], list[int]] = {}
    for d in data:
        by_metric.setdefault((d["reference"], d["metric"]), []).append(d["y"])
    for key, ys in by_metric.items():
        first = next(d for d in data if (d["reference"], d["metric"]) == key)
        if math.isfinite(first["band_low"]):
            rect = Rectangle(
                (first["band_low"], min(ys) - 0.45),
                first["band_high"] - first["band_low"],
                max(ys) - min(ys) + 0.9,
                facecolor="0.88",
                edgecolor="none",
                zorder=0,
            )
            rect.set_gid(f"band|{key[0]}|{key[1]}")
            ax.add_patch(rect)
    ax.axvline(0.0, color="0.3", linewidth=0.8, zorder=1)
    for d in data:
        color = NULL_COLOR if d["role"] == "null" else colors[d["arm"]]
        x, lo, hi = d["x"], d["x_low"], d["x_high"]
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([lo, hi], [d["y"], d["y"]], color=color, linewidth=1.6, solid_capstyle="butt", zorder=2)[0].set_gid(
                f"ci|{d['arm']}|{d['metric']}"
            )
        if math.isfinite(x):
            (marker,) = ax.plot(
                [x],
                [d["y"]],
                marker="o",
                markersize=5,
                linestyle="none",
                color=color,
                markerfacecolor=color if d["detected"] else "white",
                zorder=3,
            )
            marker.set_gid(f"effect|{d['arm']}|{d['metric']}")
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for d in data:
        star = " *" if d["detected"] else ""
        text = f"{_fmt(d['delta'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]{star}"
        ax.text(1.01, d["y"], text, transform=right, fontsize=6.5, va="center", ha="left", family="monospace")
    ax.set_yticks([d["y"] for d in data], [f"{d['metric']} · {d['arm']}" for d in data], fontsize=7)
    for label, d in zip(ax.get_yticklabels(), data):
        if d["role"] == "null":
            label.set_color(NULL_COLOR)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ticks = [0.0, 1.0, 2.0]
    if biggest > LINEAR * 1.5:
        ax.set_xscale("symlog", linthresh=LINEAR, linscale=1.5)
        ticks += [LINEAR] + [10.0**k for k in range(1, 12) if LINEAR < 10.0**k < span]
    else:
        ticks += [float(t) for t in range(3, int(span) + 1)]
    ticks = sorted({-t for t in ticks if t} | set(ticks))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(-span, span)
    ax.tick_params(axis="x", labelsize=7)
    has_band = any(math.isfinite(d["band_low"]) for d in data)
    unit = "null-arm band (grey, seed noise = ±1)" if has_band else "largest |CI| of the metric"
    ax.set_xlabel(f"effect vs reference, in units of the {unit}", fontsize=8)
    ax.set_title(
        "Effects: arm − reference (95% CI; filled / * = Holm p < 0.05 and CI excludes 0); right: delta [CI] in metric units",
        fontsize=8,
    )
    ax.grid(axis="x", color="0.92", linewidth=0.5, zorder=0)
    return fig, data
