"""The effects report of a multi-seed sweep: which arm-vs-reference differences are real, and which metrics can see.

``write_effects(runs/<sweep>)`` reads the files the sweep wrote (:mod:`reports.effects_io`) and writes into
``<sweep>/report/``:

- ``effects.csv`` — per (arm ≠ reference, metric): ``arm, reference, metric, family, n_seeds, n_stories, delta,
  ci_low, ci_high, p, p_holm``. ``delta`` = arm − reference, mean over seeds and stories; interval and p from
  :mod:`reports.effects_stats` (default ``twolevel``: Welch–Satterthwaite over the seed and story variance
  components and a paired t over seeds must both reject; ``bootstrap``: the plain hierarchical percentile
  bootstrap, anti-conservative with ~3 seeds); ``p_holm`` is Holm over the metrics of one arm. ``n_seeds`` is the smaller of the two arms' seed counts (the summary says where they differ).
- ``controls.csv`` — per (corruption, metric): ``corruption, metric, family, expected, delta, ci_low, ci_high,
  detected``; ``detected`` = the story-bootstrap CI of mean(corrupted − clean) excludes 0 in the expected direction.
  A metric whose *target* corruption is not detected is blind to it.
- ``figures/effects_forest.png|pdf|csv`` (:mod:`reports.effects_forest`), ``keyframes_<run>.png``
  (:mod:`reports.keyframes`), and ``effects.md``, the summary in words (:mod:`reports.effects_md`).

An effect is *detected* when ``p_holm < 0.05`` and its CI excludes 0; it is *below the seed noise* when
``|delta|`` is within the null arm's band for that metric: ``±max(|ci_low|, |ci_high|)`` of the null arm's own delta
against the reference (the null arm is the reference config with other seeds, so its delta is what seed noise alone
produces). Deterministic under ``seed``. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import fsio
from reports.effects_io import FAMILIES, ROLES, ArmData, Controls, load_arms, read_controls, unscored_expectations
from reports.effects_stats import (
    METHODS,
    control_effect,
    detected,
    draw_story_counts,
    estimate_effect,
    holm,
)

EFFECT_COLUMNS = (
    "arm",
    "reference",
    "metric",
    "family",
    "n_seeds",
    "n_stories",
    "delta",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
)
CONTROL_COLUMNS = ("corruption", "metric", "family", "expected", "delta", "ci_low", "ci_high", "detected")
ALPHA = 0.05


@dataclass
class EffectRow:
    """One arm × metric effect (``effects.csv`` row plus what the summary needs)."""

    arm: str
    reference: str
    metric: str
    family: str
    role: str
    higher_is_better: bool
    n_seeds: int
    n_seeds_arm: int
    n_seeds_ref: int
    n_stories: int
    delta: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    n_undefined: int = 0

    @property
    def ci_excludes_zero(self) -> bool:
        """The 95% CI lies entirely on one side of 0 (no multiplicity correction)."""
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high) and (self.ci_low > 0 or self.ci_high < 0)

    @property
    def detected(self) -> bool:
        """Holm-corrected p below 0.05 and the CI excludes 0."""
        return math.isfinite(self.p_holm) and self.p_holm < ALPHA and self.ci_excludes_zero

    def csv_row(self) -> dict[str, object]:
        """The row as written to ``effects.csv``."""
        return {c: getattr(self, c) for c in EFFECT_COLUMNS}


@dataclass
class ControlRow:
    """One corruption × metric control (``controls.csv`` row plus what the summary needs)."""

    corruption: str
    metric: str
    family: str
    expected: str
    target: bool
    has_expectation: bool
    delta: float
    ci_low: float
    ci_high: float
    detected: bool
    n_stories: int
    n_undefined: int = 0

    @property
    def blind(self) -> bool:
        """The corruption is what the metric exists to see, and it does not see it."""
        return self.target and not self.detected

    @property
    def wrong_way(self) -> bool:
        """The CI excludes 0 on the side opposite to the expected direction."""
        if self.expected == "any" or not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return False
        return self.ci_low > 0 if self.expected == "down" else self.ci_high < 0

    def csv_row(self) -> dict[str, object]:
        """The row as written to ``controls.csv`` (``detected`` as 1/0)."""
        row: dict[str, object] = {c: getattr(self, c) for c in CONTROL_COLUMNS}
        row["detected"] = int(self.detected)
        return row


@dataclass
class EffectsResult:
    """Everything computed for one sweep, plus the files written."""

    sweep: Path
    method: str
    resamples: int
    seed: int
    arms: dict[str, ArmData]
    effects: list[EffectRow]
    controls: list[ControlRow]
    bands: dict[tuple[str, str], float]  # (reference, metric) -> null band half-width
    means: list[dict[str, object]] = field(default_factory=list)  # arm_means() rows
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


##### computing


def arm_order(arms: dict[str, ArmData]) -> list[str]:
    """Reference arms first, then ablations, null arms, externals; by name within a role."""
    return sorted(arms, key=lambda a: (ROLES.index(arms[a].role), a))


def _aligned(arm: ArmData, stories: list[str], metrics: list[str]) -> np.ndarray:
    """``arm.values`` on the given story and metric grid (NaN where the arm has none)."""
    out = np.full((len(metrics), arm.values.shape[1], len(stories)), np.nan)
    si = {s: i for i, s in enumerate(arm.stories)}
    mi = {m: i for i, m in enumerate(arm.metrics)}
    rows = [mi[m] for m in metrics]
    cols = [si.get(s, -1) for s in stories]
    have = [j for j, c in enumerate(cols) if c >= 0]
    out[:, :, have] = arm.values[np.ix_(rows, list(range(arm.values.shape[1])), [cols[j] for j in have])]
    return out


def compute_effects(
    arms: dict[str, ArmData], method: str = "twolevel", resamples: int = 4000, seed: int = 0, confidence: float = 0.95
) -> list[EffectRow]:
    """Effect rows of every arm that has a reference, in :func:`arm_order`.

    The story draws (and the seeds' shared uniforms) are drawn once for the whole sweep, so every arm is compared
    on the same resampled stories and the result depends only on ``seed``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    stories = sorted({s for a in arms.values() for s in a.stories})
    k_max = max(a.values.shape[1] for a in arms.values())
    rng = np.random.default_rng(seed)
    u = rng.random((resamples, k_max))
    story_w = draw_story_counts(rng, resamples, len(stories))
    rows: list[EffectRow] = []
    for name in arm_order(arms):
        arm = arms[name]
        if arm.reference is None:
            continue
        ref = arms[arm.reference]
        metrics = [m for m in arm.metrics if m in ref.family]
        if not metrics:
            continue
        st = estimate_effect(
            _aligned(arm, stories, metrics), _aligned(ref, stories, metrics), method, u, story_w, confidence
        )
        p_holm = holm(st.p)
        ka, kr = arm.values.shape[1], ref.values.shape[1]
        for i, m in enumerate(metrics):
            rows.append(
                EffectRow(
                    arm=name,
                    reference=ref.arm,
                    metric=m,
                    family=arm.family[m],
                    role=arm.role,
                    higher_is_better=arm.higher_is_better[m],
                    n_seeds=min(ka, kr),
                    n_seeds_arm=ka,
                    n_seeds_ref=kr,
                    n_stories=int(st.n_stories[i]),
                    delta=float(st.delta[i]),
                    ci_low=float(st.ci_low[i]),
                    ci_high=float(st.ci_high[i]),
                    p=float(st.p[i]),
                    p_holm=float(p_holm[i]),
                    n_undefined=arm.n_undefined.get(m, 0) + ref.n_undefined.get(m, 0),
                )
            )
    return rows


MEAN_COLUMNS = ("arm", "role", "metric", "family", "n_seeds", "n_stories", "mean", "seed_min", "seed_max")


def arm_means(arms: dict[str, ArmData]) -> list[dict[str, object]]:
    """Per arm × metric: the mean over seeds and stories, and the range of the per-seed means (``arm_means.csv``).

    The seed range is the plainest picture of seed noise; the ground truth's row shows what a perfect arm scores.
    """
    rows: list[dict[str, object]] = []
    for name in arm_order(arms):
        a = arms[name]
        for i, m in enumerate(a.metrics):
            x = a.values[i]  # [K, S]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                per_seed = np.nanmean(x, axis=1)
                mean = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
            ok = per_seed[np.isfinite(per_seed)]
            rows.append(
                {
                    "arm": name,
                    "role": a.role,
                    "metric": m,
                    "family": a.family[m],
                    "n_seeds": len(ok),
                    "n_stories": int(np.isfinite(x).any(axis=0).sum()),
                    "mean": mean,
                    "seed_min": float(ok.min()) if len(ok) else math.nan,
                    "seed_max": float(ok.max()) if len(ok) else math.nan,
                }
            )
    return rows


def null_bands(rows: list[EffectRow]) -> dict[tuple[str, str], float]:
    """(reference, metric) → half-width of the null arm's band, ``max(|ci_low|, |ci_high|)`` (widest null arm)."""
    out: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.role == "null" and math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            h = max(abs(r.ci_low), abs(r.ci_high))
            key = (r.reference, r.metric)
            out[key] = max(out.get(key, 0.0), h)
    return out


def compute_controls(
    controls: Controls, resamples: int = 4000, seed: int = 0, confidence: float = 0.95
) -> list[ControlRow]:
    """Control rows in the file's corruption order, metrics by family then first-seen order."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own: adding arms does not change the controls
    weights: dict[int, np.ndarray] = {}
    rows = []
    keys = sorted(
        controls.rows,
        key=lambda k: (controls.corruptions.index(k[0]), FAMILIES.index(controls.family[k[1]])),
    )
    for corruption, metric in keys:
        clean, corrupted = controls.rows[(corruption, metric)]
        n = len(clean)
        if n >= 2 and n not in weights:
            weights[n] = draw_story_counts(rng, resamples, n)
        st = control_effect(clean, corrupted, weights.get(n, np.zeros((0, n))), confidence)
        given = (corruption, metric) in controls.expected
        direction, target = controls.expected.get((corruption, metric), ("any", False))
        rows.append(
            ControlRow(
                corruption=corruption,
                metric=metric,
                family=controls.family[metric],
                expected=direction,
                target=target,
                has_expectation=given,
                delta=st.delta,
                ci_low=st.ci_low,
                ci_high=st.ci_high,
                detected=detected(direction, st.ci_low, st.ci_high),
                n_stories=st.n_stories,
                n_undefined=controls.n_undefined.get((corruption, metric), 0),
            )
        )
    return rows


##### writing


def _atomic_text(path: Path, text: str) -> Path:
    return fsio.atomic_write_text(path, text)


def _fmt(v: object) -> object:
    """Floats with full precision, NaN as an empty cell (undefined)."""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(float(v))
    return v


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> Path:
    """Write rows with exactly ``columns`` (atomically)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r[c]) for c in columns})
    return _atomic_text(path, buf.getvalue())


