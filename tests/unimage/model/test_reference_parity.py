"""Parity with the official BAGEL implementation (ByteDance-Seed/Bagel), on a tiny random configuration.

Skipped unless ``BAGEL_REPO`` names a local checkout (never vendored; read-only). The official code is built with a
tiny random config, its weights are written as a BAGEL-layout directory, and ``load_bagel_dir`` loads that directory
into our ``UniMAGE`` / ``FluxVAE``. Both then run on identical inputs:

- next-token logits (and greedy decoding) after a ViT image + prompt;
- the velocity of a noisy VAE image in that context (clean VAE image, ViT image, prompt), without CFG and with
  text + image CFG (renorm ``global`` and ``text_channel``), and a 3-step Euler sampler;
- the training forward (CE and MSE) on a packed batch of two samples with text, ViT, clean-VAE and noisy-VAE
  segments (official nested-mask path);
- the FLUX autoencoder (encode mean, seeded posterior sample, decode).

CPU shims applied by monkeypatching (the checkout is never edited), as described in bagel-compat §8:

- a ``flash_attn`` stand-in whose ``flash_attn_varlen_func`` runs SDPA per segment with a bottom-right-aligned causal
  mask (flash-attn >= 2.1 semantics);
- ``sdpa_kernel`` (EFFICIENT_ATTENTION has no CPU kernel) replaced by a null context;
- transformers 5 compatibility: ``ROPE_INIT_FUNCTIONS["default"]`` (θ^(−2k/d), scaling 1; removed in v5) and
  ``pad_token_id`` set on the config;
- precision: the official attention hard-casts q/k/v to bf16 (``.to(torch.bfloat16)``). The main comparisons
  replace ``torch.bfloat16`` by ``torch.float32`` inside the official modules so both sides run in fp32; the remaining
  differences are float32 rounding (different summation order, fused SDPA kernels, RoPE via matmul), hence
  tolerances of 1e-4 absolute on O(1) outputs (measured: 1e-6 to 4e-6; CE and MSE agree to the last bit). Two tests
  run the official code unmodified under CPU bf16 autocast, as it runs in release; there the tolerance is bf16's:
  3 % of the output scale for logits (bf16 keeps 8 mantissa bits, ~0.4 % per rounding, accumulated over two layers
  and the softmax; measured 0.5 %), and for a guided velocity 1 % per branch times the guidance amplification
  s_T·s_I (measured 2.7 % at s_T = 4, s_I = 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.reference

# Tiny official configuration (shapes follow our "tiny" registry entry; the vocab holds our four special ids).
VOCAB = 512
TOKENS = {"im_start": 506, "im_end": 508, "vision_start": 509, "vision_end": 510}
NEW_TOKEN_IDS = {
    "bos_token_id": TOKENS["im_start"],
    "eos_token_id": TOKENS["im_end"],
    "start_of_image": TOKENS["vision_start"],
    "end_of_image": TOKENS["vision_end"],
}
TIMESTEP_SHIFT = 2.0
LATENT_C, LATENT_P = 16, 2


########################################################################################################################
# Shims
########################################################################################################################


def _flash_attn_stub() -> types.ModuleType:
    def flash_attn_varlen_func(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False, softmax_scale=None
    ):
        outs = []
        hq, hk = q.shape[1], k.shape[1]
        for i in range(len(cu_seqlens_q) - 1):
            qs = q[cu_seqlens_q[i] : cu_seqlens_q[i + 1]].transpose(0, 1)  # [H, Lq, d]
            ks = k[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            vs = v[cu_seqlens_k[i] : cu_seqlens_k[i + 1]].transpose(0, 1)
            if hk != hq:
                ks, vs = ks.repeat_interleave(hq // hk, 0), vs.repeat_interleave(hq // hk, 0)
            mask = None
            if causal:  # bottom-right aligned: query j sees keys <= j + (Lk - Lq)
                lq, lk = qs.shape[1], ks.shape[1]
                mask = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
            out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=softmax_scale)
            outs.append(out.transpose(0, 1))
        return torch.cat(outs, 0)

    module = types.ModuleType("flash_attn")
    module.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None)
    module.flash_attn_varlen_func = flash_attn_varlen_func  # type: ignore[attr-defined]
    return module


class _TorchFp32:
    """Stands in for ``torch`` inside the official modules: identical, except ``bfloat16`` is ``float32``."""

    bfloat16 = torch.float32

    def __getattr__(self, name):
        return getattr(torch, name)


def _attn_mask_utils_stub() -> types.ModuleType:
    """transformers 5 removed ``modeling_attn_mask_utils``; the official SigLIP imports ``_prepare_4d_attention_mask``
    from it at module level (used only by its text tower, which BAGEL never builds). Same semantics: a [B, S] 0/1
    padding mask → an additive [B, 1, T, S] mask (0 = keep, dtype minimum = masked)."""

    def _prepare_4d_attention_mask(mask, dtype, tgt_len=None):
        b, src = mask.shape
        expanded = mask[:, None, None, :].expand(b, 1, tgt_len or src, src).to(dtype)
        inverted = 1.0 - expanded
        return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)

    module = types.ModuleType("transformers.modeling_attn_mask_utils")
    module.__spec__ = importlib.machinery.ModuleSpec("transformers.modeling_attn_mask_utils", None)
    module._prepare_4d_attention_mask = _prepare_4d_attention_mask  # type: ignore[attr-defined]
    return module


@dataclasses.dataclass
class _NavitOutput:
    packed_query_sequence: torch.Tensor | None = None
    past_key_values: object = None


def _default_rope_init(config, device=None, **_kwargs):
    base = config.rope_theta
    dim = config.hidden_size // config.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim))
    return inv_freq, 1.0


@pytest.fixture(scope="module")
def official():
    """The official modules, imported from BAGEL_REPO with the CPU shims; sys.modules is restored afterwards."""
    pytest.importorskip("einops", reason="the official autoencoder imports einops")
    with official_modules(Path(os.environ["BAGEL_REPO"])) as ns:
        yield ns


@contextlib.contextmanager
def official_modules(repo: Path):
    """Import the official modules from the checkout ``repo`` with the CPU shims (also used by the benchmarks)."""
    repo = repo.resolve()
    # transformers probes for flash_attn when these load; import them before the stand-in exists
    importlib.import_module("transformers.modeling_utils")
    importlib.import_module("transformers.integrations.flash_attention")
    before = set(sys.modules)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(repo))
    mp.setitem(sys.modules, "flash_attn", _flash_attn_stub())
    if importlib.util.find_spec("transformers.modeling_attn_mask_utils") is None:  # transformers >= 5
        mp.setitem(sys.modules, "transformers.modeling_attn_mask_utils", _attn_mask_utils_stub())
    try:
        bagel_pkg = importlib.import_module("modeling.bagel")
        qwen2_navit = importlib.import_module("modeling.bagel.qwen2_navit")
        siglip_navit = importlib.import_module("modeling.bagel.siglip_navit")
        qwen2 = importlib.import_module("modeling.qwen2.modeling_qwen2")
        autoencoder = importlib.import_module("modeling.autoencoder")
        data_utils = importlib.import_module("data.data_utils")
        mp.setattr(qwen2_navit, "sdpa_kernel", lambda *a, **k: contextlib.nullcontext())
        # transformers 5's ModelOutput renames a ``past_key_values`` kwarg to ``cache``, which the official output
        # dataclass does not declare; a plain record with the two fields it is read through stands in.
        mp.setattr(qwen2_navit, "BaseNavitOutputWithPast", _NavitOutput)
        if "default" not in qwen2.ROPE_INIT_FUNCTIONS:
            mp.setattr(qwen2, "ROPE_INIT_FUNCTIONS", {**qwen2.ROPE_INIT_FUNCTIONS, "default": _default_rope_init})
        ns = types.SimpleNamespace(
            bagel=bagel_pkg,
            qwen2_navit=qwen2_navit,
            siglip_navit=siglip_navit,
            autoencoder=autoencoder,
            data_utils=data_utils,
            mp=mp,
        )
        yield ns
    finally:
        mp.undo()
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("modeling", "data", "flash_attn"):
                del sys.modules[name]


@contextlib.contextmanager
def fp32_official(official):
    """Run the official code with its hard bf16 casts turned into fp32 casts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(official.qwen2_navit, "torch", _TorchFp32())
        mp.setattr(official.siglip_navit, "torch", _TorchFp32())
        yield


