"""Weight-free, deterministic stand-ins for every ViStoryBench backbone — NOT comparable with published numbers.

Why they exist: the whole pipeline (dataset → outputs → metrics → results) must run on a laptop CPU with no
network and no weight bundle, e.g. on the procedurally generated SynthStory set, in CI and in demos. The
numbers they give measure colour statistics, not style/identity/aesthetics as the real networks do; every
result made with them is labelled `comparable_with_published = False`.

Determinism: no learned weights; the only "random" parts are projection matrices drawn from numpy's PCG64
generator with fixed seeds (stable across numpy versions and platforms), and all image statistics are
computed in float64 from images resized with PIL, so the same image gives the same numbers everywhere.

What each extractor computes (S = working resolution, N images):
- style: 8×8×8 joint RGB histogram of the image at 64×64, square-rooted (Hellinger) and L2-normalised → [N, 512].
- identity ("toy-face" / "toy-clip"): 4×4 grid of mean colours + 4×4×4 RGB histogram (112 values), centred
  and projected by a fixed Gaussian matrix (a different seed per encoder) → unit [N, 128]. "toy-face"
  reports "no face" for crops smaller than 16 px on a side, so the no-face code paths run too.
- detector: figures = connected regions whose colour differs from the background, where the background is
  the set of colours that cover ≥ 4 % of the image border (works for flat or banded procedural scenes);
  regions stacked vertically are merged (hat over body), flat stripes and wide bands dropped, and boxes kept
  if 1.15 ≤ height/width ≤ 4. The caption is ignored. Props of figure-like shape (a tree) still count.
- aesthetic: 1 + 9 · (1 − exp(−(colourfulness + contrast) / 80)), colourfulness after Hasler & Süsstrunk
  (2003) and RMS luminance contrast, both on the 0–255 scale → (1, 10).
- inception: 1000 logits = a fixed Gaussian projection of colour/layout/edge statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from bench.backbones.base import Backbones, Detections, Era, IdentityFeatures, boxes_from_normalized_cxcywh

TOY_NAME = "toy (weight-free colour statistics; NOT comparable with published ViStoryBench numbers)"


def _stack(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images → [N, 3, size, size] float64 in [0, 1] (bilinear squash-resize with PIL)."""
    if not images:
        return torch.zeros(0, 3, size, size, dtype=torch.float64)
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0  # [N, 3, S, S]


