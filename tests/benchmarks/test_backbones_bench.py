"""Backbone throughput on CPU: images/s of the toy extractors vs the official loaders on random weights,
batched vs one image at a time (the baseline, measured in the same test), plus peak process memory.

Run: ``python -m pytest tests/benchmarks/test_backbones_bench.py --benchmark-only -p no:cacheprovider``

"official" here means the real loader and architecture code on the tiny random-weight bundle of the tests
(CSD, Grounding DINO, CLIP, SigLIP+head at tiny width; Inception-v3 at its real, only size). Full-size ViT-L /
so400m towers are far slower on CPU; these figures measure pipeline overheads (decoding, resizing, batching)
and the relative gain of batching, not GPU production speed.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from bench.backbones import Backbones, load_backbones
from tests.bench.backbones.tiny_bundle import write_tiny_bundle

N_IMAGES = 16


def _images() -> list[Image.Image]:
    out = []
    for i in range(N_IMAGES):
        im = Image.new("RGB", (256, 256), (135, 206, 235))
        d = ImageDraw.Draw(im)
        d.rectangle([0, 192, 256, 256], fill=(34, 139, 34))
        d.rectangle([20 + 8 * i, 60, 80 + 8 * i, 190], fill=(200, 40 + 10 * i, 40))
        out.append(im)
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Backbones]:
    root: Path = write_tiny_bundle(tmp_path_factory.mktemp("bundle"))
    return {"toy": load_backbones("toy"), "official-random": load_backbones("official", root)}


def _call(bb: Backbones, component: str) -> Callable[[list[Image.Image]], object]:
    return {
        "style": lambda ims: bb.style.encode(ims),
        "detector": lambda ims: bb.detector.detect(ims, "people"),
        "clip": lambda ims: bb.clip.encode(ims),
        "aesthetic": lambda ims: bb.aesthetic.score(ims),
        "inception": lambda ims: bb.inception.logits(ims),
    }[component]


@pytest.mark.parametrize("component", ["style", "detector", "clip", "aesthetic", "inception"])
@pytest.mark.parametrize("kind", ["toy", "official-random"])
def test_backbone_throughput(benchmark, bundles, kind, component):
    torch.set_num_threads(2)
    fn = _call(bundles[kind], component)
    images = _images()
    fn(images[:2])  # load the component and warm up

    t0 = time.perf_counter()
    for im in images:  # baseline: one image per call
        fn([im])
    single_s = time.perf_counter() - t0

    benchmark.group = f"backbone-{component}"
    benchmark.pedantic(fn, args=(images,), rounds=3, iterations=1)
    batched_s = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        {
            "images": N_IMAGES,
            "batched_images_per_s": round(N_IMAGES / batched_s, 2),
            "single_images_per_s": round(N_IMAGES / single_s, 2),
            "batched_over_single_speedup": round(single_s / batched_s, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )
    print(
        f"\n{kind:16s} {component:10s} batched {N_IMAGES / batched_s:8.1f} img/s | single {N_IMAGES / single_s:8.1f}"
        f" img/s | speedup x{single_s / batched_s:.2f}"
    )
