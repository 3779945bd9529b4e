"""Seconds per keyframe with the CFG branches batched into one forward vs run one by one (BAGEL's way).

Run: ``python -m pytest tests/benchmarks/test_cfg_batch_bench.py --benchmark-only -p no:cacheprovider -s``

Model-level (``generate_image``, no VAE decode) after a Director-like context: ~400 script tokens and one earlier
keyframe as clean VAE + ViT blocks; BAGEL's interleave_inference guidance (text 3.0, image 1.5, interval (0.4, 1],
global renorm), so guided steps run three branches: c (full), t̄ (without the latest text), ī (no images).
``tiny`` at 128×128 px (8×8 latent tokens), ``small`` at 256×256 px (16×16), 10 timesteps, on CPU; a ``gpu`` case
runs ``small`` at 512×512 on CUDA. Ratio = sequential / batched seconds (> 1: batching is faster); both modes are
timed alternately in the same test (the pytest-benchmark table shows the time of one such pair), the minimum of
the rounds is reported per mode.

Expectation: batching saves kernel launches and weight reads (one GEMM over 3·Nl rows instead of three over Nl),
which pays on a GPU; on CPU the GEMMs are compute-bound and attention runs one SDPA call per branch either way
(``AttentionLayout.per_doc``), so a ratio near 1 (above it only where per-call overhead dominates, as on ``tiny``)
is the honest CPU result.

Stories in lockstep (``test_seconds_per_keyframe_batched_stories``): keyframe k of 4 stories sampled by one
``generate_images`` call (one forward per step over 4 stories × 3 branches) vs 4 ``generate_image`` calls (CFG
batched in each), ``tiny`` at 128×128 on CPU (and ``small`` at 512×512 on CUDA). Each story has the same context
length here, so the figure is the pure batching effect. Ratio = one-at-a-time / lockstep seconds per keyframe.

Threads: ``UNIMAGE_BENCH_THREADS`` (default 1), as the other model benchmarks.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from unimage.model.cache import GuidanceContexts
from unimage.model.config import get_config
from unimage.model.generation import CfgOptions, ImageRequest, generate_image, generate_images
from unimage.model.packing import CleanVaeImage, Segment, VitImage
from unimage.model.unimage import UniMAGE

THREADS = int(os.environ.get("UNIMAGE_BENCH_THREADS", "1"))
STEPS = 10
ROUNDS = 2
GUIDANCE = CfgOptions(text_scale=3.0, img_scale=1.5, interval=(0.4, 1.0), renorm_type="global")


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _contexts(model: UniMAGE, device: torch.device) -> GuidanceContexts:
    """Global descriptions + shot 1 text, keyframe 1 (clean VAE + ViT), shot 2 text: the context of keyframe 2."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    text = lambda n: torch.randint(0, 256, (n,), generator=g).tolist()  # noqa: E731 (byte-level script text)
    side = 8 * cfg.latent_patch_size  # an 8×8-token earlier keyframe
    vit_px = 4 * cfg.vit.patch_size
    images: list[Segment] = [
        CleanVaeImage(torch.randn(cfg.latent_channels, side, side, generator=g).to(device)),
        VitImage(torch.randn(3, vit_px, vit_px, generator=g).clamp(-1, 1).to(device)),
    ]
    ctx = GuidanceContexts().add_text(model, text(300)).add_text(model, text(50))
    return ctx.add_images(model, images).add_text(model, text(50))


