"""Training throughput on CPU: samples/s and tokens/s for ``tiny`` and ``small``, packing on vs off, peak memory.

Run: ``python -m pytest tests/benchmarks/test_train_bench.py --benchmark-only -p no:cacheprovider -s``

Each case runs whole optimiser steps of ``UniMAGETrainModule`` (VAE encoding, packing, forward, backward, AdamW) on
``icl`` batches of a SynthStory set (64 px keyframes, real script text through the byte tokenizer). Baseline in the
same run: packing OFF (one sample per step, BAGEL's unpacked equivalent); the ratio is packed / unpacked samples/s.
Peak memory is the process's resident-set high-water mark after the case (CPU; torch's CUDA counters do not apply).

Threads: ``UNIMAGE_BENCH_THREADS`` (default 1), as in ``test_model_bench``.
"""

from __future__ import annotations

import itertools
import os
import resource
import time

import pytest
import torch

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
