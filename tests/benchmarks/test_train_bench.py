"""Training throughput on CPU: the model engine against the official BAGEL code (issue 13), and whole optimiser steps.

Run: ``BAGEL_REPO=/path/to/Bagel@056b5fd python -m pytest tests/benchmarks/test_train_bench.py --benchmark-only
-p no:cacheprovider -s``

1. ``test_engine_vs_official``: the issue-13 configuration and batch (``_engine_bench``: 8.8M-parameter MoT, samples
   of [ViT 112 px][text 128][noisy VAE 128 px] = 260 tokens, 4 and 16 samples, 1 and 2 threads). Forward + backward
   of CE + MSE, interleaved in the same process against the official code when ``BAGEL_REPO`` is set (its nested
   attention path, bf16 weights under CPU autocast): tokens/s of the official code, ours with bf16 weights, under bf16
   autocast, in fp32, and unpacked; CE and MSE against the official values (fp32: parity tolerance; bf16: rounding).
2. ``test_engine_peak_rss``: peak RSS per variant, each in a fresh subprocess (16 samples).
3. ``test_7b_layer_flash`` (``gpu``): one 7B-shaped MoT layer (hidden 3584, 28/4 heads) on 8k-token packs with
   flash-attn, tokens/s and MFU against the chip's bf16 peak (``UNIMAGE_BF16_PEAK_TFLOPS``, default 989 for H100/H200).
4. ``test_train_throughput``: whole optimiser steps of ``UniMAGETrainModule`` (VAE encoding, packing, forward,
   backward, AdamW) on ``icl`` batches of a SynthStory set (64 px keyframes, real script text through the byte
   tokenizer). Baseline in the same run: packing OFF (one sample per step); the ratio is packed / unpacked samples/s.
   Peak memory is the process's resident-set high-water mark after the case.

Threads of case 4: ``UNIMAGE_BENCH_THREADS`` (default 1), as in ``test_model_bench``.
"""

from __future__ import annotations

import itertools
import os
import resource
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.benchmarks import _engine_bench as eb
from unimage.data.datamodule import TrainDataConfig, UniMAGEDataModule
from unimage.data.packer import PackerConfig
from unimage.data.segments import ImageSizes
from unimage.data.synthstory import SynthStoryConfig, generate
from unimage.train.module import UniMAGETrainModule

THREADS = int(os.environ.get("UNIMAGE_BENCH_THREADS", "1"))
STEPS = 4
RESULTS: dict[tuple[str, bool], dict[str, float]] = {}


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "synth"
    generate(out, SynthStoryConfig(seed=0, train_stories=32, text_stories=0, pairs=0, eval_stories=0, image_size=64))
    return out