########################################################################################################################
# Build the official tiny model, write it as a BAGEL-layout directory, load it into ours
########################################################################################################################


def _build_official(official, seed: int = 0, shapes: dict | None = None):
    """The official tiny model (``shapes`` overrides: ``llm`` / ``vit`` dicts, ``max_latent_size``, ``vit_side``;
    the training benchmark builds its larger configuration through this)."""
    b = official.bagel
    shapes = shapes or {}
    llm_shape = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        **shapes.get("llm", {}),
    }
    llm = b.Qwen2Config(
        **llm_shape,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        max_position_embeddings=4096,
        qk_norm=True,
        tie_word_embeddings=False,
        layer_module="Qwen2MoTDecoderLayer",
    )
    llm.pad_token_id = None  # transformers 5 no longer defines it by default
    vit_json = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "image_size": 112,
        "patch_size": 14,
        **shapes.get("vit", {}),
    }
    vit = b.SiglipVisionConfig(**vit_json, rope=False)
    vit.num_hidden_layers -= 1  # as every official script does
    ae_params = official.autoencoder.AutoEncoderParams(
        resolution=256,
        in_channels=3,
        downsample=8,
        ch=32,
        out_ch=3,
        ch_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        z_channels=LATENT_C,
        scale_factor=0.3611,
        shift_factor=0.1159,
    )
    cfg = b.BagelConfig(
        visual_gen=True,
        visual_und=True,
        llm_config=llm,
        vit_config=vit,
        vae_config=ae_params,
        latent_patch_size=LATENT_P,
        max_latent_size=shapes.get("max_latent_size", 8),
        vit_max_num_patch_per_side=shapes.get("vit_side", 8),
        connector_act="gelu_pytorch_tanh",
        interpolate_pos=False,
        timestep_shift=TIMESTEP_SHIFT,
    )
    torch.manual_seed(seed)
    model = b.Bagel(b.Qwen2ForCausalLM(llm), b.SiglipVisionModel(vit), cfg)
    model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit)
    with torch.no_grad():  # random everything (llm2vae starts at zero; norms at one): every weight must matter
        for name, p in model.named_parameters():
            if name.endswith("pos_embed"):
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    ae = official.autoencoder.AutoEncoder(ae_params)
    with torch.no_grad():
        for name, p in ae.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    return model.eval(), ae.eval(), llm, vit_json


