"""``unimage report table1 RUNS_OR_SWEEP... [-o DIR]`` and ``unimage report study --db URL [--study ID] [-o DIR]``.

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
    t1.set_defaults(func=run_table1)
    st = sub.add_parser("study", help="user-study figures (ranking distribution, GSB) from a study database")
    st.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file of the study store")
    st.add_argument("--study", type=int, default=None, help="study id (default: every study)")
    st.add_argument("-o", "--out", type=Path, default=Path("study_report"), help="output folder")
    st.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the GSB intervals")
    st.set_defaults(func=run_study)


def run_table1(args: argparse.Namespace) -> int:
    """Write and print Table 1; returns the exit code."""
    from reports.figures import sweep_figures
    from reports.rows import collect_rows
    from reports.summary import summary_markdown, write_summary
    from reports.table1 import build_table1, to_markdown, write_table1

    try:
        measured = collect_rows(list(args.paths))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    measured = sweep_order(measured)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent) / "report"
    table = build_table1(measured, include_cross=args.cross)
    paths = write_table1(table, out)
    figures = {} if args.no_figures else sweep_figures(measured, out / "figures", n_boot=args.n_boot)
    title = "Report: " + ", ".join(str(p) for p in args.paths)
    summary = write_summary(summary_markdown(table, measured, figures, out, title), out)
    print(to_markdown(table))
    written = [*paths.values(), *(p for f in figures.values() for p in f.values()), summary]
    print(f"wrote {len(written)} files under {out}: " + ", ".join(str(p.relative_to(out)) for p in written))
    return 0


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
