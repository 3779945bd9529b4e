"""``unimage report table1 RUNS_OR_SWEEP... [-o DIR]``, ``unimage report effects SWEEP [-o DIR]`` and
``unimage report study --db URL [--study ID] [-o DIR]``.

``effects`` writes the effects report of a multi-seed sweep (``effects.csv``, ``controls.csv``, the forest plot,
keyframe sheets, ``effects.md``; :mod:`reports.effects`); ``table1`` writes it too for every given sweep folder that
has ``arm.json`` run folders, and links it from ``summary.md``.

``table1`` prints Table 1 as Markdown and writes ``table1.md/.csv/.tex``, the figures (``figures/*.png|pdf|csv``) and
``summary.md`` into ``-o`` (default: ``<first path>/report``). ``study`` writes the user-study figures of a study
database (ranking distribution per criterion as the paper's Figure 9, GSB bars with raw counts). Both read files
(or the database) only and never recompute a metric.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="report_command", metavar="SUBCOMMAND", required=True)
    t1 = sub.add_parser("table1", help="Table 1 (md, csv, tex) + figures + summary from run directories")
    t1.add_argument("paths", nargs="+", type=Path, help="sweep folders (runs/smoke), arm folders or evaluation folders")
    t1.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: <first path>/report)")
    t1.add_argument("--cross", action="store_true", default=None, help="always include the CSD/CIDS cross columns")
    t1.add_argument("--no-figures", action="store_true", help="tables and summary only")
    t1.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over stories for error bars")
    add_effects_options(t1)
    t1.set_defaults(func=run_table1)
    ef = sub.add_parser(
        "effects", help="effects of a multi-seed sweep (arm vs reference), controls, forest plot, sheets"
    )
    ef.add_argument("sweep", type=Path, help="sweep folder with one arm.json per run (runs/<sweep>)")
    ef.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: <sweep>/report)")
    add_effects_options(ef)
    ef.set_defaults(func=run_effects)
    st = sub.add_parser("study", help="user-study figures (ranking distribution, GSB) from a study database")
    st.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file of the study store")
    st.add_argument("--study", type=int, default=None, help="study id (default: every study)")
    st.add_argument("-o", "--out", type=Path, default=Path("study_report"), help="output folder")
    st.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the GSB intervals")
    st.set_defaults(func=run_study)


def run_table1(args: argparse.Namespace) -> int:
    """Write and print Table 1; returns the exit code."""
    from reports.effects import has_effects_inputs
    from reports.figures import sweep_figures
    from reports.rows import collect_rows
    from reports.summary import summary_markdown, write_summary
    from reports.table1 import build_table1, to_markdown, write_table1

    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent) / "report"
    sweeps = [p for p in args.paths if has_effects_inputs(p)]
    try:
        measured = collect_rows(list(args.paths))
    except FileNotFoundError as e:
        if not sweeps:
            print(f"error: {e}", file=sys.stderr)
            return 2
        measured = []  # a multi-seed sweep scored per story only: the effects report is all there is
        print(f"note: no Table 1 ({e})", file=sys.stderr)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    effects: dict[str, Path] = {}
    for sweep in sweeps:
        code, files = _effects(sweep, out if len(sweeps) == 1 else out / sweep.name, args)
        if code:
            return code
        effects.update({f"{sweep.name}/{k}" if len(sweeps) > 1 else k: p for k, p in files.items()})
    measured = sweep_order(measured)
    written: list[Path] = list(effects.values())
    if measured:
        table = build_table1(measured, include_cross=args.cross)
        paths = write_table1(table, out)
        figures = {} if args.no_figures else sweep_figures(measured, out / "figures", n_boot=args.n_boot)
        title = "Report: " + ", ".join(str(p) for p in args.paths)
        summary = write_summary(summary_markdown(table, measured, figures, out, title, effects=effects), out)
        print(to_markdown(table))
        written += [*paths.values(), *(p for f in figures.values() for p in f.values()), summary]
    print(f"wrote {len(written)} files under {out}: " + ", ".join(str(p.relative_to(out)) for p in written))
    return 0


def add_effects_options(parser: argparse.ArgumentParser) -> None:
    """Options of the effects report (shared by ``effects`` and ``table1``)."""
    parser.add_argument("--resamples", type=int, default=4000, help="bootstrap resamples (effects and controls)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling draw")
    parser.add_argument(
        "--method",
        choices=("twolevel", "welch", "bootstrap"),
        default="twolevel",
        help="effect CI/p: Welch over seed+story components and a paired t over seeds, both must reject "
        "(twolevel); Welch alone; or the plain hierarchical percentile bootstrap (anti-conservative with ~3 seeds; "
        "see reports/effects_stats.py)",
    )
    parser.add_argument(
        "--sheets",
        default=None,
        help="comma-separated run folders to draw keyframe sheets of (default: reference arm's first seed + ground truth)",
    )


def _effects(sweep: Path, out: Path, args: argparse.Namespace) -> tuple[int, dict[str, Path]]:
    from reports.effects import write_effects
    from reports.effects_io import EffectsInputError

    sheets = [s.strip() for s in args.sheets.split(",") if s.strip()] if args.sheets else None
    if args.resamples < 1:
        print(f"error: --resamples must be ≥ 1, got {args.resamples}", file=sys.stderr)
        return 2, {}
    try:
        res = write_effects(
            sweep,
            out,
            method=args.method,
            resamples=args.resamples,
            seed=args.seed,
            sheets=sheets,
            figures=not getattr(args, "no_figures", False),
        )
    except (FileNotFoundError, EffectsInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, {}
    detected = [r for r in res.effects if r.detected and r.role != "null"]
    null_sig = [r for r in res.effects if r.detected and r.role == "null"]
    blind = [c for c in res.controls if c.blind]
    print(
        f"effects of {sweep}: {len(res.effects)} arm × metric rows, {len(detected)} detected; "
        f"null arm Holm-significant: {len(null_sig)}; blind metric × corruption: {len(blind)}"
    )
    for n in res.notes:
        print(f"note: {n}", file=sys.stderr)
    return 0, res.files


def run_effects(args: argparse.Namespace) -> int:
    """Write the effects report of one sweep; returns the exit code."""
    out = args.out or args.sweep / "report"
    code, files = _effects(args.sweep, out, args)
    if code == 0:
        print(f"wrote {len(files)} files under {out}: " + ", ".join(str(p.relative_to(out)) for p in files.values()))
    return code


def sweep_order(measured: list[Any]) -> list[Any]:
    """Rows of one sweep in the sweep file's arm order (``arm_index`` written by the runner); others keep their place."""
    first_seen: dict[str | None, int] = {}
    for i, m in enumerate(measured):
        first_seen.setdefault(m.sweep, i)

    def key(item: tuple[int, Any]) -> tuple[int, float, int]:
        i, m = item
        index = m.values.get("arm_index")
        return (first_seen[m.sweep], float(index) if isinstance(index, int) else float("inf"), i)

    return [m for _, m in sorted(enumerate(measured), key=key)]


def run_study(args: argparse.Namespace) -> int:
    """Write the user-study figures; returns the exit code."""
    from reports.study import study_figures

    try:
        written = study_figures(args.db, args.out, study_id=args.study, n_boot=args.n_boot)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, paths in written.items():
        print(f"{name}: " + ", ".join(str(p) for p in paths.values()))
    return 0