@pytest.fixture(scope="module")
def pair(official, tmp_path_factory):
    return official_and_ours(official, tmp_path_factory.mktemp("bagel_ref") / "tiny")


def official_and_ours(official, d: Path, shapes: dict | None = None) -> types.SimpleNamespace:
    """Build the official model, write it as a BAGEL-layout directory ``d`` and load that into ours."""
    from safetensors.torch import save_file

    from unimage.model.checkpoint import load_bagel_dir

    ref, ae, llm, vit_json = _build_official(official, shapes=shapes)
    d.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(d / "ema.safetensors"))
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(d / "ae.safetensors"))
    llm.to_json_file(str(d / "llm_config.json"))
    (d / "vit_config.json").write_text(json.dumps({**vit_json, "model_type": "siglip_vision_model", "rope": False}))
    (d / "config.json").write_text(
        json.dumps(
            {
                "max_latent_size": (shapes or {}).get("max_latent_size", 8),
                "timestep_shift": TIMESTEP_SHIFT,
                "special_tokens": TOKENS,
            }
        )
    )
    ours = load_bagel_dir(d)
    return types.SimpleNamespace(ref=ref, ae=ae, model=ours.model, vae=ours.vae, config=ours.config, path=d)


def test_loaded_weights_are_the_official_ones(pair) -> None:
    ref_state = pair.ref.state_dict()
    ours = pair.model.state_dict()
    assert set(ours) == set(ref_state)
    assert all(torch.equal(ours[k], ref_state[k]) for k in ref_state)
    assert pair.config.vit.num_hidden_layers == 2 and pair.config.loss.timestep_shift == TIMESTEP_SHIFT
    flux = pair.vae.flux_state_dict()
    assert all(torch.equal(flux[k], v) for k, v in pair.ae.state_dict().items())


########################################################################################################################
# Inputs
########################################################################################################################


class _IdTokenizer:
    """The official ``prepare_prompts`` only calls ``encode``; prompts here are space-separated ids."""

    def encode(self, text):
        return [int(x) for x in text.split()]


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g) * 2 - 1


