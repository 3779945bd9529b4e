"""Randomized ViStoryBench worlds whose images carry their own detections and identities, for parity tests.

A world is a dataset + outputs tree on disk plus "scripted" backbones that read the truth back from the pixels:

- every image has its id in pixel (0, 0) (colour ``(id // 256, id % 256, 201)``); the scripted detector returns
  that image's boxes from the world's table, in the world's (unsorted) detector order, through
  ``boxes_from_normalized_cxcywh`` exactly as the official ``predict`` + ``crop_img`` pipeline would see them;
- every box is drawn as a rectangle of its object's colour ``(obj // 256, obj % 256, 77)`` on a black background,
  with gaps between slots, so a crop (clipped or padded) contains one object; the scripted encoders return that
  object's feature from the table (``None`` face = no face found).

So a test knows, for every crop the evaluator makes, which object it is and what its feature is, and can restate
the official formulas on the table alone (see ``test_parity.py``). The draws cover multi-character stories, empty
shots, characters never shown, distractor people, degenerate (< 1 px) boxes with high scores, boxes out of the
frame, mixed tags, PNG and JPG references, missing shot files and 0-based names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bench.backbones.base import Backbones, Detections, IdentityFeatures, boxes_from_normalized_cxcywh

W, H = 96, 64
DIM = 16
ID_BLUE, OBJ_BLUE = 201, 77
BACKGROUND = 0  # object id of "no object in the crop"


@dataclass
class Box:
    """One detection: which object, where (normalised cx, cy, w, h), and its score."""

    obj: int
    cxcywh: tuple[float, float, float, float]
    score: float

    @property
    def degenerate(self) -> bool:
        """True when the official crop has no area (``int(w * W) == 0`` or ``int(h * H) == 0``)."""
        return int(self.cxcywh[2] * W) == 0 or int(self.cxcywh[3] * H) == 0


@dataclass
class Ref:
    """A reference image file of a character."""

    name: str
    image: int
    main: int  # the object the full image encodes to (the largest figure)


@dataclass
class Shot:
    """A shot: its index, listed characters, and its image (None = no file)."""

    index: int
    keys: list[str]
    image: int | None


@dataclass
class Char:
    """A character: tag and reference files."""

    tag: str
    refs: list[Ref]


@dataclass
class Story:
    """A story of the world."""

    sid: str
    chars: dict[str, Char]
    shots: list[Shot]
    zero_based: bool = False


@dataclass
class World:
    """Objects' features, images' detections, and the stories."""

    clip: dict[int, np.ndarray] = field(default_factory=dict)
    face: dict[int, np.ndarray | None] = field(default_factory=dict)
    detections: dict[int, list[Box]] = field(default_factory=dict)
    stories: dict[str, Story] = field(default_factory=dict)
    _next_obj: int = 1
    _next_image: int = 1

    def new_obj(self, clip: np.ndarray, face: np.ndarray | None) -> int:
        """Register an object with its CLIP and face features."""
        k = self._next_obj
        self._next_obj += 1
        self.clip[k], self.face[k] = clip.astype(np.float32), None if face is None else face.astype(np.float32)
        return k

    def new_image(self, boxes: list[Box]) -> int:
        """Register an image with its detections (detector order)."""
        k = self._next_image
        self._next_image += 1
        self.detections[k] = boxes
        return k

    def feature(self, obj: int, encoder: str) -> np.ndarray | None:
        """An object's feature for ``encoder`` ("clip" or "face")."""
        return self.clip[obj] if encoder == "clip" else self.face[obj]


