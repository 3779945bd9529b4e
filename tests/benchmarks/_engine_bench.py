"""The issue-13 training-step benchmark: ours vs the official BAGEL code on one packed batch, interleaved.

Configuration (issue 13): an 8.9M-parameter MoT, hidden 256, 4 layers, 8 query / 2 KV heads, QK-norm, SwiGLU 704,
vocab 512, a 4-layer SigLIP (192 wide); every sample is [ViT 112 px = 64 patches][text 126 ids + 2 delimiters, with
CE][noisy VAE 128 px = 8x8 latent tokens]: 260 tokens. Both models hold the same weights (the official one is built,
written as a BAGEL-layout directory and loaded into ours, as in the parity suite), and see the same batch: our packer
for ours, BAGEL's packing rules (``_official_batch``) for theirs, the same noise and timesteps.

One step = forward + backward of CE + MSE (no optimiser). Variants: the official code with bf16 weights under CPU
bf16 autocast (its ``nested`` per-sample attention path; bf16 compute weights as under its FSDP mixed precision: with
fp32 weights its MoT projections' index-put fails under autocast); ours under bf16 autocast, in fp32, with bf16
weights, with bf16 weights on torch's own bf16 kernels (``ours_bf16_native``: ``cpu_gemm`` off; the other bf16
variants run their GEMMs in fp32 on the bf16 values where the CPU has no bf16 matmul), and unpacked (one sample per
step, autocast). Steps run interleaved (round-robin over variants, several rounds, median), so every variant sees
the same machine load. Peak RSS is measured per variant in a fresh subprocess (``python -m
tests.benchmarks._engine_bench rss VARIANT N STEPS``) that holds only that variant's model, with the high-water mark
reset after construction: the peak of the training steps themselves.

Run the whole table: ``python -m tests.benchmarks._engine_bench table`` (needs ``BAGEL_REPO`` for the official
column), or through ``tests/benchmarks/test_train_bench.py``.
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from unimage.model.config import get_config
from unimage.model.cpu_gemm import set_fp32_gemm
from unimage.model.packing import NoisyVaeImage, PackedBatch, Text, VitImage, pack
from unimage.model.unimage import UniMAGE

TEXT_IDS = 126  # + <|im_start|>, <|im_end|> = 128 text tokens
VIT_PX = 112  # 8x8 patches of 14
LATENT = 16  # 128 px / 8: 16x16 latent pixels, 8x8 tokens of 2x2
TOKENS_PER_SAMPLE = (64 + 2) + (TEXT_IDS + 2) + (64 + 2)
SHAPES = {  # the official side's config (ours reads it from the written directory)
    "llm": {
        "hidden_size": 256,
        "intermediate_size": 704,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
    },
    "vit": {
        "hidden_size": 192,
        "intermediate_size": 768,
        "num_hidden_layers": 5,  # vit_config.json counts one more; BAGEL drops the last layer
        "num_attention_heads": 3,
        "image_size": 448,
        "patch_size": 14,
    },
    "max_latent_size": 32,
    "vit_side": 32,
}
VARIANTS = ("official", "ours_autocast", "ours_fp32", "ours_bf16", "ours_bf16_native", "ours_unpacked")
# ours_bf16_native: ours_bf16 with ``cpu_gemm`` off (torch's own bf16 matmul / attention kernels, as the official code
# uses); on a CPU without bf16 matmul the other bf16 variants run their GEMMs in fp32 on the bf16 values.


def _plan(n: int) -> list[list[tuple[str, object]]]:
    """The official-side description of n samples (deterministic in the sample index)."""
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        pixels = torch.rand(3, VIT_PX, VIT_PX, generator=g) * 2 - 1
        ids = torch.randint(0, 500, (TEXT_IDS,), generator=g).tolist()
        lat = torch.randn(16, LATENT, LATENT, generator=g)
        u = float(torch.randn((), generator=g))
        out.append([("vit", pixels), ("text", (ids, True)), ("noisy", (lat, u))])
    return out


def _our_samples(plan: list[list[tuple[str, object]]]) -> list[list]:
    samples = []
    for sample in plan:
        segs: list = []
        for kind, payload in sample:
            if kind == "vit":
                segs.append(VitImage(payload))  # type: ignore[arg-type]
            elif kind == "text":
                ids, loss = payload  # type: ignore[misc]
                segs.append(Text(ids, loss=loss))
            else:
                lat, u = payload  # type: ignore[misc]
                segs.append(NoisyVaeImage(lat, timestep=float(torch.sigmoid(torch.tensor(u)))))
        samples.append(segs)
    return samples


def _noise(batch: PackedBatch, seed: int = 21) -> torch.Tensor:
    return torch.randn(batch.vae_latents.shape, generator=torch.Generator().manual_seed(seed))


def _parity():
    from tests.unimage.model import test_reference_parity as parity

    return parity


class Engines:
    """Both models and both batches for n samples; ``step(variant)`` runs one forward + backward."""

    def __init__(self, n: int, bagel_repo: str | None, workdir: Path) -> None:
        self.n = n
        self.plan = _plan(n)
        self.official = None
        self._ctx = None
        if bagel_repo:
            parity = _parity()
            self._ctx = parity.official_modules(Path(bagel_repo))
            self.official = self._ctx.__enter__()
            pair = parity.official_and_ours(self.official, workdir / f"bagel_{n}", SHAPES)
            self.ref, model = pair.ref.train(), pair.model
            self.ref_bf16 = copy.deepcopy(pair.ref).to(torch.bfloat16).train()
            self.ref_kwargs = parity._official_batch(self.official, self.plan, vit_side=32, latent_side=32)
        else:  # ours alone: the same shapes from our registry's "small" entry
            torch.manual_seed(0)
            cfg = get_config("small", attention_backend="sdpa")
            cfg = cfg.replace(tokens=cfg.tokens.__class__(im_start=506, im_end=508, vision_start=509, vision_end=510))
            model = UniMAGE(cfg)
        self.model = model.train()
        self.model_bf16 = copy.deepcopy(model).to(torch.bfloat16).train()
        self.batch = pack(_our_samples(self.plan), model.config)
        self.noise = _noise(self.batch)
        self.singles = [pack([s], model.config) for s in _our_samples(self.plan)]
        self.single_noise = [_noise(b) for b in self.singles]
        assert self.batch.length == n * TOKENS_PER_SAMPLE

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # --------------------------------------------------------------------------------------------- losses

    def official_losses(self, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """CE and MSE means of the official forward: as released (bf16 weights, autocast), or fully fp32."""
        torch.manual_seed(21)  # the official forward draws randn_like(latents) from the global RNG
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.ref_bf16(**self.ref_kwargs)
        else:
            with _parity().fp32_official(self.official):
                out = self.ref(**self.ref_kwargs)
        return out["ce"].float().mean(), out["mse"].float().mean()

    def our_losses(self, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model_bf16 if variant.startswith("ours_bf16") else self.model
        set_fp32_gemm(False if variant == "ours_bf16_native" else None)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "ours_autocast"):
                out = model(self.batch, noise=self.noise)
        finally:
            set_fp32_gemm(None)
        return out.ce, out.mse

    # --------------------------------------------------------------------------------------------- steps

    def step(self, variant: str) -> None:
        if variant == "official":
            ce, mse = self.official_losses(bf16=True)
            (ce + mse).backward()
            self.ref_bf16.zero_grad(set_to_none=True)
        elif variant == "ours_unpacked":
            for b, nz in zip(self.singles, self.single_noise):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model(b, noise=nz)
                out.total.backward()
            self.model.zero_grad(set_to_none=True)
        else:
            ce, mse = self.our_losses(variant)
            set_fp32_gemm(False if variant == "ours_bf16_native" else None)
            try:
                (ce + mse).backward()
            finally:
                set_fp32_gemm(None)
            self.model.zero_grad(set_to_none=True)
            self.model_bf16.zero_grad(set_to_none=True)


def interleaved(engines: Engines, variants: list[str], rounds: int, threads: int) -> dict[str, float]:
    """Median seconds per step of each variant, round-robin over variants (one warm-up round first)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for r in range(rounds + 1):
            for v in variants:
                t0 = time.perf_counter()
                engines.step(v)
                if r:  # round 0 warms up
                    times[v].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return {v: statistics.median(ts) for v, ts in times.items()}