def _latents(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(LATENT_C, h * LATENT_P, w * LATENT_P, generator=g)


class _FixedVAE:
    """Stands in for the official AE in ``forward_cache_update_vae``: returns given latents (padded batch)."""

    def __init__(self, latents: torch.Tensor) -> None:
        self.latents = latents

    def encode(self, images):
        return self.latents[None]


PROMPT = [17, 42, 99, 3, 250, 7]
VIT_IMG = _image(3 * 14, 5 * 14, seed=1)  # 3x5 patches
CTX_LATENTS = _latents(2, 3, seed=2)  # a 32x48 px conditioning image: 2x3 latent tokens
GEN_SIZE = (48, 32)  # generated image (H, W) px: 3x2 latent tokens


def _official_context(official, ref, with_vae: bool, with_vit: bool, with_text: bool):
    """Prefill the official NaiveCache as InterleaveInferencer does: [VAE block][ViT block][text]."""
    cache = official.qwen2_navit.NaiveCache(ref.config.llm_config.num_hidden_layers)
    kv, rope = [0], [0]
    ident = lambda x: x  # noqa: E731
    if with_vae:
        pixels = torch.zeros(3, CTX_LATENTS.shape[1] * 8, CTX_LATENTS.shape[2] * 8)
        inp, kv, rope = ref.prepare_vae_images(kv, rope, [pixels], ident, NEW_TOKEN_IDS)
        cache = ref.forward_cache_update_vae(_FixedVAE(CTX_LATENTS), cache, **inp)
    if with_vit:
        inp, kv, rope = ref.prepare_vit_images(kv, rope, [VIT_IMG], ident, NEW_TOKEN_IDS)
        cache = ref.forward_cache_update_vit(cache, **inp)
    if with_text:
        inp, kv, rope = ref.prepare_prompts(kv, rope, [" ".join(map(str, PROMPT))], _IdTokenizer(), NEW_TOKEN_IDS)
        cache = ref.forward_cache_update_text(cache, **inp)
    return cache, kv, rope


def _our_context(model, with_vae: bool, with_vit: bool, with_text: bool):
    from unimage.model.cache import Context, prefill
    from unimage.model.packing import CleanVaeImage, Text, VitImage

    ctx = Context.empty()
    if with_vae:
        ctx = prefill(model, ctx, [CleanVaeImage(CTX_LATENTS)])
    if with_vit:
        ctx = prefill(model, ctx, [VitImage(VIT_IMG)])
    if with_text:
        ctx = prefill(model, ctx, [Text(PROMPT)])
    return ctx


########################################################################################################################
# Understanding: next-token logits after a ViT image and a prompt
########################################################################################################################


def _official_first_logits(official, ref, max_length: int = 1):
    cache, kv, rope = _official_context(official, ref, with_vae=False, with_vit=True, with_text=True)
    captured = []
    hook = ref.language_model.lm_head.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    try:
        inp = ref.prepare_start_tokens(kv, rope, NEW_TOKEN_IDS)
        tokens = ref.generate_text(cache, max_length=max_length, do_sample=False, end_token_id=None, **inp)
    finally:
        hook.remove()
    return captured, tokens[:, 0].tolist()


def _our_first_logits(model):
    from unimage.model.cache import run_cached
    from unimage.model.packing import pack_tokens

    ctx = _our_context(model, with_vae=False, with_vit=True, with_text=True)
    batch = pack_tokens([TOKENS["im_start"]], model.config, start_position=ctx.next_position)
    empty = torch.empty(0, model.config.patch_latent_dim)
    hidden, _ = run_cached(model, ctx, batch, empty, torch.empty(0))
    return model.language_model.lm_head(hidden[-1]), ctx


def test_next_token_logits_after_vit_image_and_prompt(official, pair) -> None:
    with fp32_official(official), torch.no_grad():
        captured, _ = _official_first_logits(official, pair.ref)
        ours, ctx = _our_first_logits(pair.model)
    expected = captured[0][0]
    assert ctx.length == (15 + 2) + (len(PROMPT) + 2)  # ViT block + text segment
    assert ctx.next_position == 1 + len(PROMPT) + 2
    err = (ours - expected).abs().max().item()
    print(f"\nnext-token logits: max |diff| = {err:.3e} (scale {expected.abs().max():.3f})")
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)


def test_greedy_decoding_matches(official, pair) -> None:
    from unimage.model.generation import generate_text

    with fp32_official(official), torch.no_grad():
        _, ref_tokens = _official_first_logits(official, pair.ref, max_length=9)
        ctx = _our_context(pair.model, with_vae=False, with_vit=True, with_text=True)
        ours = generate_text(pair.model, ctx, max_length=8)
    # official returns [<|im_start|>, t1, ..., t8]; ours returns t1..t8 (no stop token is forced in random weights)
    ref_generated = ref_tokens[1:]
    if TOKENS["im_end"] in ref_generated:
        ref_generated = ref_generated[: ref_generated.index(TOKENS["im_end"])]
    assert ours == ref_generated


