"""A one-page Markdown summary of a sweep: the table, the figures, and each run's provenance and stage status.

It links files written beside it (``table1.md``, ``figures/*.png``) and the run directories (``config.yaml``,
``provenance.json``, ``status.json``) with relative paths, so the report folder can be opened in any Markdown viewer
or on a code host. Reads files only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsio
from formats.rundir import ARM_MARKERS, STATUS_FILE
from reports.rows import MeasuredRow
from reports.table1 import Table1, to_markdown


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def _status(arm_dir: Path) -> dict[str, Any]:
    path = arm_dir / STATUS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def summary_markdown(
    table: Table1,
    measured: list[MeasuredRow],
    figures: dict[str, dict[str, Path]],
    out_dir: str | Path,
    title: str,
    effects: dict[str, Path] | None = None,
) -> str:
    """The summary page's text (``out_dir`` is where it will be written; links are relative to it).

    ``effects`` are the files of the effects report (:func:`reports.effects.write_effects`), linked first: with
    several seeds per arm they, not Table 1, say which differences are real.
    """
    out = Path(out_dir)
    lines = [f"# {title}", ""]
    if effects:
        lines += ["## Effects (arm vs reference over seeds and stories)", ""]
        lines += [" · ".join(f"[{p.name}]({_rel(p, out)})" for p in effects.values()), ""]
    lines += [
        "## Table 1",
        "",
        "One row per run folder, each scored once, beside the paper's published rows: a reproduction table, not an "
        "effect estimate (no seed noise in it; see the effects report for which arm differences are real).",
        "",
        to_markdown(table).rstrip(),
        "",
    ]
    lines += ["Files: [table1.md](table1.md) · [table1.csv](table1.csv) · [table1.tex](table1.tex)", ""]
    if figures:
        lines += ["## Figures", ""]
        captions = {
            "metric_bars": "Per-metric values per arm (error bars: 95% bootstrap over stories).",
            "cids_per_character": "CIDS per character (one dot per story × character).",
            "training_curves": "Training losses per stage (Lightning CSV logs).",
        }
        for name, paths in figures.items():
            png = _rel(paths["png"], out)
            extra = " · ".join(f"[{k}]({_rel(p, out)})" for k, p in paths.items() if k != "png")
            lines += [f"**{captions.get(name, name)}** ({extra})", "", f"![{name}]({png})", ""]
    lines += ["## Runs", ""]
    lines += [
        "| Row | Era | Split | Backbones | Judge | Commit | Stages | Files |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measured:
        v, prov = m.values, m.provenance
        commit = str(prov.get("git_commit") or "unknown")[:12] + (" (dirty)" if prov.get("git_dirty") else "")
        arm_dir = m.path.parent if m.arm else m.path
        stages = _status(arm_dir)
        stage_text = ", ".join(f"{s} {r.get('seconds', '?')} s" for s, r in stages.items() if r.get("state") == "done")
        links = []
        for name in ARM_MARKERS:
            if (arm_dir / name).is_file():
                links.append(f"[{name}]({_rel(arm_dir / name, out)})")
        links.append(f"[results_row.json]({_rel(m.path / 'results_row.json', out)})")
        backbones = str(v.get("backbones", "?")).split(" (")[0]
        judge = str(v.get("judge") or "none").split(" (")[0]
        lines.append(
            f"| {m.label} | {v.get('era', '?')} | {v.get('split', '?')} ({v.get('n_stories', '?')}) | {backbones} | "
            f"{judge} | {commit} | {stage_text or '-'} | {' · '.join(links)} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_summary(text: str, out_dir: str | Path) -> Path:
    """Write ``summary.md`` atomically."""
    return fsio.atomic_write_text(Path(out_dir) / "summary.md", text)
