"""Step 3, inference: prefill and KV-cached decoding tokens/s, and one keyframe's denoising step, CFG batched vs not.

The model is a whole ``UniMAGE`` (embedding, ViT, connector, heads) with ``scale.layers`` decoder layers at the
scale's shapes, random weights in the working dtype, driven only through the public inference API:
``cache.prefill``, ``generation.generate_text`` and ``generation.generate_image``. ``llm2vae`` gets random weights
too (the model's init zeroes it, which would make every velocity 0 and the batched-vs-sequential comparison empty).

Order: keyframe first (the number the proof most needs), then prefill, then decoding.

- Prefill: one text segment of ``scale.prefill_tokens`` ids into an empty context; tokens/s.
- Decoding: ``generate_text`` greedy for ``scale.decode_tokens`` steps after that context (``vocab_limit`` keeps
  ``<|im_end|>`` out of reach so every run decodes the same number of tokens); tokens/s, one token per forward.
  A 4-token probe first estimates the cost per token, and the length is cut to fit the box (``tokens`` records
  what ran; a compiling backend such as flex may recompile while the cache grows).
- Keyframe: a ``scale.keyframe_px``² image (1024² = 64×64 latent tokens on 7B) after the prefilled prompt with
  three CFG branches active at every step (text 4.0, image 2.0, interval [0, 1]): seconds per denoising step with
  the branches as one batched forward (``batch_cfg=True``) and as three forwards (BAGEL's way). Check: both give the
  same latents, relative to how far the sampler moved them from the initial noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from unimage.gpucheck.runner import StepContext, timed
from unimage.model.cache import Context, GuidanceContexts, prefill
from unimage.model.generation import CfgOptions, generate_image, generate_text
from unimage.model.image_transforms import unpatchify
from unimage.model.packing import Text
from unimage.model.unimage import UniMAGE

__all__ = ["KEYFRAME_CFG", "run_inference"]

KEYFRAME_CFG = CfgOptions(text_scale=4.0, img_scale=2.0, interval=(0.0, 1.0), renorm_min=0.0, renorm_type="global")
BATCH_RTOL = {torch.bfloat16: 5e-2, torch.float32: 1e-4}


def _build(ctx: StepContext) -> UniMAGE:
    cfg = ctx.scale.model_config().replace(attention_backend=ctx.backend)
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(0)
        with ctx.device:
            model = UniMAGE(cfg)
            torch.nn.init.normal_(model.llm2vae.weight, std=0.02)
    model = model.to(ctx.dtype).eval()
    model.reset_rope(ctx.device)  # the cast above rounded the RoPE frequencies; recompute them in fp32
    return model


def run_inference(ctx: StepContext) -> None:
    """Prefill, decoding and keyframe-step timings through the public inference API."""
    scale = ctx.scale
    model = _build(ctx)
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(256, cfg.tokens.im_start), (scale.prefill_tokens,), generator=gen).tolist()
    ctx.results.update(
        layers=cfg.llm.num_hidden_layers,
        params=sum(p.numel() for p in model.parameters()),
        backend=model.attention_backend(),
        dtype=str(ctx.dtype).removeprefix("torch."),
    )

    _keyframe(ctx, model, ids, gen)  # first: the number the proof most needs
    ctx.require_time("prefill")
    context = _prefill(ctx, model, ids)
    ctx.require_time("decoding")
    _decode(ctx, model, context)


def _prefill(ctx: StepContext, model: UniMAGE, ids: list[int]) -> Context:
    n_prefill = len(ids) + 2  # <|im_start|> ids <|im_end|>
    t = timed(lambda: prefill(model, Context.empty(), [Text(ids)]), ctx, iters=3, warmup=1, share=0.3)
    ctx.results["prefill"] = {
        "tokens": n_prefill,
        "s": round(t["median_s"], 6),
        "tokens_per_s": round(n_prefill / t["median_s"], 1),
    }
    return prefill(model, Context.empty(), [Text(ids)])


def _decode(ctx: StepContext, model: UniMAGE, context: Context) -> None:
    """Greedy decoding; the length is cut to what the box still holds (estimated from a short probe)."""
    limit = model.config.tokens.im_end  # ids below <|im_end|>: decoding never stops early
    t_warm = time.perf_counter()
    generate_text(model, context, max_length=2, vocab_limit=limit)  # warm-up (kernels, compiles)
    ctx.sync()
    warm = time.perf_counter() - t_warm
    probe = 4
    t0 = time.perf_counter()
    generate_text(model, context, max_length=probe, vocab_limit=limit)
    ctx.sync()
    per_token = (time.perf_counter() - t0) / probe
    fits = int(0.4 * max(ctx.deadline.remaining(), 0.0) / max(per_token, 1e-9))
    n = max(probe, min(ctx.scale.decode_tokens, fits))
    out: list[list[int]] = []

    def decode() -> None:
        out.append(generate_text(model, context, max_length=n, vocab_limit=limit))

    t = timed(decode, ctx, iters=2, warmup=0, share=0.9)
    steps = len(out[-1]) + 1 if len(out[-1]) < n else n  # forwards run (one per generated token)
    ctx.results["decode"] = {
        "context_tokens": context.length,
        "tokens": steps,
        "requested_tokens": ctx.scale.decode_tokens,
        "warmup_s": round(warm, 3),
        "s": round(t["median_s"], 6),
        "tokens_per_s": round(steps / t["median_s"], 1),
        "ms_per_token": round(1e3 * t["median_s"] / steps, 3),
    }


def _keyframe(ctx: StepContext, model: UniMAGE, ids: list[int], gen: torch.Generator) -> None:
    """Denoising steps of one keyframe after the prompt, CFG branches batched vs sequential."""
    cfg = model.config
    px, n_steps = ctx.scale.keyframe_px, ctx.scale.keyframe_steps
    guidance = GuidanceContexts().add_text(model, ids)
    h = w = px // cfg.latent_downsample
    noise = torch.randn(h * w, cfg.patch_latent_dim, generator=gen)
    x0 = unpatchify(noise, h, w, cfg.latent_patch_size, cfg.latent_channels).to(ctx.device).float()
    frames: dict[str, torch.Tensor] = {}
    keyframe: dict[str, Any] = {
        "px": px,
        "latent_tokens": h * w,
        "context_tokens": guidance.full.length,
        "branches": 3,
        "steps": n_steps,
    }
    ctx.results["keyframe"] = keyframe
    for batched in (True, False):
        name = "batched" if batched else "sequential"

        def sample(n: int, b: bool = batched) -> torch.Tensor:
            return generate_image(
                model,
                guidance.full,
                (px, px),
                KEYFRAME_CFG,
                cfg_text_context=guidance.cfg_text,
                cfg_img_context=guidance.cfg_img,
                num_timesteps=n + 1,
                noise=noise,
                batch_cfg=b,
            )

        if ctx.deadline.expired():
            keyframe[name] = {"status": "skipped", "reason": "time box ran out before this mode"}
            continue
        t0 = time.perf_counter()
        sample(1)  # warm-up (kernel selection; flex compiles for these shapes)
        ctx.sync()
        warm = time.perf_counter() - t0

        def run(s: Callable[[int], torch.Tensor] = sample, key: str = name) -> None:
            frames[key] = s(n_steps)

        t = timed(run, ctx, iters=2, warmup=0, share=0.25)
        keyframe[name] = {"step_s": round(t["median_s"] / n_steps, 6), "warmup_s": round(warm, 3), "timing": t}
    if len(frames) == 2:
        b, s = frames["batched"].float(), frames["sequential"].float()
        moved = float((s - x0).abs().max())
        keyframe["sequential_over_batched"] = round(keyframe["sequential"]["step_s"] / keyframe["batched"]["step_s"], 3)
        keyframe["max_abs_diff"] = float((b - s).abs().max())
        keyframe["max_abs_update"] = moved
        ctx.check(
            "keyframe_batched_vs_sequential_rel",
            keyframe["max_abs_diff"] / max(moved, 1e-12),
            BATCH_RTOL.get(ctx.dtype, 5e-2),
            "max |batched − sequential| / max |sequential − initial noise|",
        )
