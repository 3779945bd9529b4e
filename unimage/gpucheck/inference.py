"""Step 3, inference: prefill and KV-cached decoding tokens/s, and one keyframe's denoising step, CFG batched vs not.

The model is a whole ``UniMAGE`` (embedding, ViT, connector, heads) with ``scale.layers`` decoder layers at the
scale's shapes, random weights in the working dtype, driven only through the public inference API:
``cache.prefill``, ``generation.generate_text`` and ``generation.generate_image``. ``llm2vae`` gets random weights
too (the model's init zeroes it, which would make every velocity 0 and the batched-vs-sequential comparison empty).

- Prefill: one text segment of ``scale.prefill_tokens`` ids into an empty context; tokens/s.
- Decoding: ``generate_text`` greedy for ``scale.decode_tokens`` steps after that context (``vocab_limit`` keeps
  ``<|im_end|>`` out of reach so every run decodes the same number of tokens); tokens/s, one token per forward.
- Keyframe: a ``scale.keyframe_px``² image (1024² = 64×64 latent tokens on 7B) after the prefilled prompt with
  three CFG branches active at every step (text 4.0, image 2.0, interval [0, 1]): seconds per denoising step with
  the branches as one batched forward (``batch_cfg=True``) and as three forwards (BAGEL's way). Check: both give the
  same latents, relative to how far the sampler moved them from the initial noise.
"""

from __future__ import annotations

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
    cfg = ctx.scale.model_config()
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
    scale, dev = ctx.scale, ctx.device
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

    # Prefill.
    n_prefill = len(ids) + 2  # <|im_start|> ids <|im_end|>
    t = timed(lambda: prefill(model, Context.empty(), [Text(ids)]), ctx, iters=3, warmup=1, share=0.15)
    ctx.results["prefill"] = {
        "tokens": n_prefill,
        "s": round(t["median_s"], 6),
        "tokens_per_s": round(n_prefill / t["median_s"], 1),
    }
    context = prefill(model, Context.empty(), [Text(ids)])

    # Decoding.
    ctx.require_time("decoding")
    limit = cfg.tokens.im_end  # ids below <|im_end|>: decoding never stops early
    out: list[list[int]] = []

    def decode() -> None:
        out.append(generate_text(model, context, max_length=scale.decode_tokens, vocab_limit=limit))

    generate_text(model, context, max_length=2, vocab_limit=limit)  # warm-up
    t = timed(decode, ctx, iters=2, warmup=0, share=0.3)
    steps = len(out[-1]) + 1 if len(out[-1]) < scale.decode_tokens else scale.decode_tokens
    ctx.results["decode"] = {
        "context_tokens": context.length,
        "tokens": steps,
        "s": round(t["median_s"], 6),
        "tokens_per_s": round(steps / t["median_s"], 1),
        "ms_per_token": round(1e3 * t["median_s"] / steps, 3),
    }

    # Keyframe denoising steps, CFG batched vs sequential.
    ctx.require_time("the keyframe")
    px, n_steps = scale.keyframe_px, scale.keyframe_steps
    guidance = GuidanceContexts().add_text(model, ids)
    h = w = px // cfg.latent_downsample
    noise = torch.randn(h * w, cfg.patch_latent_dim, generator=gen)
    x0 = unpatchify(noise, h, w, cfg.latent_patch_size, cfg.latent_channels).to(dev).float()
    frames: dict[str, torch.Tensor] = {}
    keyframe: dict[str, Any] = {"px": px, "latent_tokens": h * w, "branches": 3, "steps": n_steps}
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
        sample(1)  # warm-up

        def run(s: Callable[[int], torch.Tensor] = sample, key: str = name) -> None:
            frames[key] = s(n_steps)

        t = timed(run, ctx, iters=2, warmup=0, share=0.5)
        keyframe[name] = {"step_s": round(t["median_s"] / n_steps, 6), "timing": t}
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