def unit(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` in float32."""
    return (v / np.linalg.norm(v)).astype(np.float32)


##### drawing the world


def _layout(rng: np.random.Generator, n: int, widths: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """Non-overlapping horizontal slots (x0, x1) in pixels, 4 px apart; the first may run out of the frame."""
    slot = W / max(n, 1)
    out = []
    for i in range(n):
        frac = widths[i] if widths is not None else float(rng.uniform(0.5, 0.8))
        x0 = i * slot + 2
        x1 = x0 + max(3.0, (slot - 4) * frac)
        out.append((x0, x1))
    if n and rng.random() < 0.2:
        x0, x1 = out[0]
        out[0] = (x0 - 0.6 * (x1 - x0), x1)  # partly out of the frame: clipped crop vs padded crop
    return out


def _boxes(rng: np.random.Generator, objs: list[int], widths: Sequence[float] | None = None) -> list[Box]:
    boxes = []
    for obj, (x0, x1) in zip(objs, _layout(rng, len(objs), widths)):
        y0, y1 = float(rng.uniform(3, 12)), float(rng.uniform(40, H - 2))
        cx, cy, w, h = (x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H
        boxes.append(Box(obj, (cx, cy, w, h), float(rng.uniform(0.26, 0.99))))
    return boxes


def _degenerate(rng: np.random.Generator) -> Box:
    """A box narrower than 1 px with a high score (the official top-k picks it before dropping it)."""
    return Box(BACKGROUND, (float(rng.uniform(0.2, 0.8)), 0.5, 0.5 / W, 0.3), float(rng.uniform(0.9, 0.999)))


def draw(image_id: int, boxes: list[Box]) -> Image.Image:
    """The image: black, id pixel at (0, 0), each non-degenerate box filled with its object's colour."""
    im = Image.new("RGB", (W, H), (0, 0, 0))
    d = ImageDraw.Draw(im)
    for b in boxes:
        if b.degenerate or b.obj == BACKGROUND:
            continue
        det = boxes_from_normalized_cxcywh(torch.tensor([b.cxcywh]), torch.tensor([b.score]), W, H)
        if len(det) == 0:
            continue
        x0, y0, x1, y1 = det.boxes[0].tolist()
        d.rectangle((x0 - 1, max(2, y0 - 1), x1 + 1, y1 + 1), fill=(b.obj // 256, b.obj % 256, OBJ_BLUE))
    im.putpixel((0, 0), (image_id // 256, image_id % 256, ID_BLUE))
    return im


def random_world(
    seed: int,
    n_stories: int = 6,
    era: str = "A",
    tags: Sequence[str] | None = None,
    mixed_tags: float = 0.25,
    degenerate: float = 0.15,
) -> World:
    """Draw a world. Era A worlds have every shot file (positional pairing); B/C worlds miss some.

    ``mixed_tags`` is the share of stories whose characters have different tags (ViStoryBench has none);
    ``degenerate`` the chance that an image gets a sub-pixel box with a high score.
    """
    rng = np.random.default_rng(seed)
    world = World()
    tag_pool = list(tags or ("realistic_human", "unrealistic_human", "non_human"))
    for s in range(1, n_stories + 1):
        sid = f"{s:02d}"
        n_chars = int(rng.integers(1, 5))
        story_tag = tag_pool[int(rng.integers(len(tag_pool)))]
        mixed = rng.random() < mixed_tags
        chars: dict[str, Char] = {}
        base: dict[str, np.ndarray] = {}
        for c in range(n_chars):
            key = f"Char {sid}-{c}"
            tag = tag_pool[int(rng.integers(len(tag_pool)))] if mixed else story_tag
            base[key] = unit(rng.normal(size=DIM))
            face_base = unit(rng.normal(size=DIM))
            refs = []
            for r in range(int(rng.integers(1, 4))):
                ext = "jpg" if r == 0 or rng.random() < 0.5 else "png"
                noface = rng.random() < 0.1 and r > 0
                main = world.new_obj(
                    unit(base[key] + 0.3 * rng.normal(size=DIM)),
                    None if noface else unit(face_base + 0.3 * rng.normal(size=DIM)),
                )
                objs, widths = [main], [0.9]
                if rng.random() < 0.3:
                    objs.append(world.new_obj(unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))))
                    widths.append(0.4)
                boxes = _boxes(rng, objs, widths)
                if rng.random() < degenerate:
                    boxes.append(_degenerate(rng))
                rng.shuffle(boxes)  # type: ignore[arg-type]
                refs.append(Ref(f"{r:02d}.{ext}", world.new_image(boxes), main))
            chars[key] = Char(tag, refs)
            base[key + "/face"] = face_base
        shots = []
        keys = list(chars)
        for i in range(1, int(rng.integers(3, 9)) + 1):
            listed = [k for k in keys if rng.random() < 0.5]
            objs = []
            for k in listed:
                if rng.random() < 0.8:
                    noface = rng.random() < 0.15
                    objs.append(
                        world.new_obj(
                            unit(base[k] + 0.5 * rng.normal(size=DIM)),
                            None if noface else unit(base[k + "/face"] + 0.5 * rng.normal(size=DIM)),
                        )
                    )
            for _ in range(int(rng.integers(0, 3))):
                objs.append(world.new_obj(unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))))
            boxes = _boxes(rng, objs) if objs else []
            if rng.random() < degenerate:
                boxes.append(_degenerate(rng))
            rng.shuffle(boxes)  # type: ignore[arg-type]
            missing = era != "A" and rng.random() < 0.1
            shots.append(Shot(i, listed, None if missing else world.new_image(boxes)))
        world.stories[sid] = Story(sid, chars, shots, zero_based=era != "A" and rng.random() < 0.15)
    return world


def write_world(world: World, root: Path) -> tuple[Path, Path]:
    """Write the dataset and a ``world/base/en/<ts>/`` outputs run; returns (dataset, outputs)."""
    dataset, outputs = root / "ViStory", root / "outputs"
    run = outputs / "world" / "base" / "en" / "20250101_000000"
    for story in world.stories.values():
        d = dataset / story.sid
        characters = {}
        for key, ch in story.chars.items():
            folder = d / "image" / key
            folder.mkdir(parents=True)
            for ref in ch.refs:
                # PNG bytes even in a .jpg file: the official glob goes by the name, PIL by the content, and the
                # colours that identify objects must survive exactly.
                draw(ref.image, world.detections[ref.image]).save(folder / ref.name, format="PNG")
            characters[key] = {"tag": ch.tag, "name_en": key, "name_ch": key, "prompt_en": "", "prompt_ch": ""}
        shots_json = []
        shots_dir = run / story.sid / "shots"
        shots_dir.mkdir(parents=True)
        for shot in story.shots:
            shots_json.append(
                {
                    "index": shot.index,
                    "Plot Correspondence": {"en": "p", "ch": "p"},
                    "Setting Description": {"en": "s", "ch": "s"},
                    "Shot Perspective Design": {"en": "c", "ch": "c"},
                    "Characters Appearing": {"en": shot.keys, "ch": shot.keys},
                    "Static Shot Description": {"en": "a", "ch": "a"},
                }
            )
            if shot.image is not None:
                number = shot.index - 1 if story.zero_based else shot.index
                draw(shot.image, world.detections[shot.image]).save(shots_dir / f"shot_{number:02d}.png")
        (d / "story.json").write_text(
            json.dumps({"Story_type": {"en": "t", "ch": "t"}, "Characters": characters, "Shots": shots_json}),
            encoding="utf-8",
        )
    return dataset, outputs


##### scripted backbones: read the truth back from the pixels


def _object_of(im: Image.Image) -> int:
    a = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int64)
    objs = a[a[:, 2] == OBJ_BLUE]
    if len(objs) == 0:
        return BACKGROUND
    ids = objs[:, 0] * 256 + objs[:, 1]
    return int(np.bincount(ids).argmax())


def _image_id(im: Image.Image) -> int:
    r, g, b = im.convert("RGB").getpixel((0, 0))  # type: ignore[misc]
    if b != ID_BLUE:
        raise ValueError("not a world image: no id pixel")
    return int(r) * 256 + int(g)


@dataclass
class WorldDetector:
    """Returns each image's scripted boxes (the caption is ignored)."""

    world: World

    def detect(self, images: Sequence[Image.Image], caption: str) -> list[Detections]:
        out = []
        for im in images:
            boxes = self.world.detections[_image_id(im)]
            if not boxes:
                out.append(Detections.empty())
                continue
            cxcywh = torch.tensor([b.cxcywh for b in boxes], dtype=torch.float32)
            scores = torch.tensor([b.score for b in boxes], dtype=torch.float32)
            out.append(boxes_from_normalized_cxcywh(cxcywh, scores, *im.size))
        return out


@dataclass
class WorldEncoder:
    """Returns the feature of the object a crop shows (background: a fixed vector for CLIP, no face)."""

    world: World
    kind: str  # "clip" or "face"

    @property
    def name(self) -> str:
        return f"world-{self.kind}"

    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        rows, valid = [], []
        for im in images:
            obj = _object_of(im)
            f = self.world.feature(obj, self.kind) if obj != BACKGROUND else None
            if f is None and self.kind == "clip":
                f = background_clip()
            rows.append(np.zeros(DIM, np.float32) if f is None else f)
            valid.append(f is not None)
        return IdentityFeatures(
            {self.name: torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, DIM)},
            {self.name: torch.tensor(valid, dtype=torch.bool)},
        )


def background_clip() -> np.ndarray:
    """CLIP feature of a crop that shows no object."""
    return unit(np.ones(DIM))


def world_backbones(world: World, era: str = "A") -> Backbones:
    """Backbones for the CIDS / OCCM paths: scripted detector, CLIP and face encoders."""
    return Backbones(
        name="world (scripted)",
        comparable=False,
        era=era,  # type: ignore[arg-type]
        device="cpu",
        factories={
            "detector": lambda: WorldDetector(world),
            "clip": lambda: WorldEncoder(world, "clip"),
            "face": lambda: WorldEncoder(world, "face"),
        },
    )
