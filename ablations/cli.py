"""``unimage sweep FILE [--arms a,b] [--stages ...] [--dry-run] [--launcher local|torchrun|slurm] [--runs DIR]``.

A thin layer: parse, load the sweep (:func:`ablations.config.load_sweep`, which checks every key and type of every
arm, ``train.*`` against the ``unimage fit`` parser, so ``--dry-run`` refuses a typo before anything runs), plan
(:func:`ablations.runner.plan_sweep`), then run in-process or hand the per-arm commands to a launcher
(:mod:`ablations.launchers`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ablations.config import STAGES, SweepError
from ablations.schema_check import closest


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` arguments to ``parser``."""
    parser.add_argument("file", type=Path, help="sweep YAML (e.g. ablations/sweeps/smoke.yaml)")
    parser.add_argument("--arms", type=_csv, default=None, help="comma-separated arm names (default: all)")
    parser.add_argument(
        "--stages",
        type=_csv,
        default=None,
        help=f"comma-separated stages from {','.join(STAGES)} (default: each arm's own)",
    )
    parser.add_argument("--runs", type=Path, default=None, help="runs root (default: the sweep's 'runs', e.g. runs/)")
    parser.add_argument(
        "--launcher",
        choices=("local", "torchrun", "slurm"),
        default="local",
        help="local: in this process; torchrun/slurm: emit and run/submit per-arm commands",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the exact commands; run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines are still printed)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="arms run in this many parallel processes, one torch thread each (default: the number of cores)",
    )
    parser.add_argument(
        "--no-controls", action="store_true", help="do not score the sweep's positive controls after the arms"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for an arm another sweep process holds (default: 0, report it and go on)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``sweep`` command; returns the exit code (0 ok, 1 a stage failed, 2 bad input)."""
    from ablations.config import load_sweep
    from ablations.launchers import arm_commands, launch
    from ablations.runner import format_plan, plan_sweep, run_sweep, sweep_dir

    try:
        sweep = load_sweep(args.file)
        if args.stages:
            bad = [s for s in args.stages if s not in STAGES]
            if bad:
                near = closest(bad[0], STAGES)
                hint = f" (did you mean {near!r}?)" if near else ""
                raise SweepError(f"--stages: unknown stage(s) {bad}{hint}; choose from {list(STAGES)}")
        plans = plan_sweep(sweep, args.arms, args.stages, args.runs)
        commands = {p.arm.name: arm_commands(sweep, p, args.launcher, args.runs) for p in plans}
    except (SweepError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = sweep_dir(sweep, args.runs)
    if args.dry_run:
        print(f"sweep {sweep.name} ({sweep.path}) → {root}, launcher {args.launcher} (dry run: nothing is run)")
        print(f"checked: every key and type of the {len(sweep.arms)} runs' configs, train.* against `unimage fit`")
        print(format_plan(plans, commands, sweep), end="")
        if args.launcher != "local":
            launch(sweep, plans, args.launcher, args.runs, dry_run=True)
        return 0
    if args.launcher != "local":
        try:
            res = launch(sweep, plans, args.launcher, args.runs)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 1 if res.failed else 0
    print(f"sweep {sweep.name} ({sweep.path}) → {root}", file=sys.stderr)
    print(format_plan(plans), end="", file=sys.stderr)
    try:
        result = run_sweep(
            sweep,
            args.arms,
            args.stages,
            args.runs,
            progress=not args.no_progress,
            jobs=max(1, args.jobs),
            wait=args.wait,
            controls=not args.no_controls,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for a in result.arms:
        state = f"FAILED in {a.failed}: {a.error}" if a.failed else "ok"
        print(f"{a.arm}: ran {a.ran or '-'}, skipped {a.skipped or '-'} ({a.seconds:.1f} s) {state}")
    print(f"sweep {sweep.name}: {result.seconds:.1f} s; results under {root}")
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m ablations.cli FILE ...`` (same as ``unimage sweep``)."""
    parser = argparse.ArgumentParser(prog="unimage sweep")
    configure(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