def test_next_token_logits_bf16_autocast(official, pair) -> None:
    """The official code exactly as released (bf16 attention under autocast) vs ours in fp32."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        captured, _ = _official_first_logits(official, pair.ref)
    with torch.no_grad():
        ours, _ = _our_first_logits(pair.model)
    expected = captured[0][0].float()
    scale = expected.abs().max().item()
    err = (ours - expected).abs().max().item()
    print(f"\nnext-token logits (official bf16 autocast): max |diff| = {err:.3e}, scale {scale:.3f}")
    assert err <= 0.03 * scale


########################################################################################################################
# Generation: velocity of a noisy VAE image, with and without CFG
########################################################################################################################


def _official_sample(official, ref, noise, num_timesteps, cfg_text_scale, cfg_img_scale, renorm_type):
    """Official ``generate_image`` with the three contexts of ``interleave_inference`` for an edit
    ([VAE][ViT] image, then text): c = all, t̄ = the image without the text, ī = the text without the image."""
    cache, kv, rope = _official_context(official, ref, with_vae=True, with_vit=True, with_text=True)
    t_cache, t_kv, t_rope = _official_context(official, ref, with_vae=True, with_vit=True, with_text=False)
    i_cache, i_kv, i_rope = _official_context(official, ref, with_vae=False, with_vit=False, with_text=True)
    inp = ref.prepare_vae_latent(kv, rope, [GEN_SIZE], NEW_TOKEN_IDS)
    inp["packed_init_noises"] = noise.clone()
    t_inp = ref.prepare_vae_latent_cfg(t_kv, t_rope, [GEN_SIZE])
    i_inp = ref.prepare_vae_latent_cfg(i_kv, i_rope, [GEN_SIZE])
    out = ref.generate_image(
        past_key_values=cache,
        num_timesteps=num_timesteps,
        timestep_shift=3.0,
        cfg_renorm_min=0.0,
        cfg_renorm_type=renorm_type,
        cfg_interval=[0.0, 1.0],
        cfg_text_scale=cfg_text_scale,
        cfg_text_packed_query_indexes=t_inp["cfg_packed_query_indexes"],
        cfg_text_packed_position_ids=t_inp["cfg_packed_position_ids"],
        cfg_text_past_key_values=t_cache,
        cfg_text_key_values_lens=t_inp["cfg_key_values_lens"],
        cfg_text_packed_key_value_indexes=t_inp["cfg_packed_key_value_indexes"],
        cfg_img_scale=cfg_img_scale,
        cfg_img_packed_query_indexes=i_inp["cfg_packed_query_indexes"],
        cfg_img_packed_position_ids=i_inp["cfg_packed_position_ids"],
        cfg_img_past_key_values=i_cache,
        cfg_img_key_values_lens=i_inp["cfg_key_values_lens"],
        cfg_img_packed_key_value_indexes=i_inp["cfg_packed_key_value_indexes"],
        **inp,
    )
    return out[0]  # [Nl, Pl]


def _our_sample(model, noise, num_timesteps, cfg_text_scale, cfg_img_scale, renorm_type):
    from unimage.model.generation import CfgOptions, generate_image
    from unimage.model.image_transforms import patchify

    c = _our_context(model, with_vae=True, with_vit=True, with_text=True)
    t_bar = _our_context(model, with_vae=True, with_vit=True, with_text=False)
    i_bar = _our_context(model, with_vae=False, with_vit=False, with_text=True)
    cfg = CfgOptions(
        text_scale=cfg_text_scale, img_scale=cfg_img_scale, interval=(0.0, 1.0), renorm_min=0.0, renorm_type=renorm_type
    )
    lat = generate_image(
        model,
        c,
        GEN_SIZE,
        cfg=cfg,
        cfg_text_context=t_bar,
        cfg_img_context=i_bar,
        num_timesteps=num_timesteps,
        timestep_shift=3.0,
        noise=noise.clone(),
    )  # [C, h, w]
    return patchify(lat, LATENT_P)


@pytest.mark.parametrize(
    ("text_scale", "img_scale", "renorm"),
    [(1.0, 1.0, "global"), (4.0, 2.0, "global"), (4.0, 2.0, "text_channel"), (4.0, 1.0, "channel")],
)
def test_velocity_with_and_without_cfg(official, pair, text_scale, img_scale, renorm) -> None:
    """One Euler step from t = 1 to 0 returns x − v, so the difference to the noise is the guided velocity."""
    n_tok = (GEN_SIZE[0] // 16) * (GEN_SIZE[1] // 16)
    noise = torch.randn(n_tok, LATENT_C * LATENT_P**2, generator=torch.Generator().manual_seed(5))
    with fp32_official(official), torch.no_grad():
        v_ref = noise - _official_sample(official, pair.ref, noise, 2, text_scale, img_scale, renorm)
        v_ours = noise - _our_sample(pair.model, noise, 2, text_scale, img_scale, renorm)
    err = (v_ours - v_ref).abs().max().item()
    print(
        f"\nvelocity cfg=({text_scale}, {img_scale}, {renorm}): max |diff| = {err:.3e} (scale {v_ref.abs().max():.3f})"
    )
    assert v_ref.abs().max() > 1e-2  # llm2vae is random: a non-trivial velocity
    torch.testing.assert_close(v_ours, v_ref, rtol=0, atol=1e-4)


def test_velocity_with_cfg_bf16_autocast(official, pair) -> None:
    """The official sampler exactly as released (bf16 attention under CPU autocast) vs ours in fp32."""
    n_tok = (GEN_SIZE[0] // 16) * (GEN_SIZE[1] // 16)
    noise = torch.randn(n_tok, LATENT_C * LATENT_P**2, generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        v_ref = noise - _official_sample(official, pair.ref, noise, 2, 4.0, 2.0, "global").float()
    with torch.no_grad():
        v_ours = noise - _our_sample(pair.model, noise, 2, 4.0, 2.0, "global")
    scale = v_ref.abs().max().item()
    err = (v_ours - v_ref).abs().max().item()
    print(f"\nvelocity cfg=(4.0, 2.0, global), official bf16 autocast: max |diff| = {err:.3e}, scale {scale:.3f}")
    # Each branch carries ~1 % bf16 error; guidance multiplies branch differences by up to s_T·s_I = 8.
    assert err <= 0.01 * scale * 4.0 * 2.0


def test_three_step_sampler_with_cfg(official, pair) -> None:
    n_tok = (GEN_SIZE[0] // 16) * (GEN_SIZE[1] // 16)
    noise = torch.randn(n_tok, LATENT_C * LATENT_P**2, generator=torch.Generator().manual_seed(6))
    with fp32_official(official), torch.no_grad():
        x_ref = _official_sample(official, pair.ref, noise, 4, 4.0, 1.5, "global")
        x_ours = _our_sample(pair.model, noise, 4, 4.0, 1.5, "global")
    err = (x_ours - x_ref).abs().max().item()
    print(f"\n3-step sampler: max |diff| = {err:.3e}")
    torch.testing.assert_close(x_ours, x_ref, rtol=0, atol=1e-4)


########################################################################################################################
# Training forward: CE and MSE on a packed batch of two samples
########################################################################################################################

# Sample 1 (edit-like): clean VAE + ViT of a source image, an instruction with loss, the noisy target.
# Sample 2 (interleaved): a caption, a noisy target followed by its clean VAE copy and ViT copy, then text with loss.
TEXT_A, TEXT_B, TEXT_C = [5, 6, 7, 8], [40, 41, 42], [60, 61, 62, 63, 64]
LAT_SRC, LAT_T1, LAT_T2 = _latents(2, 3, seed=11), _latents(3, 2, seed=12), _latents(2, 2, seed=13)
VIT_SRC, VIT_T2 = _image(2 * 14, 4 * 14, seed=14), _image(3 * 14, 3 * 14, seed=15)
U1, U2 = 0.3, -0.8  # logit-normal draws of the two noisy images: t = sigmoid(u)


def _our_samples():
    from unimage.model.packing import CleanVaeImage, NoisyVaeImage, Text, VitImage

    t1, t2 = float(torch.sigmoid(torch.tensor(U1))), float(torch.sigmoid(torch.tensor(U2)))
    return [
        [CleanVaeImage(LAT_SRC), VitImage(VIT_SRC), Text(TEXT_A, loss=True), NoisyVaeImage(LAT_T1, timestep=t1)],
        [
            Text(TEXT_B),
            NoisyVaeImage(LAT_T2, timestep=t2),
            CleanVaeImage(LAT_T2),
            VitImage(VIT_T2),
            Text(TEXT_C, loss=True),
        ],
    ]


def _official_batch(official, plan=None, vit_side: int = 8, latent_side: int = 8):
    """The official training inputs, built by BAGEL's packing rules (``PackedDataset.pack_sequence``, bagel-compat
    §2.3, §2.4, §5.2) independently of our packer. Returns the kwargs of ``Bagel.forward``.

    ``plan``: per sample a list of ("text", (ids, loss)) / ("vit", pixels) / ("clean" | "noisy", (latents, u));
    default ``_official_plan()``. ``vit_side`` / ``latent_side``: the position tables' entries per side."""
    bos, eos = TOKENS["im_start"], TOKENS["im_end"]
    vs, ve = TOKENS["vision_start"], TOKENS["vision_end"]
    st = {
        "text_ids": [], "text_idx": [], "pos": [], "ce_idx": [], "labels": [], "vit_tokens": [], "vit_idx": [], "vit_pos": [], "vit_lens": [],
        "vae_lat": [], "vae_shapes": [], "vae_pos": [], "vae_idx": [], "timesteps": [], "mse_idx": [], "sample_lens": [], "masks": [],
    }  # fmt: skip
    curr = 0
    for sample in plan or _official_plan():
        rope, split_lens, modes = 0, [], []
        for kind, payload in sample:
            start = curr
            if kind == "text":
                ids, loss = payload
                shifted = [bos, *ids]
                st["text_ids"] += [*shifted, eos]
                st["text_idx"] += list(range(curr, curr + len(shifted) + 1))
                if loss:
                    st["ce_idx"] += list(range(curr, curr + len(shifted)))
                    st["labels"] += [*ids, eos]
                n = len(shifted) + 1
                st["pos"] += list(range(rope, rope + n))
                rope += n
                curr += n
                modes.append("causal")
            elif kind == "vit":
                img = payload
                tokens = official.data_utils.patchify(img, 14)
                st["text_ids"] += [vs, ve]
                st["text_idx"] += [curr, curr + 1 + tokens.shape[0]]
                st["vit_idx"] += list(range(curr + 1, curr + 1 + tokens.shape[0]))
                st["vit_tokens"].append(tokens)
                st["vit_lens"].append(tokens.shape[0])
                st["vit_pos"].append(
                    official.data_utils.get_flattened_position_ids_extrapolate(img.shape[1], img.shape[2], 14, vit_side)
                )
                curr += tokens.shape[0] + 2
                st["pos"] += [rope] * (tokens.shape[0] + 2)
                rope += 1
                modes.append("full")
            else:  # "clean" / "noisy" VAE latents
                lat, u = payload
                h, w = lat.shape[1] // LATENT_P, lat.shape[2] // LATENT_P
                n_img = h * w
                st["text_ids"] += [vs, ve]
                st["text_idx"] += [curr, curr + 1 + n_img]
                st["vae_idx"] += list(range(curr + 1, curr + 1 + n_img))
                st["vae_lat"].append(lat)
                st["vae_shapes"].append((h, w))
                st["vae_pos"].append(
                    official.data_utils.get_flattened_position_ids_extrapolate(h * 16, w * 16, 16, latent_side)
                )
                if kind == "noisy":
                    st["mse_idx"] += list(range(curr + 1, curr + 1 + n_img))
                    st["timesteps"] += [u] * n_img
                    modes.append("noise")
                else:
                    st["timesteps"] += [float("-inf")] * n_img
                    modes.append("full")
                st["pos"] += [rope] * (n_img + 2)
                if kind == "clean":
                    rope += 1
                curr += n_img + 2
            split_lens.append(curr - start)
        st["sample_lens"].append(sum(split_lens))
        st["masks"].append(official.data_utils.prepare_attention_mask_per_sample(split_lens, modes))
    seq_len = curr
    ce_mask = torch.zeros(seq_len, dtype=torch.bool)
    ce_mask[st["ce_idx"]] = True
    mse_mask = torch.zeros(seq_len, dtype=torch.bool)
    mse_mask[st["mse_idx"]] = True
    max_h = max(lat.shape[1] for lat in st["vae_lat"])
    max_w = max(lat.shape[2] for lat in st["vae_lat"])
    padded = torch.zeros(len(st["vae_lat"]), LATENT_C, max_h, max_w)
    for i, lat in enumerate(st["vae_lat"]):
        padded[i, :, : lat.shape[1], : lat.shape[2]] = lat
    kwargs = {
        "sequence_length": seq_len,
        "packed_text_ids": torch.tensor(st["text_ids"]),
        "packed_text_indexes": torch.tensor(st["text_idx"]),
        "sample_lens": st["sample_lens"],
        "packed_position_ids": torch.tensor(st["pos"]),
        "nested_attention_masks": st["masks"],
        "ce_loss_indexes": ce_mask,
        "packed_label_ids": torch.tensor(st["labels"]),
        "packed_vit_tokens": torch.cat(st["vit_tokens"]),
        "packed_vit_token_indexes": torch.tensor(st["vit_idx"]),
        "packed_vit_position_ids": torch.cat(st["vit_pos"]),
        "vit_token_seqlens": torch.tensor(st["vit_lens"]),
        "padded_latent": padded,
        "patchified_vae_latent_shapes": st["vae_shapes"],
        "packed_latent_position_ids": torch.cat(st["vae_pos"]),
        "packed_vae_token_indexes": torch.tensor(st["vae_idx"]),
        "packed_timesteps": torch.tensor(st["timesteps"]),
        "mse_loss_indexes": mse_mask,
    }
    return kwargs