def profile_step(engines: Engines, variant: str, rows: int = 15) -> str:
    """torch.profiler table of one step (after a warm-up), top ``rows`` ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    engines.step(variant)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engines.step(variant)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def peak_rss_mb(variant: str, n: int, steps: int = 2) -> float:
    """Peak RSS (MiB) of a fresh process that builds the engines and runs ``steps`` steps of ``variant``."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tests.benchmarks._engine_bench", "rss", variant, str(n), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=_repo_root())
    return float(out.stdout.strip().splitlines()[-1])


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _rss_child(variant: str, n: int, steps: int) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        engines = Engines(n, os.environ.get("BAGEL_REPO"), Path(tmp))
        # Only the measured variant's model is kept alive: drop the other side before stepping.
        if variant == "official":
            engines.model = engines.model_bf16 = types.SimpleNamespace()  # type: ignore[assignment]
            engines.ref = None
        else:
            engines.ref = engines.ref_bf16 = None
            if not variant.startswith("ours_bf16"):
                engines.model_bf16 = types.SimpleNamespace(zero_grad=lambda **_: None)  # type: ignore[assignment]
        import gc

        gc.collect()
        # Building both models (and writing / loading the checkpoint) sets a high-water mark of its own: reset it
        # (Linux: "5" > /proc/self/clear_refs resets VmHWM) so the number is the peak of the training steps.
        reset = _reset_peak_rss()
        for _ in range(steps):
            engines.step(variant)
        peak = _vm_hwm_mb() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        engines.close()
    print(peak)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _vm_hwm_mb() > 0


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024  # kB
    return 0.0


