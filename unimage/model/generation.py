"""Inference on top of a prefilled ``Context``: text decoding and rectified-flow image sampling with CFG.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/bagel.py`` (``generate_text``, ``generate_image``,
``_forward_flow``) and ``inferencer.py``; bagel-compat §3.4–§3.6, §4.3.

Text: decoding is seeded with ``<|im_start|>`` at the context's next RoPE id and feeds one token per step through the
understanding expert, growing a private copy of the cache; it stops at ``<|im_end|>`` or ``max_length``.

Image: the query block is ``<|vision_start|> [ID tokens] latents <|vision_end|>`` at one RoPE id (the context's next
id; a generated image does not advance it). Flow times t_i = shift(linspace(1, 0, N)), and for i < N−1:
x ← x − v(x, t_i)·(t_i − t_{i+1}), with v = ε − x0 pointing from data to noise. The context is never grown.

Classifier-free guidance uses three contexts that differ only in their cache and positions (same query tokens):
c (full context), t̄ (``cfg_text_context``: without the latest text; empty for text-to-image) and ī
(``cfg_img_context``: all text, no input images). Guidance is on only while interval[0] < t_i ≤ interval[1]
and only if the text scale is > 1 (``combine_cfg`` has the arithmetic). With ``batch_cfg`` (default) the active
branches of a step run as ONE forward: the query block is packed once per branch as separate documents over the
concatenated caches, each document seeing only [its cache ++ its query] (``cache.prepare_branches``); the
velocities equal the sequential ones up to float summation order. ``batch_cfg=False`` runs BAGEL's three forwards.
``generate_images`` goes one step further: the images of several independent requests (e.g. keyframe k of several
stories) are denoised in lockstep, all their branches as documents of one forward per step; each request keeps its
own generator, so each image equals its ``generate_image`` result up to float summation order.

Deviations: BAGEL decodes with batch 1 and draws noise from the global RNG; here one sample at a time too, and
every random draw takes an explicit ``torch.Generator``. ``top_p`` is an addition (BAGEL samples from the full
softmax; ``top_p=1`` reproduces that).

Shape letters: Nl latent tokens of the generated image, Pl latent token vector, C latent channels, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from unimage.model.cache import BranchBatch, Context, prepare_branches, run_branches, run_cached
from unimage.model.image_transforms import unpatchify
from unimage.model.packing import NoisyVaeImage, PackedBatch, Segment, pack, pack_tokens
from unimage.model.unimage import shift_timesteps

if TYPE_CHECKING:
    from unimage.model.unimage import UniMAGE

__all__ = [
    "EDIT_CFG",
    "T2I_CFG",
    "CfgOptions",
    "ImageRequest",
    "combine_cfg",
    "flow_timesteps",
    "generate_image",
    "generate_images",
    "generate_text",
    "sample_next_token",
]

RenormType = Literal["global", "channel", "text_channel"]


########################################################################################################################
# Text
########################################################################################################################


def sample_next_token(
    logits: Tensor,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """Pick the next token from [V] logits: argmax, or a draw from softmax(logits/T) restricted to the top-p nucleus.

    The nucleus is the smallest set of most-probable tokens whose probability reaches ``top_p`` (the top token is
    always kept).
    """
    if not do_sample:
        return int(logits.argmax())
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # [V]
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        before = sorted_p.cumsum(0) - sorted_p  # mass of strictly more probable tokens
        sorted_p = torch.where(before < top_p, sorted_p, torch.zeros_like(sorted_p))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


@torch.no_grad()
def generate_text(
    model: UniMAGE,
    context: Context,
    max_length: int = 512,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    vocab_limit: int | None = None,
) -> list[int]:
    """Decode a text segment after ``context`` (the context itself is not changed).

    Args:
        model: The model.
        context: Prefilled context.
        max_length: Most decoding steps, i.e. new tokens including a final stop token. BAGEL's loop returns at
            most ``max_length − 1`` new tokens after its seed, so ours with ``n`` matches BAGEL's ``n + 1``.
        do_sample: Sample instead of greedy argmax.
        temperature: Softmax temperature when sampling.
        top_p: Nucleus mass when sampling (1 = the full distribution, BAGEL's behaviour).
        generator: RNG of the draws.
        vocab_limit: Only ids below this are generated (pass the tokenizer's length: the embedding has spare rows,
            152064 vs 151665 for Qwen2.5, that no tokenizer can decode).

    Returns:
        The generated ids, without the ``<|im_start|>`` seed and without the final ``<|im_end|>``.
    """
    if vocab_limit is not None and not 0 < vocab_limit <= model.config.llm.vocab_size:
        raise ValueError(f"vocab_limit={vocab_limit} must be in [1, {model.config.llm.vocab_size}]")
    cfg = model.config
    device = model.llm2vae.weight.device
    empty_lat = torch.empty(0, cfg.patch_latent_dim, device=device)
    empty_t = torch.empty(0, device=device)
    token, out = cfg.tokens.im_start, []
    for _ in range(max_length):
        batch = pack_tokens([token], cfg, start_position=context.next_position).to(device)
        hidden, kv = run_cached(model, context, batch, empty_lat, empty_t)
        context = context.extended(kv, 1, context.next_position + 1)
        logits = model.language_model.lm_head(hidden[-1])  # [V]
        if vocab_limit is not None:
            logits = logits[:vocab_limit]
        token = sample_next_token(logits, do_sample, temperature, top_p, generator)
        if token == cfg.tokens.im_end:
            break
        out.append(token)
    return out


########################################################################################################################
# Classifier-free guidance
########################################################################################################################


@dataclass(frozen=True)
class CfgOptions:
    """Guidance settings (``Bagel.generate_image`` names without the ``cfg_`` prefix).

    Attributes:
        text_scale: s_T; guidance runs only when > 1.
        img_scale: s_I; the ī branch runs only when > 1 (and s_T > 1).
        interval: Guidance is on for interval[0] < t ≤ interval[1] (shifted t).
        renorm_min: Lower clamp of the renorm factor (1.0 disables renorm; it never scales up).
        renorm_type: ``global`` (whole-tensor norms), ``channel`` (per token), ``text_channel`` (per token, after
            the text step and before the image step).
    """

    text_scale: float = 1.0
    img_scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    renorm_min: float = 0.0
    renorm_type: RenormType = "global"

    def __post_init__(self) -> None:
        if self.renorm_type not in ("global", "channel", "text_channel"):
            raise ValueError(f"renorm_type={self.renorm_type!r}; choose global, channel or text_channel")
        if not self.interval[0] <= self.interval[1]:
            raise ValueError(f"interval {self.interval} must be (low, high) with low <= high")

    def active(self, t: float) -> tuple[float, float]:
        """(s_T, s_I) at flow time t: the scales inside the interval, (1, 1) outside."""
        if self.interval[0] < t <= self.interval[1]:
            return self.text_scale, self.img_scale
        return 1.0, 1.0


# Defaults of BAGEL's notebook / app (bagel-compat §3.6).
T2I_CFG = CfgOptions(text_scale=4.0, img_scale=1.0, interval=(0.4, 1.0), renorm_min=0.0, renorm_type="global")
EDIT_CFG = CfgOptions(text_scale=4.0, img_scale=2.0, interval=(0.0, 1.0), renorm_min=0.0, renorm_type="text_channel")


def _renorm(v_ref: Tensor, v: Tensor, per_token: bool, renorm_min: float) -> Tensor:
    if per_token:
        n_ref, n = v_ref.norm(dim=-1, keepdim=True), v.norm(dim=-1, keepdim=True)  # [Nl, 1]
    else:
        n_ref, n = v_ref.norm(), v.norm()
    return v * (n_ref / (n + 1e-8)).clamp(min=renorm_min, max=1.0)


def combine_cfg(
    v_c: Tensor,
    v_text: Tensor | None,
    v_img: Tensor | None,
    text_scale: float,
    img_scale: float,
    renorm_type: RenormType = "global",
    renorm_min: float = 0.0,
) -> Tensor:
    """BAGEL's guidance arithmetic on velocities [Nl, Pl] (bagel-compat §3.5).

    Args:
        v_c: Velocity with the full context.
        v_text: Velocity of the t̄ branch (needed when ``text_scale > 1``).
        v_img: Velocity of the ī branch (needed when ``img_scale > 1`` and ``text_scale > 1``).
        text_scale: s_T (no guidance at all unless > 1).
        img_scale: s_I.
        renorm_type: ``global`` / ``channel`` / ``text_channel``.
        renorm_min: Lower clamp of the renorm factor.
    """
    if text_scale <= 1.0:
        return v_c
    if v_text is None:
        raise ValueError("text guidance (text_scale > 1) needs the t̄ velocity")
    if img_scale > 1.0 and v_img is None:
        raise ValueError("image guidance (img_scale > 1) needs the ī velocity")
    u = v_text + text_scale * (v_c - v_text)
    if renorm_type == "text_channel":
        u = _renorm(v_c, u, per_token=True, renorm_min=renorm_min)
        return v_img + img_scale * (u - v_img) if img_scale > 1.0 and v_img is not None else u
    if img_scale > 1.0 and v_img is not None:
        u = v_img + img_scale * (u - v_img)
    return _renorm(v_c, u, per_token=renorm_type == "channel", renorm_min=renorm_min)


########################################################################################################################
# Image
########################################################################################################################


def flow_timesteps(num_timesteps: int, shift: float) -> Tensor:
    """[N] times shift(linspace(1, 0, N)); the sampler takes N−1 Euler steps between consecutive entries."""
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if shift <= 0:
        raise ValueError(f"timestep shift must be > 0, got {shift}")
    return shift_timesteps(torch.linspace(1, 0, num_timesteps, dtype=torch.float64), shift).float()


def _velocity(model: UniMAGE, context: Context, batch: PackedBatch, x: Tensor, t: Tensor) -> Tensor:
    """v(x, t) [Nl, Pl] of the query block ``batch`` over ``context`` (the context is not grown)."""
    hidden, _ = run_cached(model, context, batch, x, t)
    return model.llm2vae(hidden[batch.vae_indexes]).float()  # the CFG arithmetic and the Euler update run in fp32


def _batched_velocities(model: UniMAGE, branches: BranchBatch, x: Tensor, t: Tensor) -> list[Tensor]:
    """v(x, t) of every branch in one forward: n × [Nl, Pl], in the order of the prepared contexts."""
    n = branches.num_branches
    hidden = run_branches(model, branches, x.repeat(n, 1), t.repeat(n))  # [n·Lq, D]
    v = model.llm2vae(hidden[branches.batch.vae_indexes]).float()  # [n·Nl, Pl], branch-major
    return list(v.view(n, *x.shape).unbind(0))


@dataclass(frozen=True)
class ImageRequest:
    """One image of a ``generate_images`` call: its guidance contexts, ID tokens and noise generator.

    Attributes:
        context: Full context c.
        cfg_text_context: Context t̄ (required when the text scale is > 1).
        cfg_img_context: Context ī (required when both scales are > 1).
        id_token_ids: ID tokens of the frame (``config.layout.image_id_tokens``: empty without ID prompting).
        generator: RNG of the initial noise (drawn exactly as ``generate_image`` draws it).
    """

    context: Context
    cfg_text_context: Context | None = None
    cfg_img_context: Context | None = None
    id_token_ids: Sequence[int] = ()
    generator: torch.Generator | None = None


def _latent_grid(model: UniMAGE, size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) latent tokens per side of an image of ``size`` (H, W) pixels, validated."""
    config = model.config
    ds = config.latent_downsample
    if size[0] % ds or size[1] % ds or min(size) <= 0:
        raise ValueError(f"image size {size} must be positive multiples of {ds} pixels")
    h, w = size[0] // ds, size[1] // ds
    if max(h, w) > config.max_latent_size:
        raise ValueError(f"image size {size} needs {h}x{w} latent tokens, the table has {config.max_latent_size}")
    return h, w


@torch.no_grad()
def generate_image(
    model: UniMAGE,
    context: Context,
    size: tuple[int, int],
    cfg: CfgOptions | None = None,
    cfg_text_context: Context | None = None,
    cfg_img_context: Context | None = None,
    id_token_ids: Sequence[int] = (),
    num_timesteps: int = 50,
    timestep_shift: float = 3.0,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    batch_cfg: bool = True,
) -> Tensor:
    """Sample one image's normalised VAE latents after ``context`` (Euler, t = 1 → 0): ``generate_images`` with one
    request, the same denoising loop.

    Args:
        model: The model.
        context: Full context c.
        size: (H, W) in pixels, multiples of ``config.latent_downsample`` (16 for BAGEL).
        cfg: Guidance settings (None = no guidance).
        cfg_text_context: Context t̄ (required when ``cfg.text_scale > 1``).
        cfg_img_context: Context ī (required when ``cfg.img_scale > 1``).
        id_token_ids: ID tokens of the frame being generated (``config.layout.image_id_tokens``; empty without ID
            prompting).
        num_timesteps: N (N−1 model steps, each with up to three forward passes).
        timestep_shift: s of the sampling schedule (3.0 in BAGEL's apps).
        generator: RNG of the initial noise.
        noise: Optional initial x [Nl, Pl] instead of a draw.
        batch_cfg: Run the guidance branches of a step as one batched forward (False: one forward per branch, as
            BAGEL; a debug switch, tested equal). Same velocities either way up to float summation order.

    Returns:
        [C, H/8, W/8] latents, to be decoded by the VAE.
    """
    cfg = cfg or CfgOptions()
    _latent_grid(model, size)
    if cfg.text_scale > 1 and cfg_text_context is None:
        raise ValueError("cfg.text_scale > 1 needs cfg_text_context")
    if cfg.text_scale > 1 and cfg.img_scale > 1 and cfg_img_context is None:
        raise ValueError("cfg.img_scale > 1 needs cfg_img_context")
    request = ImageRequest(context, cfg_text_context, cfg_img_context, id_token_ids, generator)
    return _denoise(model, [request], size, cfg, num_timesteps, timestep_shift, [noise], batch_cfg)[0]


@torch.no_grad()
def generate_images(
    model: UniMAGE,
    requests: Sequence[ImageRequest],
    size: tuple[int, int],
    cfg: CfgOptions | None = None,
    num_timesteps: int = 50,
    timestep_shift: float = 3.0,
    batch_cfg: bool = True,
) -> list[Tensor]:
    """Sample several same-size images in lockstep: one forward per denoising step over all requests' branches.

    Inside the guidance interval the documents are (request r, branch b) for every active branch, request-major;
    outside it only the c branches run. Batching pays off on a GPU (one larger forward instead of n·branches small
    ones); the result of request r equals ``generate_image`` with its contexts and generator (up to summation order).

    Args:
        model: The model.
        requests: The images to sample (at least one).
        size: (H, W) in pixels of every image, multiples of ``config.latent_downsample``.
        cfg: Guidance settings (None = no guidance).
        num_timesteps: N (N−1 batched forwards).
        timestep_shift: s of the sampling schedule.
        batch_cfg: False runs every branch of every request as its own forward (the debug / reference path).

    Returns:
        One [C, H/8, W/8] latent tensor per request, in order.
    """
    if not requests:
        raise ValueError("generate_images() needs at least one request")
    return _denoise(model, requests, size, cfg or CfgOptions(), num_timesteps, timestep_shift, None, batch_cfg)


def _denoise(
    model: UniMAGE,
    requests: Sequence[ImageRequest],
    size: tuple[int, int],
    cfg: CfgOptions,
    num_timesteps: int,
    timestep_shift: float,
    noises: Sequence[Tensor | None] | None,
    batched: bool,
) -> list[Tensor]:
    """THE Euler / CFG loop of both entry points (one request is the batch of one).

    The flow state x [R, Nl, Pl], the timesteps and the CFG arithmetic stay fp32 whatever the weights' dtype (as in
    BAGEL's sampler): rounding x to bf16 at each of the 49 updates drifts the result by several % of its scale; the
    model casts its input to its own dtype.
    """
    config = model.config
    h, w = _latent_grid(model, size)
    device = model.llm2vae.weight.device
    c, p = config.latent_channels, config.latent_patch_size
    nl = h * w
    nb = 1 + (cfg.text_scale > 1) + (cfg.text_scale > 1 and cfg.img_scale > 1)  # branches per request: c, t̄, ī
    branch_ctx: list[list[Context]] = []
    queries: list[list[Segment]] = []
    for r, req in enumerate(requests):
        ctxs = [req.context, req.cfg_text_context, req.cfg_img_context][:nb]
        missing = [name for ctx, name in zip(ctxs, ("c", "t̄", "ī")) if ctx is None]
        if missing:
            raise ValueError(f"request {r}: the guidance settings need its {', '.join(missing)} context")
        branch_ctx.append([ctx for ctx in ctxs if ctx is not None])
        queries.append([NoisyVaeImage(torch.zeros(c, h * p, w * p), id_token_ids=req.id_token_ids)])

    if batched:  # request-major documents (r, b) over the joined caches, built once for all steps
        plain = prepare_branches(model, [ctxs[0] for ctxs in branch_ctx], [], queries)
        guided_ctx = [ctx for ctxs in branch_ctx for ctx in ctxs]
        guided = prepare_branches(model, guided_ctx, [], [q for q in queries for _ in range(nb)]) if nb > 1 else plain
    else:  # one query block per (request, branch), at that context's RoPE id
        blocks = [
            [(ctx, pack([queries[r]], config, start_position=ctx.next_position).to(device)) for ctx in ctxs]
            for r, ctxs in enumerate(branch_ctx)
        ]

    xs = []
    for r, req in enumerate(requests):
        given = noises[r] if noises is not None else None
        if given is not None and tuple(given.shape) != (nl, config.patch_latent_dim):
            raise ValueError(f"noise has shape {tuple(given.shape)}, expected ({nl}, {config.patch_latent_dim})")
        xs.append(given if given is not None else torch.randn(nl, config.patch_latent_dim, generator=req.generator))
    x = torch.stack([xi.to(torch.float32) for xi in xs]).to(device)  # [R, Nl, Pl], fp32 flow state
    ts = flow_timesteps(num_timesteps, timestep_shift)
    for i in range(num_timesteps - 1):
        t = float(ts[i])
        s_text, s_img = cfg.active(t)
        k = nb if s_text > 1 else 1  # inside the interval every branch is active, outside only c
        if batched:
            branches = guided if k > 1 else plain
            inputs = x.repeat_interleave(k, dim=0).flatten(0, 1)  # [R·k·Nl, Pl], request-major
            hidden = run_branches(model, branches, inputs, torch.full((inputs.shape[0],), t, device=device))
            v = model.llm2vae(hidden[branches.batch.vae_indexes]).float().view(len(requests), k, nl, -1)
        else:
            t_tok = torch.full((nl,), t, device=device)
            v = torch.stack(
                [
                    torch.stack([_velocity(model, ctx, blk, x[r], t_tok) for ctx, blk in blocks[r][:k]])
                    for r in range(len(requests))
                ]
            )  # [R, k, Nl, Pl]
        for r in range(len(requests)):
            v_text = v[r, 1] if k > 1 else None
            v_img = v[r, 2] if k > 2 else None
            v_r = combine_cfg(v[r, 0], v_text, v_img, s_text, s_img, cfg.renorm_type, cfg.renorm_min)
            x[r] = x[r] - v_r * float(ts[i] - ts[i + 1])
    return [unpatchify(x[r], h, w, p, c) for r in range(len(requests))]