def _official_plan():
    return [
        [("clean", (LAT_SRC, None)), ("vit", VIT_SRC), ("text", (TEXT_A, True)), ("noisy", (LAT_T1, U1))],
        [
            ("text", (TEXT_B, False)),
            ("noisy", (LAT_T2, U2)),
            ("clean", (LAT_T2, None)),
            ("vit", VIT_T2),
            ("text", (TEXT_C, True)),
        ],
    ]


def test_training_forward_ce_and_mse(official, pair) -> None:
    from unimage.model.packing import pack

    kwargs = _official_batch(official)
    batch = pack(_our_samples(), pair.model.config)
    # our packer reproduces the official layout
    assert batch.sample_lens == kwargs["sample_lens"]
    assert torch.equal(batch.position_ids, kwargs["packed_position_ids"])
    assert torch.equal(batch.text_ids, kwargs["packed_text_ids"])
    assert torch.equal(batch.text_indexes, kwargs["packed_text_indexes"])
    assert torch.equal(batch.vit_indexes, kwargs["packed_vit_token_indexes"])
    assert torch.equal(batch.vae_indexes, kwargs["packed_vae_token_indexes"])
    assert torch.equal(batch.ce_labels, kwargs["packed_label_ids"])
    assert torch.equal(batch.ce_indexes, kwargs["ce_loss_indexes"].nonzero()[:, 0])
    official_mask = torch.block_diag(*[m == 0 for m in kwargs["nested_attention_masks"]])  # samples block-diagonal
    assert torch.equal(batch.dense_mask(), official_mask)

    n_lat = int(batch.vae_latents.shape[0])
    noise = torch.randn(n_lat, LATENT_C * LATENT_P**2, generator=torch.Generator().manual_seed(21))
    ref, model = pair.ref, pair.model
    ref.train()
    model.train()
    try:
        with fp32_official(official):
            torch.manual_seed(21)  # the official forward draws randn_like(all latents) from the global RNG
            out = ref(**kwargs)
        ours = model(batch, noise=noise)
    finally:
        ref.eval()
        model.eval()
    ce_ref, mse_ref = out["ce"].mean(), out["mse"].mean()
    print(
        f"\ntraining forward: CE ours {ours.ce.item():.6f} official {ce_ref.item():.6f} "
        f"(|diff| {abs(ours.ce.item() - ce_ref.item()):.2e}); MSE ours {ours.mse.item():.6f} official "
        f"{mse_ref.item():.6f} (|diff| {abs(ours.mse.item() - mse_ref.item()):.2e})"
    )
    assert ours.num_ce_tokens == out["ce"].shape[0] and ours.num_mse_tokens == out["mse"].shape[0]
    torch.testing.assert_close(ours.ce, ce_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.mse, mse_ref, rtol=1e-5, atol=1e-5)
    # per-token values, not just the means
    ours_mse_sum = ours.mse_sum.item()
    assert math.isclose(ours_mse_sum, out["mse"].mean(-1).sum().item(), rel_tol=1e-5)