def _run(size: str, packing: bool, synth) -> dict[str, float]:
    module = UniMAGETrainModule(size=size, icl_steps=1000, del_steps=0, attention_backend="sdpa", lr=1e-4)
    module.configure_model()
    opt = module.configure_optimizers()["optimizer"]
    packer = PackerConfig(
        expected_num_tokens=4096,
        max_num_tokens=6144,
        max_num_tokens_per_sample=4096,
        max_buffer_size=8,
        packing=packing,
    )
    dm = UniMAGEDataModule(synthstory=str(synth), packer=packer, images=ImageSizes(64, 32, 56, 28))
    dm.bind(TrainDataConfig(model=module.model_config, icl_steps=1000), del_stage=False)
    dm.setup("fit")
    batches = list(itertools.islice(iter(dm.train_dataloader()), STEPS + 1))

    def step(batch):
        opt.zero_grad(set_to_none=True)
        module.step_losses(batch)["total"].backward()
        opt.step()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches[1:]:
        step(b)
    dt = time.perf_counter() - t0
    samples = sum(b.num_samples for b in batches[1:])
    tokens = sum(b.num_tokens for b in batches[1:])
    return {
        "samples_per_s": samples / dt,
        "tokens_per_s": tokens / dt,
        "tokens_per_step": tokens / STEPS,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@pytest.mark.benchmark(group="train")
@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_train_throughput(benchmark, synth, size, packing):
    result = benchmark.pedantic(_run, args=(size, packing, synth), rounds=1, iterations=1)
    RESULTS[(size, packing)] = result
    benchmark.extra_info.update(result)
    line = ", ".join(f"{k} {v:.1f}" for k, v in result.items())
    base = RESULTS.get((size, False))
    if packing and base is not None:
        ratio = result["samples_per_s"] / base["samples_per_s"]
        benchmark.extra_info["packed_over_unpacked_samples_per_s"] = ratio
        line += f", packed/unpacked samples/s x{ratio:.2f}"
    print(f"\n[train {size} {'packed' if packing else 'unpacked'}] {line}")
    assert result["samples_per_s"] > 0


########################################################################################################################
# Issue 13: the engine against the official code
########################################################################################################################

ENGINE_ROUNDS = int(os.environ.get("UNIMAGE_BENCH_ROUNDS", "3"))


@pytest.mark.benchmark(group="engine")
@pytest.mark.parametrize("samples", [4, 16])
def test_engine_vs_official(benchmark, samples):
    repo = os.environ.get("BAGEL_REPO")
    with tempfile.TemporaryDirectory() as tmp:
        engines = eb.Engines(samples, repo, Path(tmp))
        try:
            info: dict[str, float] = {"parameters": engines.num_parameters(), "tokens": engines.batch.length}
            if repo:
                with torch.no_grad():
                    ce_ref, mse_ref = engines.official_losses(bf16=False)
                    ce, mse = engines.our_losses("ours_fp32")
                    torch.testing.assert_close(ce, ce_ref, rtol=1e-5, atol=1e-5)  # the parity suite's tolerance
                    torch.testing.assert_close(mse, mse_ref, rtol=1e-5, atol=1e-5)
                    ce16_ref, mse16_ref = engines.official_losses(bf16=True)
                    for variant in ("ours_autocast", "ours_bf16", "ours_bf16_native"):
                        ce16, mse16 = engines.our_losses(variant)
                        # bf16 rounding of two forwards: well inside the parity suite's 3 % of scale
                        assert abs(ce16 - ce16_ref) <= 0.01 * ce_ref and abs(mse16 - mse16_ref) <= 0.01 * mse_ref
                        info[f"{variant}_ce_minus_official"] = float(ce16 - ce16_ref)
                        info[f"{variant}_mse_minus_official"] = float(mse16 - mse16_ref)
                info.update(
                    ce_official=float(ce_ref), mse_official=float(mse_ref), ce_ours=float(ce), mse_ours=float(mse)
                )
            variants = [v for v in eb.VARIANTS if repo or v != "official"]

            def run() -> list[dict[str, float]]:
                rows = []
                for threads in (1, 2):
                    sec = eb.interleaved(engines, variants, ENGINE_ROUNDS, threads)
                    rows.append({"threads": threads, **{v: engines.batch.length / t for v, t in sec.items()}})
                return rows

            rows = benchmark.pedantic(run, rounds=1, iterations=1)
        finally:
            engines.close()
    for row in rows:
        th = int(row["threads"])
        for v in variants:
            info[f"{v}_tokens_per_s_{th}t"] = row[v]
            if repo and v != "official":
                info[f"{v}_over_official_{th}t"] = row[v] / row["official"]
        info[f"packed_over_unpacked_{th}t"] = row["ours_autocast"] / row["ours_unpacked"]
        cells = ", ".join(
            f"{v} {row[v]:,.0f}" + (f" (x{row[v] / row['official']:.2f})" if repo else "") for v in variants
        )
        print(f"\n[engine {samples} samples, {th} thread(s)] tokens/s: {cells}")
    benchmark.extra_info.update(info)
    assert all(row[v] > 0 for row in rows for v in variants)


@pytest.mark.benchmark(group="engine-memory")
def test_engine_peak_rss(benchmark):
    repo = os.environ.get("BAGEL_REPO")
    variants = [v for v in ("official", "ours_bf16", "ours_autocast") if repo or v != "official"]
    rss = benchmark.pedantic(lambda: {v: eb.peak_rss_mb(v, 16) for v in variants}, rounds=1, iterations=1)
    benchmark.extra_info.update({f"{v}_peak_rss_mb": mb for v, mb in rss.items()})
    print("\n[engine 16 samples] peak RSS MiB: " + ", ".join(f"{v} {mb:,.0f}" for v, mb in rss.items()))
    assert all(mb > 0 for mb in rss.values())


@pytest.mark.gpu
@pytest.mark.benchmark(group="engine-gpu")
def test_7b_layer_flash(benchmark):
    """One 7B-shaped MoT decoder layer, 8 samples x 1024 tokens (text, ViT-like and latent-like runs), flash-attn."""
    from unimage.model.attention import flash_available
    from unimage.model.config import LLM_SIZES, get_config
    from unimage.model.mot import MoTDecoderLayer, Routing, rope_cos_sin, rope_inv_freq
    from unimage.model.packing import NoisyVaeImage, Text, pack

    if not flash_available():
        pytest.skip("flash-attn is not installed (the gpu extra)")
    llm = LLM_SIZES["bagel-7b-mot"]
    cfg = get_config("bagel-7b-mot")
    dev = torch.device("cuda")
    layer = MoTDecoderLayer(llm).to(dev, torch.bfloat16)
    samples = [[Text(list(range(500)), loss=True), NoisyVaeImage(torch.zeros(16, 44, 44))] for _ in range(8)]
    batch = pack(samples, cfg).to(dev)  # 8 x (502 + 484 + 2) tokens
    n = batch.length
    x = torch.randn(n, llm.hidden_size, device=dev, dtype=torch.bfloat16, requires_grad=True)
    routing = Routing.from_gen_mask(batch.is_gen)
    cos_sin = rope_cos_sin(batch.position_ids, rope_inv_freq(llm.head_dim, llm.rope_theta).to(dev), torch.bfloat16)
    layout = batch.layout()

    def step() -> None:
        out, _ = layer(routing.to_experts(x), routing, cos_sin, layout, "flash")
        out.float().square().mean().backward()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 10
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    d, i, hq, hkv, dh = (
        llm.hidden_size,
        llm.intermediate_size,
        llm.num_attention_heads,
        llm.num_key_value_heads,
        llm.head_dim,
    )
    matmul = 2 * n * (d * (hq + 2 * hkv) * dh + hq * dh * d + 3 * d * i)  # forward FLOPs of the projections
    lens = [int(s) for s in batch.sample_lens]
    attn = sum(4 * L * L * hq * dh for L in lens) / 2  # causal-ish: about half of each document's square
    flops = 3 * (matmul + attn)  # forward + backward
    peak = float(os.environ.get("UNIMAGE_BF16_PEAK_TFLOPS", "989")) * 1e12
    info = {"tokens": n, "tokens_per_s": n / dt, "mfu": flops / dt / peak}
    benchmark.extra_info.update(info)
    print(f"\n[7B layer, flash, {n} tokens] {n / dt:,.0f} tokens/s, MFU {100 * info['mfu']:.1f} %")
    assert info["mfu"] > 0
