"""Keyframe sheets: one PNG per run with its stories as rows and shots as columns, to look at what an arm draws.

Reads the ViStoryBench output layout of a run (DESIGN.md §3.3)::

    <run>/outputs/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story>/shots/shot_NN.png

(an external arm's images are found through its ``config.yaml``, :func:`outputs_of`) and takes the first method (by name) and, of its folders, the latest timestamp. Stories and shots are in natural
order; a sheet shows at most ``max_stories`` × ``max_shots`` thumbnails (a missing shot is a grey cell). Labels are
drawn with PIL's built-in bitmap font, so no font file is needed. Nothing here imports torch.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsio

#: Shot file names as the official layout writes them (1-based).
_SHOT = re.compile(r"^shot_(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def _natural(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def outputs_of(run_dir: str | Path) -> tuple[Path, str | None] | None:
    """Where a run's keyframes are: ``<run>/outputs`` (any method), or for an external arm whose images live
    elsewhere (the ground truth), ``external.outputs`` / ``external.method`` of its ``config.yaml``, with ``{data}``
    taken from the data stage's folder in ``status.json``. None when neither is there."""
    run = Path(run_dir)
    if (run / "outputs").is_dir():
        return run / "outputs", None
    try:
        import yaml

        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        arms = config.get("arms") or {}
        entry = arms.get(run.name) or (next(iter(arms.values())) if len(arms) == 1 else {})
        ext = entry.get("external") or {}
        where = str(ext["outputs"])
        if "{data}" in where:
            status = json.loads((run / "status.json").read_text(encoding="utf-8"))
            where = where.replace("{data}", str(status["stages"]["data"]["info"]["dir"]))
        method = ext.get("method")
    except (OSError, KeyError, TypeError, AttributeError, ValueError, StopIteration):
        return None
    path = Path(where)
    return (path, str(method) if method else None) if path.is_dir() else None


def find_keyframes(run_dir: str | Path) -> dict[str, dict[int, Path]]:
    """story → shot number → image path, from the run's first method (or the external arm's method) and latest
    timestamp (empty if none)."""
    found_outputs = outputs_of(run_dir)
    if found_outputs is None:
        return {}
    outputs, only_method = found_outputs
    candidates: dict[tuple[str, str, str], list[Path]] = {}
    for ts in outputs.glob(f"{only_method or '*'}/*/*/*"):
        if ts.is_dir():
            method, mode, lang = ts.parent.parent.parent.name, ts.parent.parent.name, ts.parent.name
            candidates.setdefault((method, mode, lang), []).append(ts)
    for key in sorted(candidates):
        for ts in sorted(candidates[key], key=lambda p: p.name, reverse=True):
            found: dict[str, dict[int, Path]] = {}
            for shot in ts.glob("*/shots/*"):
                m = _SHOT.match(shot.name)
                if m and shot.is_file():
                    found.setdefault(shot.parent.parent.name, {})[int(m.group(1))] = shot
            if found:
                return dict(sorted(found.items(), key=lambda kv: _natural(kv[0])))
    return {}


def sheet_image(
    frames: Mapping[str, Mapping[int, Path]],
    title: str = "",
    thumb: int = 96,
    max_stories: int = 10,
    max_shots: int = 10,
) -> Any:
    """The sheet as a PIL image: a title line, shot numbers on top, story ids on the left, thumbnails in a grid."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    stories = list(frames)[:max_stories]
    shots = sorted({n for s in stories for n in frames[s]})[:max_shots]
    font = ImageFont.load_default()
    pad, left, top = 4, 64, 30
    w = left + len(shots) * (thumb + pad) + pad
    h = top + len(stories) * (thumb + pad) + pad
    sheet = Image.new("RGB", (max(w, 240), h), "white")
    draw = ImageDraw.Draw(sheet)
    more = []
    if len(frames) > len(stories):
        more.append(f"{len(stories)} of {len(frames)} stories")
    n_all = len({n for s in frames for n in frames[s]})
    if n_all > len(shots):
        more.append(f"{len(shots)} of {n_all} shots")
    draw.text((pad, 2), title + (f"  ({', '.join(more)})" if more else ""), fill="black", font=font)
    for j, n in enumerate(shots):
        draw.text((left + j * (thumb + pad) + thumb // 2 - 10, 16), f"shot {n}", fill="black", font=font)
    for i, story in enumerate(stories):
        y = top + i * (thumb + pad)
        draw.text((pad, y + thumb // 2 - 5), story[:10], fill="black", font=font)
        for j, n in enumerate(shots):
            x = left + j * (thumb + pad)
            path = frames[story].get(n)
            if path is None:
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=(200, 200, 200))
                continue
            with Image.open(path) as im:
                small = max(im.size) < thumb  # tiny synthetic keyframes: enlarge with crisp pixels
                tile = ImageOps.contain(
                    im.convert("RGB"), (thumb, thumb), Image.Resampling.NEAREST if small else Image.Resampling.LANCZOS
                )
            sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
    return sheet


def keyframe_sheet(run_dir: str | Path, path: str | Path, title: str = "", **kwargs: Any) -> Path | None:
    """Write the run's sheet to ``path`` atomically; None (nothing written) when the run has no keyframes."""
    frames = find_keyframes(run_dir)
    if not frames:
        return None
    image = sheet_image(frames, title or Path(run_dir).name, **kwargs)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return fsio.atomic_write_bytes(path, buf.getvalue())


def default_sheet_runs(arms: Mapping[str, Any]) -> list[str]:
    """Run folder names drawn by default: each reference arm's first seed, then every external arm (ground truth)."""
    names = [a.runs[0].name for a in arms.values() if a.role == "reference" and a.runs]
    names += [r.name for a in arms.values() if a.role == "external" for r in a.runs]
    return names