def _rgb_histogram(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Joint RGB histogram of [N, 3, S, S] images in [0, 1] → [N, bins³] fractions summing to 1."""
    n = x.shape[0]
    q = (x * bins).long().clamp(0, bins - 1)  # [N, 3, S, S]
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # [N, S, S]
    hist = torch.zeros(n, bins**3, dtype=torch.float64)
    hist.scatter_add_(1, idx.reshape(n, -1), torch.ones(n, idx[0].numel(), dtype=torch.float64))
    return hist / idx[0].numel()


def _grid_means(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean colour of each cell of a cells×cells grid: [N, 3, S, S] → [N, 3·cells²]."""
    return torch.nn.functional.adaptive_avg_pool2d(x, cells).flatten(1)


def _gaussian(seed: int, rows: int, cols: int) -> torch.Tensor:
    """A fixed [rows, cols] standard-normal matrix from numpy's PCG64 (version-stable)."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((rows, cols)))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1).float()


#####################################################################################################
# Extractors
#####################################################################################################


@dataclass
class ToyStyleEncoder:
    """CSD stand-in: colour-palette embedding (style ≈ palette for procedurally drawn stories)."""

    size: int = 64
    bins: int = 8

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed images → [N, bins³] float32, unit rows."""
        if not images:
            return torch.zeros(0, self.bins**3)
        return _unit(_rgb_histogram(_stack(images, self.size), self.bins).sqrt())


class ToyIdentityEncoder:
    """CIDS encoder stand-in: colour layout + palette, randomly projected (fixed seed per encoder name)."""

    def __init__(self, name: str, seed: int, min_side: int = 0, dim: int = 128, size: int = 32) -> None:
        """Args: name (provenance key), seed (projection), min_side (smaller crops have "no face"), dim, size."""
        self.name = name
        self.min_side = min_side
        self.size = size
        self._proj = _gaussian(seed, 3 * 16 + 64, dim)  # [112, dim]

    def encode(self, images: Sequence[Image.Image]) -> IdentityFeatures:
        """Embed crops → one encoder entry with [N, dim] unit rows; crops below `min_side` are invalid."""
        valid = torch.tensor([min(im.size) >= self.min_side for im in images], dtype=torch.bool)
        if not images:
            return IdentityFeatures({self.name: torch.zeros(0, self._proj.shape[1])}, {self.name: valid})
        x = _stack(images, self.size)
        stats = torch.cat([_grid_means(x, 4), _rgb_histogram(x, 4) * 4.0], dim=1)  # [N, 112]
        feats = _unit((stats - 0.25) @ self._proj) * valid[:, None]  # [N, dim], zero rows where invalid
        return IdentityFeatures({self.name: feats}, {self.name: valid})


@dataclass
class ToyDetector:
    """Grounding DINO stand-in: figures are regions whose colour is not a background colour.

    Attributes:
        size: working resolution of the longer side.
        border_share: a quantised colour covering at least this share of the border pixels is background.
        min_distance: a pixel is foreground if its RGB distance (0–√3 scale) to every background colour
            exceeds this.
        min_area: components smaller than this fraction of the image are ignored.
        max_boxes: keep at most this many boxes (best first).
        min_aspect, max_aspect: kept boxes have height / width in this range (figures stand; poles, houses
            and backdrop stripes do not fit).
    """

    size: int = 128
    border_share: float = 0.04
    min_distance: float = 0.10
    min_area: float = 0.004
    max_boxes: int = 16
    min_aspect: float = 1.15
    max_aspect: float = 4.0

    def detect(self, images: Sequence[Image.Image], caption: str) -> list[Detections]:
        """Find figures in each image; `caption` is ignored (documented toy limitation)."""
        return [self._detect_one(im) for im in images]

    def _detect_one(self, image: Image.Image) -> Detections:
        w, h = image.size
        scale = self.size / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        x = np.asarray(image.convert("RGB").resize((sw, sh), Image.Resampling.BILINEAR)).astype(np.float64) / 255.0
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])  # [P, 3]
        quant = np.minimum((border * 8).astype(np.int64), 7)
        codes = (quant[:, 0] * 8 + quant[:, 1]) * 8 + quant[:, 2]
        values, counts = np.unique(codes, return_counts=True)
        bg_codes = values[counts >= self.border_share * len(codes)]
        if len(bg_codes) == 0:  # busy border: fall back to the single most common border colour
            bg_codes = values[[int(np.argmax(counts))]]
        bg_colours = np.stack([border[codes == c].mean(axis=0) for c in bg_codes])  # [B, 3]
        dist = np.linalg.norm(x[:, :, None, :] - bg_colours[None, None], axis=-1).min(axis=-1)  # [sh, sw]
        mask = ndimage.binary_opening(dist > self.min_distance, iterations=1)
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        if count == 0:
            return Detections.empty()
        areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        parts = [
            [sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, float(areas[lab])]
            for lab, sl in enumerate(ndimage.find_objects(labels))
            if sl is not None
        ]  # (x0, y0, x1, y1, area) in working pixels
        # stripes and grid lines of the backdrop: very flat or spanning most of the width
        parts = [p for p in parts if (p[3] - p[1]) >= 0.25 * (p[2] - p[0]) and (p[2] - p[0]) < 0.6 * sw]
        boxes, scores = [], []
        for x0, y0, x1, y1, area in _merge_stacked(parts):
            aspect = (y1 - y0) / (x1 - x0)  # standing figures are taller than wide, but not poles
            if area < self.min_area * sw * sh or not self.min_aspect <= aspect <= self.max_aspect:
                continue
            fill = area / ((y1 - y0) * (x1 - x0))
            boxes.append([(x0 + x1) / 2 / sw, (y0 + y1) / 2 / sh, (x1 - x0) / sw, (y1 - y0) / sh])
            scores.append(0.3 + 0.7 * min(1.0, fill) * min(1.0, area / (0.02 * sw * sh)))
        if not boxes:
            return Detections.empty()
        order = np.argsort(-np.asarray(scores), kind="stable")[: self.max_boxes]
        cxcywh = torch.tensor(np.asarray(boxes)[order], dtype=torch.float32)
        return boxes_from_normalized_cxcywh(cxcywh, torch.tensor(np.asarray(scores)[order]), w, h)


