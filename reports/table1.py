"""Table 1 of the UniMAGE paper, with our measured rows beside the published ones.

The table has the paper's rows first (in the paper's order), then one row per measured run. A measured row that
reproduces a published method (by ``published_as`` or its method name) gets a delta row under it. The best value per
column is marked among the published rows and the *comparable* measured rows; rows produced with toy backbones or a
toy judge are flagged "not comparable" and never win a column. The footnote states era, split, backbones, judge and
commit of every measured row.

Outputs: Markdown (``table1.md``), CSV (``table1.csv``, one line per row with numbers unrounded) and LaTeX
(``table1.tex``, booktabs).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import fsio
from formats.published import UNIMAGE_TABLE1, published_row
from formats.results import ALL_COLUMNS, CROSS_COLUMNS, DECIMALS, HEADERS, TABLE1_COLUMNS
from reports.rows import MeasuredRow

NOT_COMPARABLE = "not comparable"


@dataclass
class TableRow:
    """One printed row: a name, its kind, and a value per column (None = not reported)."""

    name: str
    kind: str  # "published" | "measured" | "delta"
    values: dict[str, float | None]
    comparable: bool = True
    note: str = ""


@dataclass
class Table1:
    """The assembled table: columns, rows, and footnotes."""

    columns: tuple[str, ...]
    rows: list[TableRow]
    footnotes: list[str] = field(default_factory=list)

    def best(self) -> dict[str, float | None]:
        """Best value per column (all columns are higher-is-better) among published and comparable measured rows."""
        out: dict[str, float | None] = {}
        for c in self.columns:
            vals = [v for r in self.rows if r.kind != "delta" and r.comparable and (v := r.values.get(c)) is not None]
            out[c] = max(vals) if vals else None
        return out


def build_table1(measured: list[MeasuredRow], include_cross: bool | None = None) -> Table1:
    """Assemble Table 1 from measured rows.

    Args:
        measured: rows read by :func:`reports.rows.collect_rows`.
        include_cross: add the CSD/CIDS cross columns; default: when any measured row has them.
    """
    if include_cross is None:
        include_cross = any(m.value(c) is not None for m in measured for c in CROSS_COLUMNS)
    columns = ALL_COLUMNS if include_cross else TABLE1_COLUMNS
    rows = [TableRow(p.method, "published", {c: p.values.get(c) for c in columns}) for p in UNIMAGE_TABLE1]
    notes: list[str] = []
    for m in measured:
        vals = {c: m.value(c) for c in columns}
        note = "" if m.comparable else NOT_COMPARABLE
        rows.append(TableRow(f"{m.label} (ours)", "measured", vals, comparable=m.comparable, note=note))
        pub = published_row(m.published_as) if m.published_as else None
        if pub is not None:
            delta = {
                c: (v - pub.values[c]) if (v := vals[c]) is not None and c in pub.values else None for c in columns
            }
            rows.append(TableRow(f"  Δ vs published {pub.method}", "delta", delta, comparable=m.comparable, note=note))
        notes.append(_footnote(m))
    head = "Published rows: UniMAGE paper Table 1 (ViStoryBench full split, Era A conventions)."
    return Table1(columns=columns, rows=rows, footnotes=[head, *notes])


def _footnote(m: MeasuredRow) -> str:
    v, prov = m.values, m.provenance
    commit = prov.get("git_commit") or prov.get("commit") or "unknown"
    if isinstance(commit, dict):
        commit = commit.get("sha") or commit.get("commit") or "unknown"
    parts = [
        f"era {v.get('era', '?')}",
        f"split {v.get('split', '?')} ({v.get('n_stories', '?')} stories)",
        f"backbones {v.get('backbones', '?')}",
        f"judge {v.get('judge') or 'none'}",
        f"commit {str(commit)[:12]}",
    ]
    text = f"{m.label}: " + ", ".join(parts) + "."
    if not m.comparable:
        reasons = v.get("non_comparable_reasons") or ["toy backbones or judge: weight-free stand-ins"]
        text += f" NOT COMPARABLE with published numbers ({'; '.join(str(r) for r in reasons)})."
    return text


def _fmt(value: float | None, column: str, delta: bool = False) -> str:
    if value is None:
        return "–"
    d = DECIMALS[column]
    return f"{value:+.{d}f}" if delta else f"{value:.{d}f}"


def to_markdown(table: Table1) -> str:
    """GitHub Markdown; best values in bold, non-comparable rows marked with †."""
    best = table.best()
    header = ["Method", *(HEADERS[c] for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":-:"] * len(table.columns)) + "|"]
    for r in table.rows:
        cells = []
        for c in table.columns:
            s = _fmt(r.values.get(c), c, delta=r.kind == "delta")
            if r.kind != "delta" and r.comparable and r.values.get(c) is not None and r.values.get(c) == best[c]:
                s = f"**{s}**"
            cells.append(s)
        name = r.name + (" †" if not r.comparable and r.kind == "measured" else "")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    foot = [f"- {n}" for n in table.footnotes]
    if any(not r.comparable for r in table.rows):
        foot.append(f"- † {NOT_COMPARABLE}: computed with toy backbones/judge; excluded from the best-value marks.")
    return "\n".join(lines) + "\n\n" + "\n".join(foot) + "\n"


def to_csv(table: Table1) -> str:
    """One CSV line per row, numbers unrounded, with the row kind and comparability."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "kind", "comparable", *table.columns])
    for r in table.rows:
        w.writerow(
            [
                r.name.strip(),
                r.kind,
                r.comparable,
                *("" if r.values.get(c) is None else r.values[c] for c in table.columns),
            ]
        )
    return buf.getvalue()


def _tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("Δ", r"$\Delta$"),
    ):
        s = s.replace(a, b)
    return s


def to_latex(table: Table1) -> str:
    """A booktabs tabular; best values in bold, a midrule between published and measured rows."""
    best = table.best()
    cols = "l" + "c" * len(table.columns)
    out = [r"\begin{tabular}{" + cols + "}", r"\toprule"]
    out.append(" & ".join(["Methods", *(HEADERS[c] + r"$\uparrow$" for c in table.columns)]) + r" \\")
    out.append(r"\midrule")
    previous = "published"
    for r in table.rows:
        if previous == "published" and r.kind != "published":
            out.append(r"\midrule")
        previous = r.kind
        cells = []
        for c in table.columns:
            s = _fmt(r.values.get(c), c, delta=r.kind == "delta")
            if r.kind != "delta" and r.comparable and r.values.get(c) is not None and r.values.get(c) == best[c]:
                s = r"\textbf{" + s + "}"
            cells.append(s)
        name = _tex_escape(r.name.strip()) + ("$^\\dagger$" if not r.comparable and r.kind == "measured" else "")
        if r.kind == "delta":
            name = r"\quad " + name
        out.append(" & ".join([name, *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += ["% " + n for n in table.footnotes]
    return "\n".join(out) + "\n"


def write_table1(table: Table1, out_dir: str | Path) -> dict[str, Path]:
    """Write ``table1.md``, ``table1.csv`` and ``table1.tex`` atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, text in (("md", to_markdown(table)), ("csv", to_csv(table)), ("tex", to_latex(table))):
        p = out / f"table1.{ext}"
        fsio.atomic_write_text(p, text)
        paths[ext] = p
    return paths
