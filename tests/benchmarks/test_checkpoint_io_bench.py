"""Checkpoint I/O and NaViT encoder throughput on CPU.

Run: ``python -m pytest tests/benchmarks/test_checkpoint_io_bench.py --benchmark-only -p no:cacheprovider -s``

1. Loading a ~120 MB BAGEL-layout directory: ``load_bagel_dir`` (meta-device build, tensors assigned straight from
   the safetensors file) vs the naive baseline (random-init model + ``load_file`` + ``load_state_dict``), measured
   in the same test, each in a fresh subprocess so that the peak RSS belongs to the load alone. Reports MB/s, the
   speed ratio and the peak RSS increase relative to the file size (2x means two copies were held).
2. ``SiglipNavit`` on a packed batch of 8 images of 4 sizes (``small`` ViT): the packed call vs one call per image
   (baseline), patches/s and ratio.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import torch

from unimage.model.checkpoint import save_bagel_dir
from unimage.model.config import get_config
from unimage.model.image_transforms import flattened_position_ids, patchify
from unimage.model.unimage import UniMAGE
from unimage.model.vit import VIT_SIZES, SiglipNavit

_LOAD = """
import json, resource, sys, time
import diffusers, transformers.models.siglip.modeling_siglip
import unimage.model.checkpoint as ck, unimage.model.unimage as um
from safetensors.torch import load_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if sys.argv[2] == "ours":
    ck.load_bagel_dir(sys.argv[1], load_vae=False)
else:
    model = um.UniMAGE(ck.read_bagel_config(sys.argv[1]))
    model.load_state_dict(load_file(sys.argv[1] + "/ema.safetensors"), strict=True)
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_increase": (after - before) * 1024}))
"""


@pytest.fixture(scope="module")
def medium_dir(tmp_path_factory):
    base = get_config("tiny")
    llm = dataclasses.replace(
        base.llm, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6, vocab_size=16384
    )
    path = tmp_path_factory.mktemp("bench") / "medium"
    save_bagel_dir(UniMAGE(dataclasses.replace(base, llm=llm)), path)
    return path


def _run(path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), mode], capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_load_bagel_dir_vs_naive(benchmark, medium_dir) -> None:
    size = (medium_dir / "ema.safetensors").stat().st_size
    naive = _run(medium_dir, "naive")
    ours = benchmark.pedantic(lambda: _run(medium_dir, "ours"), rounds=3, iterations=1)
    mb = size / 2**20
    ratio = naive["seconds"] / ours["seconds"]
    benchmark.extra_info.update(
        file_mib=round(mb, 1),
        ours_mib_per_s=round(mb / ours["seconds"], 1),
        naive_mib_per_s=round(mb / naive["seconds"], 1),
        speed_ratio=round(ratio, 2),
        ours_peak_rss_over_size=round(ours["peak_increase"] / size, 2),
        naive_peak_rss_over_size=round(naive["peak_increase"] / size, 2),
    )
    print(
        f"\nload {mb:.0f} MiB: ours {mb / ours['seconds']:.0f} MiB/s, naive {mb / naive['seconds']:.0f} MiB/s "
        f"(x{ratio:.2f}); peak RSS / file size: ours {ours['peak_increase'] / size:.2f}, "
        f"naive {naive['peak_increase'] / size:.2f}"
    )
    assert ours["peak_increase"] < naive["peak_increase"]


def test_navit_packed_vs_per_image(benchmark) -> None:
    cfg = VIT_SIZES["small"]
    model = SiglipNavit(cfg).eval()
    p, s = cfg.patch_size, cfg.num_patches_per_side
    shapes = [(8, 12), (12, 8), (10, 10), (16, 16)] * 2
    images = [torch.randn(3, h * p, w * p) for h, w in shapes]
    patches = [patchify(im, p) for im in images]
    ids = [flattened_position_ids(h, w, s) for h, w in shapes]
    lens = torch.tensor([x.shape[0] for x in patches])
    cu = torch.nn.functional.pad(lens.cumsum(0), (1, 0)).int()
    packed_x, packed_ids = torch.cat(patches), torch.cat(ids)
    n_tokens = int(lens.sum())

    def packed() -> torch.Tensor:
        with torch.no_grad():
            return model(packed_x, packed_ids, cu)

    def per_image() -> list[torch.Tensor]:
        with torch.no_grad():
            return [model(x, i, torch.tensor([0, x.shape[0]])) for x, i in zip(patches, ids)]

    t0 = time.perf_counter()
    for _ in range(3):
        baseline = per_image()
    base_s = (time.perf_counter() - t0) / 3
    out = benchmark.pedantic(packed, rounds=3, iterations=1)
    torch.testing.assert_close(out, torch.cat(baseline), rtol=1e-4, atol=1e-4)
    ours_s = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        patches=n_tokens,
        packed_patches_per_s=round(n_tokens / ours_s),
        per_image_patches_per_s=round(n_tokens / base_s),
        ratio=round(base_s / ours_s, 2),
    )
    print(f"\nNaViT {n_tokens} patches: packed {n_tokens / ours_s:.0f}/s, per image {n_tokens / base_s:.0f}/s")
