"""``effects.md``: the effects report in words — what is detected, what is below the seed noise, what is blind.

Every sentence is derived from the rows of ``effects.csv`` and ``controls.csv`` (:mod:`reports.effects`); the page
adds nothing that is not in those files, only sorts and words it, and links them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reports.effects import ControlRow, EffectRow, EffectsResult

METHOD_TEXT = {
    "twolevel": (
        "two-level test: Welch–Satterthwaite t over seed and story variance components AND a paired t-test over "
        "seeds must both reject (p = the larger; CI spans both), seeds paired by order, stories paired"
    ),
    "welch": (
        "seed and story variance components (seeds paired by order, stories paired), t reference with "
        "Welch–Satterthwaite degrees of freedom (small-seed-count correction of the hierarchical bootstrap)"
    ),
    "bootstrap": "hierarchical bootstrap (seeds within each arm, then stories, paired), percentile CI, +1-corrected p",
    "story": "story-only bootstrap (seeds NOT resampled: ignores seed noise; for contrast only)",
}


def _g(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:+.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:+.2e}"


def _p(v: float) -> str:
    return "–" if not math.isfinite(v) else (f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}")


def _effect_text(r: EffectRow) -> str:
    better = (r.delta > 0) == r.higher_is_better
    word = "better" if better else "worse"
    return (
        f"`{r.metric}` {_g(r.delta)} [{_g(r.ci_low)}, {_g(r.ci_high)}], p_holm {_p(r.p_holm)} ({word}; "
        f"{r.n_seeds} seeds × {r.n_stories} stories)"
    )


def _control_text(c: ControlRow) -> str:
    return f"`{c.metric}` {_g(c.delta)} [{_g(c.ci_low)}, {_g(c.ci_high)}] (expected {c.expected})"


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def _means_table(res: EffectsResult) -> list[str]:
    """Metric × arm table of means over seeds and stories, with the range of the per-seed means."""
    if not res.means:
        return []
    arms = list(dict.fromkeys(str(r["arm"]) for r in res.means))
    cells = {(str(r["arm"]), str(r["metric"])): r for r in res.means}
    metrics = list(dict.fromkeys((str(r["family"]), str(r["metric"])) for r in res.means))
    order = ("oracle", "diag", "toy", "official")
    metrics.sort(key=lambda fm: order.index(fm[0]) if fm[0] in order else len(order))
    lines = ["## Arm means (over seeds and stories; range of the per-seed means)", ""]
    lines += ["| metric | " + " | ".join(f"`{a}`" for a in arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for _, m in metrics:
        row = []
        for a in arms:
            c = cells.get((a, m))
            if c is None:
                row.append("")
                continue
            mean, lo, hi = float(c["mean"]), float(c["seed_min"]), float(c["seed_max"])  # type: ignore[arg-type]
            text = f"{mean:.4g}" if math.isfinite(mean) else "–"
            if int(c["n_seeds"]) > 1 and math.isfinite(lo):  # type: ignore[call-overload]
                text += f" [{lo:.4g}, {hi:.4g}]"
            row.append(text)
        lines.append(f"| `{m}` | " + " | ".join(row) + " |")
    return [*lines, ""]


def effects_markdown(res: EffectsResult, out_dir: str | Path) -> str:
    """The page's text; links are relative to ``out_dir``."""
    out = Path(out_dir)
    lines = _header(res, out) + _effects_section(res) + _null_section(res) + _controls_section(res)
    lines += _means_table(res)
    sheets = [(k.removeprefix("keyframes_"), p) for k, p in res.files.items() if k.startswith("keyframes_")]
    if sheets:
        lines += ["## Keyframe sheets", ""]
        for name, p in sheets:
            lines += [f"**{name}** (stories × shots)", "", f"![keyframes {name}]({_rel(p, out)})", ""]
    notes = _notes(res)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _header(res: EffectsResult, out: Path) -> list[str]:
    """Title, what the arms and the test are, and links to the files the page is made from."""
    refs = sorted({r.reference for r in res.effects})
    n_runs = {a: len(d.runs) for a, d in res.arms.items()}
    lines = [f"# Effects: {res.sweep.name}", ""]
    lines += [
        f"Arms (run folders): {', '.join(f'`{a}` ({d.role}, {n_runs[a]})' for a, d in res.arms.items())}.",
        f"Each arm's delta is arm − reference (`{'`, `'.join(refs) or '–'}`), mean over seeds and stories. "
        f"Interval and p: {METHOD_TEXT.get(res.method, res.method)}; Holm over the metrics of each arm; "
        f"seed {res.seed}, {res.resamples} resamples. **Detected** = Holm p < 0.05 and the 95% CI excludes 0. "
        "**Below the seed noise** = |delta| within the null arm's band (±max |CI end| of the null arm's delta).",
        "",
    ]
    files = [
        ("effects.csv", "effects_csv"),
        ("controls.csv", "controls_csv"),
        ("arm_means.csv", "arm_means_csv"),
        ("forest plot", "forest_png"),
    ]
    links = [f"[{label}]({_rel(res.files[k], out)})" for label, k in files if k in res.files]
    lines += ["Files: " + " · ".join(links), ""]
    if "forest_png" in res.files:
        lines += [f"![effects forest plot]({_rel(res.files['forest_png'], out)})", ""]
    return lines