def table(
    samples: tuple[int, ...] = (4, 16),
    threads: tuple[int, ...] = (1, 2),
    rounds: int = 3,
    variants: tuple[str, ...] = VARIANTS,
) -> list[dict]:
    """Every cell of the issue's table, measured interleaved per (samples, threads)."""
    repo = os.environ.get("BAGEL_REPO")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in samples:
            engines = Engines(n, repo, Path(tmp))
            variants = tuple(v for v in variants if repo or v != "official")
            for th in threads:
                sec = interleaved(engines, list(variants), rounds, th)
                tokens = n * TOKENS_PER_SAMPLE
                rows.append({"samples": n, "tokens": tokens, "threads": th, **{v: tokens / s for v, s in sec.items()}})
            engines.close()
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| samples (tokens) | threads | " + " | ".join(f"{v} tok/s" for v in VARIANTS if v in rows[0]) + " |"
    lines = [head, "|" + "---|" * (2 + sum(v in rows[0] for v in VARIANTS))]
    for r in rows:
        base = r.get("official")
        cells = []
        for v in VARIANTS:
            if v not in r:
                continue
            ratio = f" (x{r[v] / base:.2f})" if base and v != "official" else ""
            cells.append(f"{r[v]:,.0f}{ratio}")
        lines.append(f"| {r['samples']} ({r['tokens']:,}) | {r['threads']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[:1] == ["rss"]:
        _rss_child(argv[1], int(argv[2]), int(argv[3]))
    elif argv[:1] == ["table"]:
        print(format_table(table()))
    elif argv[:1] == ["profile"]:
        with tempfile.TemporaryDirectory() as tmp:
            engines = Engines(int(argv[2]), os.environ.get("BAGEL_REPO"), Path(tmp))
            torch.set_num_threads(1)
            print(profile_step(engines, argv[1]))
            engines.close()
    else:
        raise SystemExit(
            "usage: python -m tests.benchmarks._engine_bench table | rss VARIANT N STEPS | profile VARIANT N"
        )


_Step = Callable[[], None]

if __name__ == "__main__":
    main(sys.argv[1:])
