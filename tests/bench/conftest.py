"""A tiny ViStoryBench story set and generated outputs, drawn with PIL in the real layouts.

Stories 01, 02 and 08 (01 and 08 are lite ids). Every character is a coloured figure on a flat background, so
the toy detector finds it and the toy encoders tell characters apart. Outputs of method "toy-method", mode
"base", lang "en" contain, on purpose:
- story 02: shot 2 has no image;
- story 08: files named 0-based (shot_00.png ...) and one corrupt PNG (the last shot).
An older timestamp folder holds garbage to check that the latest run is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SIZE = 64
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 60), "yellow": (230, 210, 40)}
BACKGROUNDS = {"01": (235, 235, 235), "02": (40, 40, 40), "08": (200, 220, 250)}

STORIES: dict[str, dict] = {
    "01": {
        "chars": {"Alice": ("realistic_human", "red"), "Bob": ("realistic_human", "blue")},
        "shots": [["Alice"], ["Alice", "Bob"], ["Bob"], []],
    },
    "02": {
        "chars": {"Fox": ("non_human", "green"), "Owl": ("unrealistic_human", "yellow")},
        "shots": [["Fox"], ["Fox", "Owl"], ["Owl"]],
    },
    "08": {
        "chars": {
            "Cara": ("unrealistic_human", "blue"),
            "Dan": ("unrealistic_human", "red"),
            "Eve": ("unrealistic_human", "green"),
        },
        "shots": [["Cara", "Dan"], ["Dan", "Eve"], ["Cara", "Dan", "Eve"], ["Eve"]],
    },
}


def figure(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int], variant: int = 0
) -> None:
    """A 'character': body rectangle plus a head disc, slightly different per variant."""
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0 + (y1 - y0) // 3, x1, y1), fill=colour)
    r = (x1 - x0) // 3 + variant
    cx = (x0 + x1) // 2
    draw.ellipse((cx - r, y0, cx + r, y0 + 2 * r), fill=tuple(min(255, c + 25 * variant) for c in colour))


def story_json(sid: str) -> dict:
    spec = STORIES[sid]
    chars = {
        key: {
            "tag": tag,
            "name_en": key,
            "name_ch": f"{key}-ch",
            "prompt_en": f"a {col} figure",
            "prompt_ch": "角色",
            "num_of_appearances": 1,
        }
        for key, (tag, col) in spec["chars"].items()
    }
    shots = []
    for i, keys in enumerate(spec["shots"], start=1):
        cols = " and ".join(spec["chars"][k][1] for k in keys) or "empty"
        shots.append(
            {
                "index": i,
                "Plot Correspondence": {"en": f"plot {i}", "ch": f"情节 {i}"},
                "Setting Description": {"en": f"a plain room, shot {i}", "ch": f"房间 {i}"},
                "Shot Perspective Design": {"en": "Medium shot, eye level shot", "ch": "中景"},
                "Characters Appearing": {"en": list(keys), "ch": [f"{k}-ch" for k in keys]},
                "Static Shot Description": {"en": f"{cols} figures stand", "ch": "人物站立"},
            }
        )
    return {"Story_type": {"en": "Children's Picture Books", "ch": "儿童绘本"}, "Characters": chars, "Shots": shots}


def draw_shot(sid: str, keys: list[str], variant: int = 0) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[sid])
    draw = ImageDraw.Draw(im)
    # At least two slots, so a lone figure does not span the frame (the toy detector needs background around it).
    n = max(2, len(keys))
    width = SIZE // n
    for j, key in enumerate(keys):
        colour = COLOURS[STORIES[sid]["chars"][key][1]]
        figure(draw, (j * width + 4, 12 + variant, (j + 1) * width - 4, SIZE - 6), colour, variant % 3)
    return im


def build_dataset(root: Path) -> Path:
    for sid, spec in STORIES.items():
        d = root / sid
        d.mkdir(parents=True)
        text = json.dumps(story_json(sid), ensure_ascii=False, indent=1)
        # Story 01 is written with a BOM, as some official files are (must be read as utf-8-sig).
        (d / "story.json").write_text(("\ufeff" if sid == "01" else "") + text, encoding="utf-8")
        for key, (_, col) in spec["chars"].items():
            folder = d / "image" / key
            folder.mkdir(parents=True)
            for k in range(2):
                im = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
                figure(ImageDraw.Draw(im), (14, 8, 50, 60), COLOURS[col], k)
                im.save(folder / f"0{k}.{'jpg' if k else 'png'}")
    return root


def build_outputs(root: Path, method: str = "toy-method", mode: str = "base", ts: str = "20250102_030405") -> Path:
    run = root / method / mode / "en" / ts
    for sid, spec in STORIES.items():
        shots = run / sid / "shots"
        shots.mkdir(parents=True)
        n = len(spec["shots"])
        for i, keys in enumerate(spec["shots"], start=1):
            if sid == "02" and i == 2:
                continue  # missing image
            name = f"shot_{i - 1:02d}.png" if sid == "08" else f"shot_{i:02d}.png"
            if sid == "08" and i == n:
                (shots / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"corrupt" * 10)  # corrupt PNG
                continue
            draw_shot(sid, keys, variant=i).save(shots / name)
    old = root / method / mode / "en" / "20240101_000000" / "01" / "shots"
    old.mkdir(parents=True)
    (old / "shot_01.png").write_bytes(b"not an image")
    return root


@pytest.fixture
def bench_data(tmp_path: Path) -> tuple[Path, Path]:
    """(dataset root, outputs root) of a fresh fixture set."""
    return build_dataset(tmp_path / "ViStory"), build_outputs(tmp_path / "outputs")