########################################################################################################################
# The FLUX autoencoder
########################################################################################################################


def test_autoencoder_matches_official(pair) -> None:
    x = _image(32, 48, seed=31)[None]
    z = torch.randn(1, LATENT_C, 4, 6, generator=torch.Generator().manual_seed(32))
    ae, vae = pair.ae, pair.vae
    with torch.no_grad():
        dec_ref, dec_ours = ae.decode(z), vae.decode(z)
        ae.reg.sample = False
        mean_ref = ae.encode(x)
        ae.reg.sample = True
        mean_ours = vae.encode(x, sample=False)
        torch.manual_seed(33)
        sample_ref = ae.encode(x)
        sample_ours = vae.encode(x, generator=torch.Generator().manual_seed(33))
    for name, a, b in (
        ("decode", dec_ours, dec_ref),
        ("encode mean", mean_ours, mean_ref),
        ("sample", sample_ours, sample_ref),
    ):
        print(f"\nAE {name}: max |diff| = {(a - b).abs().max().item():.3e}")
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


########################################################################################################################
# bf16 sampling drift: ours vs the official code's own
########################################################################################################################


@pytest.mark.slow
def test_50_step_bf16_sampling_drift_within_official(official, pair) -> None:
    """50 Euler steps with text + image CFG, bf16 weights vs the same weights in fp32, for both implementations.
    Our drift must stay within 1.5x of the official code's own bf16 drift (issue 13: it was 3.9 % vs 0.36 % when our
    flow state was rounded to bf16 at every step)."""
    import copy

    n_tok = (GEN_SIZE[0] // 16) * (GEN_SIZE[1] // 16)
    noise = torch.randn(n_tok, LATENT_C * LATENT_P**2, generator=torch.Generator().manual_seed(8))
    ref16 = copy.deepcopy(pair.ref).to(torch.bfloat16)
    ours16 = copy.deepcopy(pair.model).to(torch.bfloat16)
    with torch.no_grad():
        with fp32_official(official):
            x_ref32 = _official_sample(official, pair.ref, noise, 50, 4.0, 2.0, "global").float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_ref16 = _official_sample(official, ref16, noise, 50, 4.0, 2.0, "global").float()
        x_ours32 = _our_sample(pair.model, noise, 50, 4.0, 2.0, "global")
        x_ours16 = _our_sample(ours16, noise, 50, 4.0, 2.0, "global").float()
    scale = x_ref32.abs().max().item()
    official_drift = (x_ref16 - x_ref32).abs().max().item() / scale
    our_drift = (x_ours16 - x_ours32).abs().max().item() / scale
    print(f"\n50-step bf16 drift, % of scale: ours {100 * our_drift:.3f}, official {100 * official_drift:.3f}")
    torch.testing.assert_close(x_ours32, x_ref32, rtol=0, atol=1e-3)  # the fp32 runs agree
    assert our_drift <= 1.5 * official_drift
