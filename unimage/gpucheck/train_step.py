"""Step 2, training step: fwd+bwd tokens/s and MFU of a stack of real-shape MoT layers on one packed sequence.

The stack is the project's ``MoTModel`` (decoder layers of both experts, ``gradient_checkpointing`` as training sets
it) with ``scale.layers`` layers at the scale's LLM shapes (7B: D = 3584, I = 18944, 28 / 4 heads), random weights
in the working dtype (bf16 on CUDA). The input is one ``mixed_pack`` of ``scale.train_tokens`` tokens (8k on 7B):
random embeddings, the pack's routing (latents to the generation expert), RoPE ids and mask; the loss is the MSE of
the final hidden states against random targets (not their plain mean square, which RMSNorm makes constant), so real
gradients flow through every layer of both experts.

Measured with activation checkpointing off and on: step time (median), tokens/s, model TFLOPS (``train_flops``:
3 × forward, no recompute counted) and MFU = achieved / the chip's dense bf16 peak (null with the reason when the
chip is not in the table), and peak device memory. Checks: the loss and gradient norm agree between the two modes
(recomputation must not change the maths) and, on CUDA, checkpointing lowers the peak memory.
"""

from __future__ import annotations

import time

import torch

from unimage.gpucheck.runner import StepContext, timed
from unimage.gpucheck.workload import attention_pairs, build_stack, mixed_pack, train_flops
from unimage.model.attention import resolve_backend

__all__ = ["run_train"]

GRAD_RTOL = {torch.bfloat16: 2e-2, torch.float32: 1e-4}


def run_train(ctx: StepContext) -> None:
    """Time fwd+bwd of the layer stack with activation checkpointing off and on."""
    scale, dev, dtype = ctx.scale, ctx.device, ctx.dtype
    llm = scale.llm(vocab_size=16)  # the embedding table is not used by the stack's forward
    batch = mixed_pack(scale.model, scale.train_tokens, seed=2)
    pairs = attention_pairs(batch)
    batch = batch.to(dev)
    backend = resolve_backend(ctx.backend, dev)
    model = build_stack(llm, dev, dtype)
    model.train()
    routing, layout = batch.routing(), batch.layout()
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(batch.length, llm.hidden_size, generator=gen).to(dev, dtype)
    target = torch.randn(batch.length, llm.hidden_size, generator=gen).to(dev)
    flops = train_flops(llm, batch.length, pairs)
    peak = ctx.env.peak_bf16_tflops
    ctx.results.update(
        layers=llm.num_hidden_layers,
        hidden=llm.hidden_size,
        intermediate=llm.intermediate_size,
        params=sum(p.numel() for p in model.layers.parameters()),
        tokens=batch.length,
        gen_tokens=int(batch.is_gen.sum()),
        documents=len(batch.sample_lens),
        attention_pairs=pairs,
        backend=backend,
        dtype=str(dtype).removeprefix("torch."),
        model_flops_per_step=flops,
        peak_bf16_tflops=peak,
        mfu_note=None if peak else ctx.env.peak_source,
    )

    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        hidden, _ = model(embeds, batch.position_ids, routing, layout, backend)
        loss = (hidden.float() - target).pow(2).mean()
        loss.backward()
        return loss.detach()

    def measured_step() -> tuple[float, float]:
        loss = step()
        grads = [p.grad.float().pow(2).sum() for p in model.parameters() if p.grad is not None]
        return float(loss), float(torch.stack(grads).sum().sqrt())

    modes: dict[str, dict[str, object]] = {}
    ctx.results["modes"] = modes
    first: dict[str, tuple[float, float]] = {}
    for i, ac in enumerate((False, True)):
        name = "checkpointing_on" if ac else "checkpointing_off"
        if ctx.deadline.expired():
            modes[name] = {"status": "skipped", "reason": "time box ran out before this mode"}
            continue
        model.gradient_checkpointing = ac
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        first[name] = measured_step()  # warm-up (kernel selection, flex compile) and the value compared across modes
        ctx.sync()
        first_s = time.perf_counter() - t0
        timing = timed(step, ctx, iters=scale.timed_iters, warmup=0, share=1.0 / (2 - i))
        s = timing["median_s"]
        achieved = flops / s / 1e12
        modes[name] = {
            "step_s": round(s, 6),
            "tokens_per_s": round(batch.length / s, 1),
            "model_tflops": round(achieved, 3),
            "mfu": round(achieved / peak, 4) if peak else None,
            "peak_mem_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 3) if dev.type == "cuda" else None,
            "loss": first[name][0],
            "grad_norm": first[name][1],
            "first_step_s": round(first_s, 3),
            "timing": timing,
        }
    if len(first) == 2:
        (l0, g0), (l1, g1) = first["checkpointing_off"], first["checkpointing_on"]
        rtol = GRAD_RTOL.get(dtype, 2e-2)
        ctx.check("loss_rel_diff_ac_on_vs_off", abs(l1 - l0) / max(abs(l0), 1e-12), rtol)
        ctx.check("grad_norm_rel_diff_ac_on_vs_off", abs(g1 - g0) / max(abs(g0), 1e-12), rtol)
        m_off, m_on = modes["checkpointing_off"]["peak_mem_gib"], modes["checkpointing_on"]["peak_mem_gib"]
        if isinstance(m_off, float) and isinstance(m_on, float):
            ctx.check("peak_mem_ratio_ac_on_over_off", m_on / m_off, 1.0, "checkpointing must lower the peak")