def has_effects_inputs(sweep: str | Path) -> bool:
    """Whether ``sweep`` holds at least one run folder with an ``arm.json`` (the multi-seed layout)."""
    root = Path(sweep)
    return root.is_dir() and any((p / "arm.json").is_file() for p in root.iterdir() if p.is_dir())


def write_effects(
    sweep: str | Path,
    out: str | Path | None = None,
    method: str = "twolevel",
    resamples: int = 4000,
    seed: int = 0,
    sheets: list[str] | None = None,
    figures: bool = True,
) -> EffectsResult:
    """Compute and write the effects report of ``sweep`` into ``out`` (default ``<sweep>/report``).

    Args:
        sweep: the sweep folder (``runs/<sweep>``).
        out: output folder.
        method: ``twolevel`` (default), ``welch`` or ``bootstrap`` (see :mod:`reports.effects_stats`).
        resamples: bootstrap resamples (effects with ``bootstrap``; the controls always).
        seed: seed of every random draw.
        sheets: run folder names to draw keyframe sheets of (default: the reference arm's first seed and the
            external arms, e.g. the ground truth).
        figures: write the forest plot and the keyframe sheets.

    Raises:
        FileNotFoundError / EffectsInputError: see :func:`reports.effects_io.load_arms`; also a sheet run that is
            not in the sweep.
    """
    from reports.effects_md import effects_markdown

    root = Path(sweep)
    arms = load_arms(root)
    out_dir = Path(out) if out is not None else root / "report"
    effects = compute_effects(arms, method, resamples, seed)
    controls_in = read_controls(root)
    controls = compute_controls(controls_in, resamples, seed) if controls_in is not None else []
    res = EffectsResult(root, method, resamples, seed, arms, effects, controls, null_bands(effects), arm_means(arms))
    if not any(a.role == "reference" for a in arms.values()):
        res.notes.append("no arm has role 'reference': no effects computed")
    if controls_in is None:
        res.notes.append("no controls/controls_long.csv: positive controls not reported")
    else:
        missing = unscored_expectations(controls_in)
        if missing:
            res.notes.append(
                "expected.csv names corruption × metric pairs that were not scored (metric not in this sweep?): "
                + ", ".join(f"`{c}`×`{m}`" for c, m in missing)
            )
    res.files["effects_csv"] = write_csv(out_dir / "effects.csv", EFFECT_COLUMNS, [r.csv_row() for r in effects])
    res.files["arm_means_csv"] = write_csv(out_dir / "arm_means.csv", MEAN_COLUMNS, res.means)
    if controls_in is not None:
        res.files["controls_csv"] = write_csv(
            out_dir / "controls.csv", CONTROL_COLUMNS, [r.csv_row() for r in controls]
        )
    if figures:
        from reports.effects_forest import forest_plot
        from reports.figures import save_figure
        from reports.keyframes import default_sheet_runs, keyframe_sheet

        if effects:
            fig, data = forest_plot(effects, res.bands)
            for k, p in save_figure(fig, out_dir / "figures", "effects_forest", data).items():
                res.files[f"forest_{k}"] = p
        runs = {r.name: r for a in arms.values() for r in a.runs}
        names = sheets if sheets is not None else default_sheet_runs(arms)
        unknown = [n for n in names if n not in runs]
        if unknown:
            raise FileNotFoundError(
                f"{root}: no run folder named {', '.join(unknown)} for a keyframe sheet; runs: {', '.join(sorted(runs))}"
            )
        for n in names:
            path = keyframe_sheet(runs[n].path, out_dir / f"keyframes_{n}.png", title=n)
            if path is None:
                res.notes.append(f"no keyframes under {runs[n].path / 'outputs'}: no sheet for {n}")
            else:
                res.files[f"keyframes_{n}"] = path
    res.files["effects_md"] = _atomic_text(out_dir / "effects.md", effects_markdown(res, out_dir))
    return res
