"""UniMAGE model benchmarks on CPU: training throughput, memory, packing cost, attention backends.

Run: ``python -m pytest tests/benchmarks/test_model_bench.py --benchmark-only -p no:cacheprovider``
(add ``-s`` to see the summary lines).

- forward+backward tokens/s for ``tiny`` and ``small`` on a packed batch of several interleaved samples (text with
  loss, ViT image, clean VAE image, noisy VAE target), with parameter memory and the activation memory saved for
  backward (summed over ``saved_tensors_hooks``; CPU allocations are not tracked by torch's CUDA counters).
  Baseline in the same run: a forward alone (ratio = cost of backward on top).
- time to pack a batch and to build what the engine builds per forward: the per-split SDPA plan (one kernel call per
  query split, no [L, L] mask); baseline: packing alone. The dense mask, which no backend builds for a training pack
  any more, is reported beside it.
- per-split SDPA (the default) vs the dense-masked SDPA reference vs flex attention, forward only (torch has no flex
  backward on CPU); baseline: per-split SDPA.

Threads: ``UNIMAGE_BENCH_THREADS`` (default 1). On a shared machine torch's default intra-op threads oversubscribe
the cores and small ops slow down by an order of magnitude; one thread gives stable, comparable numbers.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from unimage.model.attention import _split_plan
from unimage.model.config import get_config
from unimage.model.packing import CleanVaeImage, NoisyVaeImage, Text, VitImage, pack
from unimage.model.unimage import UniMAGE

# Per size: (text tokens per segment, ViT image side in px, latent side of the clean and noisy images)
SHAPES = {"tiny": (32, 56, 8), "small": (64, 112, 16)}
NUM_SAMPLES = 4
THREADS = int(os.environ.get("UNIMAGE_BENCH_THREADS", "1"))


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _samples(size: str, id_prompting: bool = True) -> list:
    n_text, vit_px, lat = SHAPES[size]
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(NUM_SAMPLES):
        ids = torch.randint(0, 256, (n_text,), generator=g).tolist()
        out.append(
            [
                Text(ids, loss=True),
                VitImage(torch.randn(3, vit_px, vit_px, generator=g), id_token_ids=[264 + i, 296]),
                CleanVaeImage(torch.randn(16, lat, lat, generator=g), id_token_ids=[264 + i]),
                Text(ids[: n_text // 2], loss=True),
                NoisyVaeImage(torch.randn(16, lat, lat, generator=g), id_token_ids=[265 + i]),
            ]
        )
    return out


def _saved_activation_bytes(model: UniMAGE, batch) -> int:
    total = 0

    def pack_hook(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        model(batch, generator=torch.Generator().manual_seed(0))
    return total


@pytest.mark.benchmark(group="model-train")
@pytest.mark.parametrize("size", ["tiny", "small"])
def test_forward_backward_throughput(benchmark, size):
    torch.manual_seed(0)
    model = UniMAGE(get_config(size, id_prompting=True)).train()
    batch = pack(_samples(size), model.config)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(batch, generator=torch.Generator().manual_seed(0)).total.backward()

    step()  # warm-up
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(3):
            model(batch, generator=torch.Generator().manual_seed(0))
        fwd_s = (time.perf_counter() - t0) / 3
    benchmark.pedantic(step, rounds=3, iterations=1)
    mean_s = benchmark.stats.stats.mean
    params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    act_mb = _saved_activation_bytes(model, batch) / 2**20
    info = {
        "threads": THREADS,
        "tokens": batch.length,
        "tokens_per_s": batch.length / mean_s,
        "forward_only_tokens_per_s": batch.length / fwd_s,
        "fwd_bwd_over_fwd": mean_s / fwd_s,
        "params_mb": params_mb,
        "saved_activations_mb": act_mb,
    }
    benchmark.extra_info.update(info)
    print(f"\n[{size}] {info}")
    assert info["tokens_per_s"] > 0


@pytest.mark.benchmark(group="model-pack")
def test_pack_and_mask_time(benchmark):
    cfg = get_config("small", id_prompting=True)
    samples = _samples("small") * 4  # 16 samples
    t0 = time.perf_counter()
    for _ in range(5):
        pack(samples, cfg)
    pack_only_s = (time.perf_counter() - t0) / 5

    def run() -> None:
        _split_plan(pack(samples, cfg).layout())

    benchmark.pedantic(run, rounds=5, iterations=1)
    batch = pack(samples, cfg)
    t0 = time.perf_counter()
    batch.dense_mask()
    dense_s = time.perf_counter() - t0
    info = {
        "tokens": batch.length,
        "pack_ms": pack_only_s * 1e3,
        "pack_and_plan_ms": benchmark.stats.stats.mean * 1e3,
        "plan_over_pack": benchmark.stats.stats.mean / pack_only_s,
        "dense_mask_ms": dense_s * 1e3,
    }
    benchmark.extra_info.update(info)
    print(f"\n[pack] {info}")


@pytest.mark.benchmark(group="model-attention")
@pytest.mark.parametrize("backend", ["sdpa", "sdpa_dense", "flex"])
def test_attention_backend_forward(benchmark, backend):
    import dataclasses

    from unimage.model.attention import packed_attention

    cfg = get_config("small")
    batch = pack(_samples("small"), cfg)
    layout = batch.layout()
    n, hq, hkv, dh = batch.length, cfg.llm.num_attention_heads, cfg.llm.num_key_value_heads, cfg.llm.head_dim
    q, k, v = torch.randn(n, hq, dh), torch.randn(n, hkv, dh), torch.randn(n, hkv, dh)
    ref = packed_attention(q, k, v, layout, "sdpa")
    t0 = time.perf_counter()
    for _ in range(5):
        packed_attention(q, k, v, layout, "sdpa")
    sdpa_s = (time.perf_counter() - t0) / 5
    kernel = backend
    if backend == "sdpa_dense":
        layout, kernel = dataclasses.replace(layout, per_doc=False, _memo={}), "sdpa"
    out = benchmark.pedantic(lambda: packed_attention(q, k, v, layout, kernel), rounds=5, iterations=1)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    info = {"tokens": n, "ms": benchmark.stats.stats.mean * 1e3, "over_sdpa": benchmark.stats.stats.mean / sdpa_s}
    benchmark.extra_info.update(info)
    print(f"\n[{backend}] {info}")
