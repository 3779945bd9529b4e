"""Throughput of the full ViStoryBench metric suite (evaluator end to end), batched vs one image at a time.

Run: python -m pytest tests/benchmarks/test_bench_metrics.py --benchmark-only -p no:cacheprovider -s

Each test scores the same fixture story set twice in the same process: batched (batch_size 32, chunks of 256
images across stories) and one image at a time (batch_size 1, one story per chunk). It reports images/s for both,
their ratio, and the process peak RSS; and checks the two give the same results-table row (batching must not
change any number).
- toy: the weight-free toy backbones + toy judge.
- tiny-real: random-weight real architectures from the backbones engineer's tiny bundle (tiny CSD ViT, tiny
  Grounding DINO, tiny CLIP, tiny SigLIP + aesthetic head, FULL-size Inception-v3), toy face encoder (the
  ArcFace ONNX model needs the optional `faces` extra) and toy judge.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from pathlib import Path

import pytest

from bench.backbones import Backbones, load_backbones
from bench.evaluate import EvalConfig, evaluate
from bench.judge.toy import ToyJudge
from tests.bench.conftest import build_dataset, build_outputs


def _story_set(root: Path, copies: int) -> tuple[Path, Path]:
    """Stories 01, 02, 08 plus ``copies`` copies of each (3 + 3·copies stories, 9 + 9·copies readable images)."""
    dataset, outputs = build_dataset(root / "ViStory"), build_outputs(root / "outputs")
    run = outputs / "toy-method" / "base" / "en" / "20250102_030405"
    next_id = 20
    for _ in range(copies):
        for sid in ("01", "02", "08"):
            new = f"{next_id:02d}"
            shutil.copytree(dataset / sid, dataset / new)
            shutil.copytree(run / sid, run / new)
            next_id += 1
    return dataset, outputs


def _run(
    dataset: Path, outputs: Path, out: Path, backbones: Backbones, batch_size: int, chunk_images: int
) -> tuple[dict, float]:
    cfg = EvalConfig(
        dataset=dataset,
        outputs=outputs,
        method="toy-method",
        out=out,
        progress=False,
        batch_size=batch_size,
        chunk_images=chunk_images,
    )
    start = time.perf_counter()
    report = evaluate(cfg, backbones, ToyJudge())
    return report.row, time.perf_counter() - start


def _compare(benchmark, tmp_path: Path, make_backbones, copies: int, rounds: int) -> None:
    dataset, outputs = _story_set(tmp_path, copies)
    warm = make_backbones()
    _run(dataset, outputs, tmp_path / "warmup", warm, 32, 256)  # load the networks once, outside the timing
    counter = iter(range(1000))

    def batched() -> dict:
        row, _ = _run(dataset, outputs, tmp_path / f"batched{next(counter)}", warm, 32, 256)
        return row

    row_b = benchmark.pedantic(batched, rounds=rounds, iterations=1)
    t_b = benchmark.stats.stats.median
    row_1, t_1 = _run(dataset, outputs, tmp_path / "single", warm, 1, 1)
    n_images = row_b["n_images"]
    for key in ("csd_self", "csd_cross", "cids_self", "cids_cross", "occm", "alignment", "inception", "aesthetics"):
        assert math.isclose(row_b[key], row_1[key], rel_tol=1e-4, abs_tol=1e-4), (key, row_b[key], row_1[key])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    benchmark.extra_info.update(
        images=n_images,
        images_per_s_batched=n_images / t_b,
        images_per_s_single=n_images / t_1,
        speedup_batched_over_single=t_1 / t_b,
        peak_rss_mib=peak_mib,
    )
    print(
        f"\n{n_images} images: batched {n_images / t_b:.1f} img/s, one-at-a-time {n_images / t_1:.1f} img/s, ratio {t_1 / t_b:.2f}x, peak RSS {peak_mib:.0f} MiB"
    )


@pytest.mark.benchmark(group="bench-metrics")
def test_full_suite_toy(benchmark, tmp_path):
    _compare(benchmark, tmp_path, lambda: load_backbones("toy"), copies=4, rounds=3)


@pytest.mark.benchmark(group="bench-metrics")
def test_full_suite_tiny_real_architectures(benchmark, tmp_path):
    tiny = pytest.importorskip("tests.bench.backbones.tiny_bundle")
    from bench.backbones.toy import ToyIdentityEncoder

    bundle = tiny.write_tiny_bundle(tmp_path / "weights")

    def make() -> Backbones:
        bb = load_backbones("official", weights_dir=bundle)
        bb.factories = {**bb.factories, "face": lambda: ToyIdentityEncoder("toy-face", seed=1, min_side=16)}
        bb.name = "official architectures, tiny random weights (+ toy face); NOT comparable"
        return bb

    # 9 images only: Grounding DINO works at 800 px and Inception-v3 is full size, slow on a shared CPU.
    _compare(benchmark, tmp_path, make, copies=0, rounds=1)