def _merge_stacked(parts: list[list[float]]) -> list[list[float]]:
    """Merge regions stacked on top of each other (a hat above a body whose face blends into the sky).

    Two regions merge when they overlap horizontally by at least half the narrower width and the vertical
    gap between them is at most the smaller region's height. Repeats until nothing merges.
    """
    parts = [list(p) for p in parts]
    merged = True
    while merged:
        merged = False
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                a, b = parts[i], parts[j]
                overlap = min(a[2], b[2]) - max(a[0], b[0])
                gap = max(a[1], b[1]) - min(a[3], b[3])
                if overlap >= 0.5 * min(a[2] - a[0], b[2] - b[0]) and gap <= min(a[3] - a[1], b[3] - b[1]):
                    parts[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), a[4] + b[4]]
                    del parts[j]
                    merged = True
                    break
            if merged:
                break
    return parts


@dataclass
class ToyAestheticScorer:
    """Aesthetic stand-in: colourful, contrasty images score higher, in (1, 10)."""

    size: int = 128

    def score(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Score images → [N] float32."""
        if not images:
            return torch.zeros(0)
        x = _stack(images, self.size) * 255.0  # [N, 3, S, S]
        r, g, b = x.unbind(1)
        rg, yb = r - g, 0.5 * (r + g) - b
        colourful = torch.sqrt(rg.var(dim=(1, 2), correction=0) + yb.var(dim=(1, 2), correction=0)) + 0.3 * torch.sqrt(
            rg.mean(dim=(1, 2)) ** 2 + yb.mean(dim=(1, 2)) ** 2
        )
        contrast = (0.299 * r + 0.587 * g + 0.114 * b).std(dim=(1, 2), correction=0)
        return (1.0 + 9.0 * (1.0 - torch.exp(-(colourful + contrast) / 80.0))).float()


class ToyInceptionClassifier:
    """Inception stand-in: 1000 logits from a fixed projection of colour, layout and edge statistics."""

    def __init__(self, size: int = 64, temperature: float = 6.0) -> None:
        """Args: size (working resolution), temperature (logit scale: larger → peakier class posteriors)."""
        self.size = size
        self.temperature = temperature
        self._proj = _gaussian(1008, 64 + 48 + 8, 1000)  # [120, 1000]

    def logits(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Classify images → [N, 1000] float32 logits."""
        if not images:
            return torch.zeros(0, 1000)
        x = _stack(images, self.size)
        grey = x.mean(dim=1)  # [N, S, S]
        gx, gy = grey[:, :, 1:] - grey[:, :, :-1], grey[:, 1:, :] - grey[:, :-1, :]
        edges = torch.stack(
            [gx.abs().mean((1, 2)), gy.abs().mean((1, 2)), gx.std((1, 2)), gy.std((1, 2))], dim=1
        )  # [N, 4]
        edges = torch.cat([edges, edges.sqrt()], dim=1) * 4.0  # [N, 8]
        stats = torch.cat([_rgb_histogram(x, 4) * 8.0, _grid_means(x, 4), edges], dim=1)  # [N, 120]
        stats = stats - stats.mean(dim=1, keepdim=True)  # per-image centring: no batch dependence
        return (self.temperature * _unit(stats @ self._proj).double() * np.sqrt(1000.0) / 4.0).float()


#####################################################################################################
# Bundle
#####################################################################################################


def make_toy_backbones(era: Era = "A", device: str = "cpu") -> Backbones:
    """The toy bundle: weight-free, deterministic, labelled NOT comparable with published numbers.

    Args:
        era: recorded only; the toy extractors are the same in every era.
        device: recorded only; the toy extractors always run on CPU.

    Returns:
        A `Backbones` with `comparable=False` and no weight files.
    """
    return Backbones(
        name=TOY_NAME,
        comparable=False,
        era=era,
        device="cpu",
        factories={
            "style": ToyStyleEncoder,
            "detector": ToyDetector,
            "face": lambda: ToyIdentityEncoder("toy-face", seed=1, min_side=16),
            "clip": lambda: ToyIdentityEncoder("toy-clip", seed=2),
            "aesthetic": ToyAestheticScorer,
            "inception": ToyInceptionClassifier,
        },
    )
