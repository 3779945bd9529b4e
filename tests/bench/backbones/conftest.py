"""Fixtures for backbone tests: one tiny random-weight bundle per session, and small drawn images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.bench.backbones.tiny_bundle import write_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny ViStoryBench weight bundle (random weights, official formats and layout)."""
    pytest.importorskip("open_clip", reason="the tiny CSD tower needs open_clip (the csd extra)")
    return write_tiny_bundle(tmp_path_factory.mktemp("pretrain"))


def draw_scene(figures: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], size=(320, 240)) -> Image.Image:
    """Sky + ground band + filled rectangles ((x0, y0, x1, y1) inclusive-exclusive, colour)."""
    im = Image.new("RGB", size, (135, 206, 235))
    d = ImageDraw.Draw(im)
    d.rectangle([0, size[1] * 3 // 4, size[0], size[1]], fill=(34, 139, 34))
    for (x0, y0, x1, y1), colour in figures:
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
    return im


@pytest.fixture
def scenes() -> list[Image.Image]:
    """Four small varied images of two sizes."""
    return [
        draw_scene([((40, 60, 100, 200), (200, 40, 40))]),
        draw_scene([((40, 60, 100, 200), (200, 40, 40)), ((180, 50, 240, 210), (240, 200, 40))]),
        draw_scene([((10, 10, 60, 90), (90, 40, 160))], size=(200, 300)),
        Image.new("RGB", (200, 300), (30, 30, 30)),
    ]