def _time(model: UniMAGE, ctx: GuidanceContexts, px: int, batch_cfg: bool, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    generate_image(
        model,
        ctx.full,
        (px, px),
        GUIDANCE,
        ctx.cfg_text,
        ctx.cfg_img,
        num_timesteps=STEPS,
        generator=torch.Generator().manual_seed(0),
        batch_cfg=batch_cfg,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@pytest.mark.parametrize(
    ("size", "px", "device"),
    [
        ("tiny", 128, "cpu"),
        ("small", 256, "cpu"),
        pytest.param("small", 512, "cuda", marks=pytest.mark.gpu),
    ],
)
def test_seconds_per_keyframe_batched_vs_sequential_cfg(benchmark, size, px, device):
    dev = torch.device(device)
    torch.manual_seed(0)
    with dev:
        model = UniMAGE(get_config(size)).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)  # non-zero velocities (BAGEL zero-initialises llm2vae)
    with torch.no_grad():
        ctx = _contexts(model, dev)
    assert ctx.full.length > ctx.cfg_text.length > 0 and 0 < ctx.cfg_img.length < ctx.full.length
    _time(model, ctx, px, True, dev)  # warm-up (allocator, first-call overheads)
    sequential: list[float] = []
    batched_runs: list[float] = []

    def run() -> None:  # the benchmark table times the pair; the per-mode figures are taken inside
        sequential.append(_time(model, ctx, px, False, dev))
        batched_runs.append(_time(model, ctx, px, True, dev))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    batched, seq = min(batched_runs), min(sequential)
    benchmark.extra_info.update(
        seconds_per_keyframe_batched=batched,
        seconds_per_keyframe_sequential=seq,
        ratio_sequential_over_batched=seq / batched,
        context_tokens=ctx.full.length,
    )
    if dev.type == "cuda":
        benchmark.extra_info["peak_cuda_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"\n{size} {px}x{px} on {device}, {STEPS} timesteps, context {ctx.full.length} tokens: "
        f"batched {batched:.3f} s/keyframe, sequential {seq:.3f} s/keyframe, ratio {seq / batched:.2f}"
    )


STORIES = 4


def _time_stories(model: UniMAGE, ctx: GuidanceContexts, px: int, n: int, device: torch.device) -> float:
    """Seconds per keyframe for STORIES keyframes, sampled n at a time in lockstep (n = 1: ``generate_image``)."""
    gens = [torch.Generator().manual_seed(s) for s in range(STORIES)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, STORIES, n):
        if n == 1:
            generate_image(
                model,
                ctx.full,
                (px, px),
                GUIDANCE,
                ctx.cfg_text,
                ctx.cfg_img,
                num_timesteps=STEPS,
                generator=gens[first],
            )
        else:
            requests = [ImageRequest(ctx.full, ctx.cfg_text, ctx.cfg_img, generator=g) for g in gens[first : first + n]]
            generate_images(model, requests, (px, px), GUIDANCE, num_timesteps=STEPS)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / STORIES


@pytest.mark.parametrize(
    ("size", "px", "device"), [("tiny", 128, "cpu"), pytest.param("small", 512, "cuda", marks=pytest.mark.gpu)]
)
def test_seconds_per_keyframe_batched_stories(benchmark, size, px, device):
    dev = torch.device(device)
    torch.manual_seed(0)
    with dev:
        model = UniMAGE(get_config(size)).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)
    with torch.no_grad():
        ctx = _contexts(model, dev)
    _time_stories(model, ctx, px, STORIES, dev)  # warm-up
    single: list[float] = []
    lockstep: list[float] = []

    def run() -> None:
        single.append(_time_stories(model, ctx, px, 1, dev))
        lockstep.append(_time_stories(model, ctx, px, STORIES, dev))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    one, many = min(single), min(lockstep)
    benchmark.extra_info.update(
        seconds_per_keyframe_batch_stories_1=one,
        seconds_per_keyframe_batch_stories_4=many,
        ratio_1_over_4=one / many,
        context_tokens=ctx.full.length,
    )
    if dev.type == "cuda":
        benchmark.extra_info["peak_cuda_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"\n{size} {px}x{px} on {device}, {STEPS} timesteps, context {ctx.full.length} tokens: "
        f"batch_stories=1 {one:.3f} s/keyframe, batch_stories={STORIES} {many:.3f} s/keyframe, ratio {one / many:.2f}"
    )
