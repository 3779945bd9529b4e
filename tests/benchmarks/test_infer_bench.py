"""Director benchmarks on CPU: script decoding with vs without the KV cache, and seconds per keyframe.

Run: ``python -m pytest tests/benchmarks/test_infer_bench.py --benchmark-only -p no:cacheprovider -s``

- Script tokens/s: free greedy decoding of ``N_TOKENS`` tokens after a ~200-token script context, with the KV cache
  (each token attends to the cached keys/values) and without (the whole sequence recomputed per token; the baseline).
  Ratio = cached / recomputed throughput. Also the Director's constrained ``write`` (grammar + rejection) tokens/s.
- Seconds per keyframe: ``render`` of a 4-shot script at the tiny size (128×128 px, the tiny latent table's maximum)
  with BAGEL's interleave_inference defaults (50 timesteps, text CFG 3.0, image CFG 1.5 → 3 forwards per step in the
  guidance interval), and with 10 timesteps; peak RSS growth as the memory figure (CPU: no torch allocator counters).
- On a GPU (``gpu`` marker): seconds per 1024×1024 keyframe (50 steps, CFG) for 7B-shaped random weights and the
  peak CUDA memory.

Threads: ``UNIMAGE_BENCH_THREADS`` (default 1), as the model benchmarks.
"""

from __future__ import annotations

import os
import resource
import time

import pytest
import torch

from unimage.infer.config import SamplingConfig
from unimage.infer.decoding import TokenStream
from unimage.script import Description, Entity, Script, Shot

THREADS = int(os.environ.get("UNIMAGE_BENCH_THREADS", "1"))
N_TOKENS = 128
RESULTS: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    from unimage.infer.director import Director
    from unimage.model.checkpoint import write_tiny_bagel_dir

    ckpt = write_tiny_bagel_dir(tmp_path_factory.mktemp("ck"))
    return Director.from_pretrained(ckpt, device="cpu")


def _script(n: int) -> Script:
    return Script(
        "Two friends spend a day at the sea and find a message in a bottle.",
        (
            Entity(1, Description("Ana, a tall girl with a red scarf.")),
            Entity(2, Description("Bo, a small brown dog.")),
        ),
        (Entity(1, Description("A wide sandy beach at noon, gulls overhead.")),),
        tuple(
            Shot(
                i,
                Description(f"Medium shot: <Character1> kneels beside <Character2> on <Environment1>, take {i}."),
                Description("<Character1> lifts the bottle. <-What is this?-> <-waves crash->"),
            )
            for i in range(1, n + 1)
        ),
    )


def _prefix(director) -> list[int]:
    from unimage.data.segments import script_blocks

    tok = director.tokenizer
    ids: list[int] = []
    for _, text in script_blocks(_script(3)):
        ids += [tok.im_start_id, *tok.encode(text), tok.im_end_id]
    return [*ids, tok.im_start_id]


def _decode(director, use_cache: bool) -> float:
    stream = TokenStream(director.model, _prefix(director), use_cache=use_cache)
    start = time.perf_counter()
    for _ in range(N_TOKENS):
        stream.feed([int(stream.logits.argmax())])
    return N_TOKENS / (time.perf_counter() - start)


@pytest.mark.parametrize("use_cache", [False, True], ids=["recompute", "kv_cache"])
def test_script_tokens_per_second(benchmark, director, use_cache):
    tps = benchmark.pedantic(_decode, args=(director, use_cache), rounds=3, iterations=1)
    RESULTS["cache" if use_cache else "recompute"] = tps
    benchmark.extra_info["tokens_per_s"] = tps
    benchmark.extra_info["context_tokens"] = len(_prefix(director))
    if "cache" in RESULTS and "recompute" in RESULTS:
        ratio = RESULTS["cache"] / RESULTS["recompute"]
        benchmark.extra_info["cache_speedup"] = ratio
        print(
            f"\nscript decoding, {N_TOKENS} tokens after {len(_prefix(director))}: "
            f"KV cache {RESULTS['cache']:.0f} tok/s, recompute {RESULTS['recompute']:.0f} tok/s, ratio {ratio:.1f}x"
        )


def test_director_write_tokens_per_second(benchmark, director):
    d = director.with_config(max_entry_tokens=48, max_characters=2, max_environments=1)

    def run() -> float:
        g = d.write_generation("A girl and her dog find a message in a bottle.", n_shots=3)
        return g.num_tokens / g.seconds

    tps = benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info["tokens_per_s"] = tps
    print(f"\nDirector.write (constrained, KV cache): {tps:.0f} tok/s")


@pytest.mark.parametrize("steps", [10, 50])
def test_seconds_per_keyframe_tiny_cpu(benchmark, director, steps):
    d = director.with_config(num_timesteps=steps)  # BAGEL defaults otherwise; 1024 px clamps to 128 px on tiny
    script = _script(4)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run() -> float:
        start = time.perf_counter()
        images = d.render(script)
        assert len(images) == 4 and images[0].size == (128, 128)
        return (time.perf_counter() - start) / len(images)

    spk = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["seconds_per_keyframe"] = spk
    benchmark.extra_info["peak_rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    print(f"\ntiny keyframe 128x128, {steps} timesteps, CFG text 3.0 / img 1.5: {spk:.2f} s per keyframe")


@pytest.mark.gpu
def test_seconds_per_1024_keyframe_7b_shaped(benchmark):
    """7B-shaped random weights (bf16) on CUDA, one 1024×1024 keyframe after a one-shot script, 50 steps with CFG."""
    from unimage.infer.director import Director
    from unimage.model.config import get_config
    from unimage.model.unimage import UniMAGE
    from unimage.model.vae import FluxVAE
    from unimage.script.tokenizer import ByteTokenizer

    config = get_config("bagel-7b-mot")
    with torch.device("cuda"):
        model = UniMAGE(config).to(torch.bfloat16).eval()
        vae = FluxVAE(config.vae).to(torch.bfloat16).eval()
    tok = ByteTokenizer()
    d = Director(model, vae, tok, SamplingConfig())
    script = _script(1)
    torch.cuda.reset_peak_memory_stats()

    def run() -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        d.render(script)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["seconds_per_keyframe"] = seconds
    benchmark.extra_info["peak_cuda_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