def _effects_section(res: EffectsResult) -> list[str]:
    """Per ablation arm: detected, significant before Holm only, below the seed noise, and the rest."""
    rows = res.effects
    ablations = list(dict.fromkeys(r.arm for r in rows if r.role != "null"))
    lines = ["## Effects", ""]
    if not ablations:
        lines += ["No ablation arm with a reference.", ""]
    for arm in ablations:
        lines += _arm_effects(res, [r for r in rows if r.arm == arm])
    return lines


def _arm_effects(res: EffectsResult, mine: list[EffectRow]) -> list[str]:
    """The lines of one ablation arm (``mine``: its rows, one per metric)."""
    det = [r for r in mine if r.detected]
    lines = [f"**`{mine[0].arm}` vs `{mine[0].reference}`** — {len(det)} of {len(mine)} metrics detected.", ""]
    for r in sorted(det, key=lambda r: r.p_holm):
        lines.append(f"- detected: {_effect_text(r)}")
    unadjusted = [r for r in mine if not r.detected and r.ci_excludes_zero]
    for r in sorted(unadjusted, key=lambda r: r.p):
        lines.append(f"- CI excludes 0 but not significant after Holm over {len(mine)} metrics: {_effect_text(r)}")
    below, above = [], []
    for r in mine:
        if r.detected or r.ci_excludes_zero:
            continue
        band = res.bands.get((r.reference, r.metric))
        if band is not None and math.isfinite(r.delta) and abs(r.delta) <= band:
            below.append(r)
        else:
            above.append(r)
    if below:
        lines.append("- below the seed noise: " + ", ".join(f"`{r.metric}` {_g(r.delta)}" for r in below))
    if above:
        what = "not detected, outside the null band" if res.bands else "not detected (no null arm to compare)"
        lines.append(f"- {what}: " + ", ".join(f"`{r.metric}` {_g(r.delta)} (p_holm {_p(r.p_holm)})" for r in above))
    return [*lines, ""]


def _null_section(res: EffectsResult) -> list[str]:
    """Whether the null arm (seed noise alone) has a Holm-significant metric: it should have none."""
    rows = res.effects
    nulls = list(dict.fromkeys(r.arm for r in rows if r.role == "null"))
    lines = ["## Null arm (seed noise alone)", ""]
    if not nulls:
        lines += ["The sweep has no null arm: effects cannot be compared with seed noise.", ""]
    for arm in nulls:
        mine = [r for r in rows if r.arm == arm]
        sig = [r for r in mine if r.detected]
        if sig:
            lines.append(
                f"**Warning:** the null arm `{arm}` has {len(sig)} Holm-significant metric(s) — it should have none; "
                "treat the effects above with suspicion: " + "; ".join(_effect_text(r) for r in sig)
            )
        else:
            lines.append(f"The null arm `{arm}` has no Holm-significant metric (of {len(mine)}), as it should.")
        lines.append("")
    return lines


def _controls_section(res: EffectsResult) -> list[str]:
    """Positive controls: blind metrics, what detects each corruption, wrong-way moves, missing expectations."""
    lines = ["## Positive controls", ""]
    if not res.controls:
        return [*lines, "No controls in this sweep.", ""]
    blind = [c for c in res.controls if c.blind]
    if blind:
        lines.append("Blind metrics (the corruption they exist to see is not detected):")
        lines += [f"- `{c.metric}` is blind to `{c.corruption}`: {_control_text(c)}" for c in blind]
    else:
        lines.append("Every metric detects the corruption it targets.")
    lines.append("")
    for corruption in dict.fromkeys(c.corruption for c in res.controls):
        of_corruption = [c for c in res.controls if c.corruption == corruption]
        det_metrics = [c.metric for c in of_corruption if c.detected]
        wrong = [c for c in of_corruption if c.wrong_way]
        text = f"- `{corruption}`: detected by {', '.join(f'`{m}`' for m in det_metrics) or 'no metric'}"
        if wrong:
            text += "; moves the wrong way: " + ", ".join(_control_text(c) for c in wrong)
        lines.append(text)
    missing = [c for c in res.controls if not c.has_expectation]
    if missing:
        lines.append(
            "- no expectation in expected.csv (taken as `any`, not a target): "
            + ", ".join(f"`{c.corruption}`×`{c.metric}`" for c in missing)
        )
    return [*lines, ""]


def _notes(res: EffectsResult) -> list[str]:
    """Caveats: uneven seed counts, single-seed arms, skipped undefined values, and the result's own notes."""
    rows = res.effects
    notes = list(res.notes)
    uneven = sorted(
        {(r.arm, r.reference, r.n_seeds_arm, r.n_seeds_ref) for r in rows if r.n_seeds_arm != r.n_seeds_ref}
    )
    notes += [f"`{a}` has {ka} seeds, `{ref}` {kr}: n_seeds reports {min(ka, kr)}" for a, ref, ka, kr in uneven]
    single = sorted({r.arm for r in rows if r.n_seeds < 2})
    if single:
        notes.append(
            "single seed (seed noise not estimable, CI over stories only): " + ", ".join(f"`{a}`" for a in single)
        )
    undefined = [(r.arm, r.metric, r.n_undefined) for r in rows if r.n_undefined]
    if undefined:
        notes.append(
            "undefined values skipped (arm+reference cells): " + ", ".join(f"`{a}`/`{m}` {n}" for a, m, n in undefined)
        )
    return notes
