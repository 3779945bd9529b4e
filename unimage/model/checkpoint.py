"""Read and write BAGEL-layout checkpoint directories (the public BAGEL-7B-MoT release, or our own exports).

A BAGEL-layout directory (DESIGN.md §3.2, bagel-compat §1.1) holds:

- ``llm_config.json``: Hugging Face Qwen2 config (``LLMConfig``);
- ``vit_config.json``: SigLIP config whose ``num_hidden_layers`` is one MORE than the layers stored (``ViTConfig``);
- ``ema.safetensors``: every UniMAGE/BAGEL weight except the VAE, keys as in ``bagel_checkpoint_shapes``;
- ``ae.safetensors``: the FLUX autoencoder under its original keys (``unimage.model.vae``); or, for a model with
  ``ae="synth"`` (``config.json``), ``synth_ae.safetensors``: the patch-PCA autoencoder (``unimage.model.synth_ae``),
  its shape in ``config.json``'s ``synth_ae_config`` together with its fit record (held-out reconstruction PSNR);
- Qwen2 tokenizer files; optionally ``config.json`` (BAGEL's top-level fields, which the official scripts ignore).

Loading goes through an explicit key table, ``bagel_checkpoint_shapes(config)``, written from the reference's shape
formulas (bagel-compat §1.4), not from our module tree: the checkpoint's key set must equal the table (the only keys
allowed to be absent are the two fixed sin-cos tables, which are then recomputed, as BAGEL's training loader does),
every shape must match, and our module's state dict must equal the table too (an internal invariant). Weights are
then assigned into a model built on the meta device (``load_state_dict(assign=True)``) straight from the safetensors
file, tensor by tensor, so a 7B checkpoint never exists twice in memory. Pickle files (``.bin`` / ``.pt``) are read
only with ``allow_pickle=True``.

Derived from the checkpoint rather than from ``config.json`` (which vllm-omni notes may be stale):
``max_latent_size`` and ``vit_max_num_patch_per_side`` come from the row counts of the two sin-cos tables, and the VAE
shape from ``ae.safetensors``'s header.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import fsio
from unimage.model.config import LLMConfig, ModelConfig, SpecialTokens, get_config
from unimage.model.synth_ae import SYNTH_AE_FILE, SynthAE, SynthAEConfig, infer_synth_ae_config
from unimage.model.vae import Autoencoder, FluxVAE, VAEConfig
from unimage.model.vit import ViTConfig

if TYPE_CHECKING:
    from unimage.model.unimage import UniMAGE
    from unimage.script.tokenizer import ScriptTokenizer

__all__ = [
    "AE_FILE",
    "CONFIG_FILE",
    "EMA_FILE",
    "LLM_CONFIG_FILE",
    "POS_TABLE_KEYS",
    "SYNTH_AE_FILE",
    "VIT_CONFIG_FILE",
    "BagelCheckpoint",
    "CheckReport",
    "bagel_checkpoint_shapes",
    "build_model_on_meta",
    "check_bagel_dir",
    "check_key_table",
    "infer_vae_config",
    "load_bagel_dir",
    "load_model_weights",
    "read_bagel_config",
    "resolve_bagel_dir",
    "save_bagel_dir",
    "write_tiny_bagel_dir",
]

LLM_CONFIG_FILE = "llm_config.json"
VIT_CONFIG_FILE = "vit_config.json"
CONFIG_FILE = "config.json"
EMA_FILE = "ema.safetensors"
AE_FILE = "ae.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")
POS_TABLE_KEYS = ("latent_pos_embed.pos_embed", "vit_pos_embed.pos_embed")

Shape = tuple[int, ...]
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}


# ---------------------------------------------------------------------------------------------------- the key table


def bagel_checkpoint_shapes(config: ModelConfig) -> dict[str, Shape]:
    """Every key of ``ema.safetensors`` for ``config`` with its shape (bagel-compat §1.4).

    For ``bagel-7b-mot`` this is 1223 tensors and 14,607,260,128 numbers.
    """
    llm, vit = config.llm, config.vit
    h, i, v, d = llm.hidden_size, llm.intermediate_size, llm.vocab_size, llm.head_dim
    q_out, kv_out = llm.num_attention_heads * d, llm.num_key_value_heads * d
    out: dict[str, Shape] = {"language_model.model.embed_tokens.weight": (v, h)}
    for layer in range(llm.num_hidden_layers):
        p = f"language_model.model.layers.{layer}"
        for sfx in ("", "_moe_gen"):
            out[f"{p}.self_attn.q_proj{sfx}.weight"] = (q_out, h)
            out[f"{p}.self_attn.q_proj{sfx}.bias"] = (q_out,)
            for name in ("k_proj", "v_proj"):
                out[f"{p}.self_attn.{name}{sfx}.weight"] = (kv_out, h)
                out[f"{p}.self_attn.{name}{sfx}.bias"] = (kv_out,)
            out[f"{p}.self_attn.o_proj{sfx}.weight"] = (h, q_out)
            if llm.qk_norm:
                out[f"{p}.self_attn.q_norm{sfx}.weight"] = (d,)
                out[f"{p}.self_attn.k_norm{sfx}.weight"] = (d,)
            out[f"{p}.mlp{sfx}.gate_proj.weight"] = (i, h)
            out[f"{p}.mlp{sfx}.up_proj.weight"] = (i, h)
            out[f"{p}.mlp{sfx}.down_proj.weight"] = (h, i)
            out[f"{p}.input_layernorm{sfx}.weight"] = (h,)
            out[f"{p}.post_attention_layernorm{sfx}.weight"] = (h,)
    out["language_model.model.norm.weight"] = (h,)
    out["language_model.model.norm_moe_gen.weight"] = (h,)
    out["language_model.lm_head.weight"] = (v, h)
    out["time_embedder.mlp.0.weight"] = (h, 256)
    out["time_embedder.mlp.0.bias"] = (h,)
    out["time_embedder.mlp.2.weight"] = (h, h)
    out["time_embedder.mlp.2.bias"] = (h,)
    out["vae2llm.weight"] = (h, config.patch_latent_dim)
    out["vae2llm.bias"] = (h,)
    out["llm2vae.weight"] = (config.patch_latent_dim, h)
    out["llm2vae.bias"] = (config.patch_latent_dim,)
    out["latent_pos_embed.pos_embed"] = (config.max_latent_size**2, h)
    dv, iv = vit.hidden_size, vit.intermediate_size
    p = "vit_model.vision_model"
    out[f"{p}.embeddings.patch_embedding.weight"] = (dv, vit.patch_dim)  # stored as a Linear: [1152, 588]
    out[f"{p}.embeddings.patch_embedding.bias"] = (dv,)
    out[f"{p}.embeddings.position_embedding.weight"] = (vit.num_patches_per_side**2, dv)
    for layer in range(vit.num_hidden_layers):
        lp = f"{p}.encoder.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{lp}.self_attn.{name}.weight"] = (dv, dv)
            out[f"{lp}.self_attn.{name}.bias"] = (dv,)
        for name in ("layer_norm1", "layer_norm2"):
            out[f"{lp}.{name}.weight"] = (dv,)
            out[f"{lp}.{name}.bias"] = (dv,)
        out[f"{lp}.mlp.fc1.weight"] = (iv, dv)
        out[f"{lp}.mlp.fc1.bias"] = (iv,)
        out[f"{lp}.mlp.fc2.weight"] = (dv, iv)
        out[f"{lp}.mlp.fc2.bias"] = (dv,)
    out[f"{p}.post_layernorm.weight"] = (dv,)
    out[f"{p}.post_layernorm.bias"] = (dv,)
    out["connector.fc1.weight"] = (h, dv)
    out["connector.fc1.bias"] = (h,)
    out["connector.fc2.weight"] = (h, h)
    out["connector.fc2.bias"] = (h,)
    out["vit_pos_embed.pos_embed"] = (config.vit_max_num_patch_per_side**2, h)
    return out


def _key_diff_message(source: str, missing: list[str], unexpected: list[str]) -> str:
    hint = ""
    if any(".encoder.layers." in k for k in unexpected) or any(".encoder.layers." in k for k in missing):
        hint = (
            f" (ViT layer count: {VIT_CONFIG_FILE} must say one layer MORE than the checkpoint stores, "
            "e.g. 27 for the 26 layers of BAGEL-7B-MoT)"
        )
    return (
        f"{source}: {len(missing)} missing key(s) {sorted(missing)[:10]}, "
        f"{len(unexpected)} unexpected key(s) {sorted(unexpected)[:10]}{hint}"
    )


def check_key_table(
    shapes: dict[str, Shape], expected: dict[str, Shape], source: str, optional: tuple[str, ...] = ()
) -> None:
    """Raise ``ValueError`` unless ``shapes`` has exactly the expected keys (``optional`` may be absent) and shapes."""
    missing = [k for k in expected if k not in shapes and k not in optional]
    unexpected = [k for k in shapes if k not in expected]
    if missing or unexpected:
        raise ValueError(_key_diff_message(source, missing, unexpected))
    bad = [f"{k}: {shapes[k]} != expected {expected[k]}" for k in shapes if tuple(shapes[k]) != tuple(expected[k])]
    if bad:
        raise ValueError(f"{source}: {len(bad)} shape mismatch(es): " + "; ".join(bad[:10]))


# -------------------------------------------------------------------------------------------------------- file access


def _find_weights(directory: Path, stem: str, allow_pickle: bool) -> Path:
    safe = directory / f"{stem}.safetensors"
    if safe.is_file():
        return safe
    pickles = [directory / f"{stem}{sfx}" for sfx in _PICKLE_SUFFIXES if (directory / f"{stem}{sfx}").is_file()]
    if pickles and not allow_pickle:
        raise ValueError(
            f"{directory}: found {pickles[0].name} but no {safe.name}; pickle checkpoints can run code when loaded, "
            "pass allow_pickle=True to load it anyway"
        )
    if pickles:
        return pickles[0]
    raise FileNotFoundError(f"{directory}: no {safe.name} found")


class _TensorSource:
    """Uniform, lazy access to a safetensors file (memory-mapped, tensor by tensor) or an opted-in pickle file."""

    def __init__(self, path: Path, device: str | torch.device) -> None:
        self.path = path
        self.device = str(device)
        self._pickled: dict[str, torch.Tensor] | None = None
        self._safe: Any = None
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                self._safe = safe_open(str(path), framework="pt", device=self.device)
            except Exception as err:  # safetensors raises its own error types
                raise ValueError(f"{path}: not a readable safetensors file: {err}") from err
        else:
            try:
                loaded = torch.load(path, map_location=self.device, mmap=True, weights_only=True)
            except Exception as err:  # unpickling raises many error types
                raise ValueError(f"{path}: not a readable torch checkpoint: {err}") from err
            if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
                loaded = loaded["state_dict"]
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
            self._pickled = loaded

    def shapes(self) -> dict[str, Shape]:
        if self._pickled is not None:
            return {k: tuple(v.shape) for k, v in self._pickled.items()}
        return {k: tuple(self._safe.get_slice(k).get_shape()) for k in self._safe.keys()}  # noqa: SIM118

    def dtypes(self) -> tuple[str, ...]:
        if self._pickled is not None:
            return tuple(sorted({str(v.dtype).removeprefix("torch.") for v in self._pickled.values()}))
        codes = {str(self._safe.get_slice(k).get_dtype()) for k in self._safe.keys()}  # noqa: SIM118
        return tuple(sorted(_SAFETENSORS_DTYPES.get(c, c) for c in codes))

    def get(self, key: str) -> torch.Tensor:
        if self._pickled is not None:
            return self._pickled[key]
        return self._safe.get_tensor(key)


# -------------------------------------------------------------------------------------------------------- configs


def infer_vae_config(shapes: dict[str, Shape], base: VAEConfig | None = None, source: str = AE_FILE) -> VAEConfig:
    """The VAE shape implied by the FLUX keys of ``ae.safetensors`` (scale/shift from ``base``).

    Raises:
        ValueError: The file does not look like a FLUX autoencoder.
    """
    base = base or VAEConfig()
    try:
        ch = shapes["encoder.conv_in.weight"][0]
        z = shapes["decoder.conv_in.weight"][1]
        levels = sorted({int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down.")})
        ch_mult = tuple(shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] // ch for i in levels)
        nrb = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down.0.block.")})
    except (KeyError, IndexError) as err:
        raise ValueError(f"{source}: not a FLUX autoencoder state dict (missing {err})") from err
    if levels != list(range(len(levels))):
        raise ValueError(f"{source}: encoder levels {levels} are not 0..n-1")
    try:
        return replace(
            base, ch=ch, z_channels=z, ch_mult=ch_mult, num_res_blocks=nrb, downsample=2 ** (len(levels) - 1)
        )
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


def _side_from_rows(rows: int, key: str, source: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"{source}: {key} has {rows} rows, not a square number")
    return side


def read_bagel_config(
    directory: str | Path,
    ema_shapes: dict[str, Shape] | None = None,
    ae_shapes: dict[str, Shape] | None = None,
    synth_ae_shapes: dict[str, Shape] | None = None,
    **changes: Any,
) -> ModelConfig:
    """Assemble the ``ModelConfig`` of a BAGEL-layout directory.

    ``llm_config.json`` and ``vit_config.json`` are required; ``config.json`` is optional (release inference defaults
    otherwise); the sin-cos table sizes come from ``ema_shapes`` and the VAE shape from ``ae_shapes`` (or, for a synth
    autoencoder, ``synth_ae_shapes``) when given.
    ``changes`` are top-level ``ModelConfig`` fields applied before validation (see ``ModelConfig.from_json_dicts``).
    """
    directory = Path(directory)
    llm = LLMConfig.from_json(directory / LLM_CONFIG_FILE)
    vit = ViTConfig.from_json(directory / VIT_CONFIG_FILE)
    top: dict[str, Any] = {}
    top_path = directory / CONFIG_FILE
    if top_path.is_file():
        try:
            top = json.loads(top_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{top_path}: cannot read: {err}") from err
    vae = VAEConfig.from_json_dict(top.get("vae_config") or {}, source=f"{top_path}: vae_config")
    if ae_shapes is not None:
        vae = infer_vae_config(ae_shapes, vae, source=str(directory / AE_FILE))
    if synth_ae_shapes is not None:
        written = top.get("synth_ae_config") or {}
        base = SynthAEConfig.from_json_dict(written, source=f"{top_path}: synth_ae_config")
        synth = infer_synth_ae_config(synth_ae_shapes, str(directory / SYNTH_AE_FILE), base)  # shapes from the file
        top["synth_ae_config"] = {**written, **synth.to_json_dict()}
    if ema_shapes is not None:
        for key, field_name in zip(POS_TABLE_KEYS, ("max_latent_size", "vit_max_num_patch_per_side")):
            if key in ema_shapes:
                top[field_name] = _side_from_rows(ema_shapes[key][0], key, str(directory / EMA_FILE))
    return ModelConfig.from_json_dicts(top, llm, vit, vae, source=str(top_path), changes=changes)


# -------------------------------------------------------------------------------------------------------- locating

_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt"]


def resolve_bagel_dir(
    path_or_repo_id: str | Path, local_files_only: bool = True, cache_dir: str | Path | None = None
) -> Path:
    """A local BAGEL-layout directory for ``path_or_repo_id``.

    An existing directory is returned as is. Otherwise a string of the form ``owner/name`` is treated as a Hugging Face
    repo id and resolved with ``huggingface_hub.snapshot_download`` (json, safetensors and txt files only, as the
    BAGEL README's download filter minus the pickles), from the cache alone unless ``local_files_only=False``.
    ``cache_dir`` overrides the Hugging Face cache location.

    Raises:
        FileNotFoundError: Neither an existing directory nor a resolvable repo id (the message says which).
    """
    directory = Path(path_or_repo_id)
    if directory.is_dir():
        return directory
    text = str(path_or_repo_id)
    parts = text.split("/")
    if len(parts) != 2 or not all(parts) or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"BAGEL checkpoint directory not found: {directory}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            text,
            allow_patterns=_HUB_PATTERNS,
            local_files_only=local_files_only,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except Exception as err:  # huggingface_hub raises several error types (offline, not cached, not found)
        where = "in the local Hugging Face cache" if local_files_only else "on the Hugging Face Hub"
        raise FileNotFoundError(f"{text!r} is not a local directory and could not be resolved {where}: {err}") from err
    return Path(local)


@dataclass(frozen=True)
class CheckReport:
    """What ``check_bagel_dir`` found (from headers only: no weight is read).

    Attributes:
        config: The model config the directory describes.
        num_tensors: Tensors in the weights file.
        num_numbers: Numbers in the weights file.
        dtypes: Dtype names found in the weights file.
        ae_tensors: Tensors in ``ae.safetensors`` (``synth_ae.safetensors`` for a synth autoencoder; 0 when absent).
        missing_pos_tables: Fixed sin-cos tables absent from the file (they would be recomputed).
    """

    config: ModelConfig
    num_tensors: int
    num_numbers: int
    dtypes: tuple[str, ...]
    ae_tensors: int
    missing_pos_tables: tuple[str, ...]


def check_bagel_dir(path: str | Path, allow_pickle: bool = False) -> CheckReport:
    """Validate a BAGEL-layout directory against the key table without loading any weight.

    Raises:
        FileNotFoundError: A required file is missing.
        ValueError: Configs, key sets or shapes are wrong (the message lists them).
    """
    directory = resolve_bagel_dir(path)
    ema_path = _find_weights(directory, "ema", allow_pickle)
    source = _TensorSource(ema_path, "cpu")
    shapes = source.shapes()
    ae_shapes: dict[str, Shape] | None = None
    ae_file = directory / AE_FILE
    if ae_file.is_file():
        ae_shapes = _TensorSource(ae_file, "cpu").shapes()
    synth_shapes: dict[str, Shape] | None = None
    if (directory / SYNTH_AE_FILE).is_file():  # shapes and keys are checked by infer_synth_ae_config
        synth_shapes = _TensorSource(directory / SYNTH_AE_FILE, "cpu").shapes()
    config = read_bagel_config(directory, shapes, ae_shapes, synth_ae_shapes=synth_shapes)
    check_key_table(shapes, bagel_checkpoint_shapes(config), str(ema_path), optional=POS_TABLE_KEYS)
    if ae_shapes is not None:
        from unimage.model.vae import flux_to_diffusers_key_table

        table = set(flux_to_diffusers_key_table(config.vae))
        missing, unexpected = sorted(table - set(ae_shapes)), sorted(set(ae_shapes) - table)
        if missing or unexpected:
            raise ValueError(_key_diff_message(str(ae_file), missing, unexpected))
    return CheckReport(
        config=config,
        num_tensors=len(shapes),
        num_numbers=sum(math.prod(s) for s in shapes.values()),
        dtypes=source.dtypes(),
        ae_tensors=len((synth_shapes if config.ae == "synth" else ae_shapes) or {}),
        missing_pos_tables=tuple(k for k in POS_TABLE_KEYS if k not in shapes),
    )


# -------------------------------------------------------------------------------------------------------- loading


def build_model_on_meta(config: ModelConfig) -> UniMAGE:
    """``UniMAGE(config)`` with every parameter on the meta device (no memory, no init)."""
    from unimage.model.unimage import UniMAGE

    with torch.device("meta"):
        return UniMAGE(config)


def _finish_buffers(model: UniMAGE, device: torch.device | str) -> None:
    """Materialise what the checkpoint does not hold (RoPE ``inv_freq``) and check nothing is left on meta."""
    model.reset_rope(device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left on the meta device after loading: {left[:10]}")


def load_model_weights(
    model: UniMAGE,
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    recompute_pos_tables: bool = False,
) -> None:
    """Assign the weights of ``ema.safetensors`` (or an opted-in pickle) into ``model`` (typically built on meta).

    Args:
        model: The model; its parameters are replaced (``assign=True``), so a meta model costs nothing extra.
        path: The weights file.
        device: Where tensors are loaded.
        dtype: Cast floating tensors to this dtype while loading (None keeps the file's dtype).
        recompute_pos_tables: Recompute the two fixed sin-cos tables instead of loading them (they are recomputed
            anyway when absent from the file).

    Raises:
        ValueError: Key set or shapes differ from ``bagel_checkpoint_shapes`` (keys are listed).
    """
    path = Path(path)
    source = _TensorSource(path, device)
    expected = bagel_checkpoint_shapes(model.config)
    file_shapes = source.shapes()
    check_key_table(file_shapes, expected, str(path), optional=POS_TABLE_KEYS)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_key_table(own, expected, f"{type(model).__name__} state dict (internal key table)")
    state: dict[str, torch.Tensor] = {}
    for key in expected:
        if key in POS_TABLE_KEYS and (recompute_pos_tables or key not in file_shapes):
            continue
        t = source.get(key)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[key] = t
    for key in POS_TABLE_KEYS:
        if key not in state:
            from unimage.model.embeddings import sincos_2d_table

            rows, dim = expected[key]
            table = sincos_2d_table(dim, math.isqrt(rows)).to(device)
            state[key] = table.to(dtype) if dtype is not None else table
    model.load_state_dict(state, strict=True, assign=True)
    # assign=True copies requires_grad from the loaded tensors; the sin-cos tables stay frozen, the rest trainable.
    for name, p in model.named_parameters():
        p.requires_grad_(not name.endswith("pos_embed.pos_embed"))
    _finish_buffers(model, device)


@dataclass
class BagelCheckpoint:
    """What ``load_bagel_dir`` returns.

    Attributes:
        model: The UniMAGE model, in eval mode.
        vae: The autoencoder, ``FluxVAE`` or ``SynthAE`` as ``config.ae`` says (None when ``load_vae=False``).
        config: The model config (encoders included).
        tokenizer: The tokenizer adapter (None unless ``load_tokenizer=True``).
        path: The directory.
    """

    model: UniMAGE
    vae: Autoencoder | None
    config: ModelConfig
    tokenizer: ScriptTokenizer | None
    path: Path


def load_bagel_dir(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    load_vae: bool = True,
    load_tokenizer: bool = False,
    recompute_pos_tables: bool = False,
    local_files_only: bool = True,
    **config_changes: Any,
) -> BagelCheckpoint:
    """Load a BAGEL-layout directory into ``UniMAGE`` (+ ``FluxVAE``) with zero missing / unexpected keys.

    Args:
        path: A local directory, or a Hugging Face repo id such as ``ByteDance-Seed/BAGEL-7B-MoT`` resolved through the
            standard Hugging Face cache (see ``resolve_bagel_dir``).
        device: Device of the loaded weights.
        dtype: Cast floating weights while loading (None keeps the file's dtype, bf16 for the release).
        allow_pickle: Accept ``ema.bin`` / ``ae.pt``-style pickle files when no safetensors file exists.
        load_vae: Also load the autoencoder: ``ae.safetensors`` (FLUX), or ``synth_ae.safetensors`` when
            ``config.json`` says ``"ae": "synth"``.
        load_tokenizer: Also load the Qwen2 tokenizer files through ``unimage.script.tokenizer``.
        recompute_pos_tables: See ``load_model_weights``.
        local_files_only: For a repo id: use only what is already in the Hugging Face cache (the default; pass False
            to allow a download).
        **config_changes: Top-level ``ModelConfig`` fields to change (e.g. ``id_prompting=True``,
            ``attention_backend="flex"``); shapes cannot be changed.

    Raises:
        FileNotFoundError: The directory or a required file is missing.
        ValueError: A config or weight file is invalid (the message names the file, key or field).
    """
    directory = resolve_bagel_dir(path, local_files_only=local_files_only)
    ema_path = _find_weights(directory, "ema", allow_pickle)
    ema_shapes = _TensorSource(ema_path, "cpu").shapes()  # headers only (pickles are memory-mapped)
    synth = _declared_ae(directory) == "synth"
    ae_path = _find_weights(directory, "ae", allow_pickle) if load_vae and not synth else None
    ae_source = _TensorSource(ae_path, device) if ae_path is not None else None
    synth_path = directory / SYNTH_AE_FILE
    synth_shapes: dict[str, Shape] | None = None
    if synth and synth_path.is_file():
        synth_shapes = _TensorSource(synth_path, "cpu").shapes()
    elif synth and load_vae:
        raise FileNotFoundError(f"{directory}: config.json says ae=synth but there is no {SYNTH_AE_FILE}")
    # Overrides join the file's values before validation: ``tokens=`` must be able to rescue a small-vocab config.json
    # without ``special_tokens`` (the Qwen default ids would not validate on their own).
    config = read_bagel_config(
        directory, ema_shapes, ae_source.shapes() if ae_source else None, synth_shapes, **config_changes
    )
    model = build_model_on_meta(config)
    load_model_weights(model, ema_path, device=device, dtype=dtype, recompute_pos_tables=recompute_pos_tables)
    model.eval()

    vae: Autoencoder | None = None
    if synth and load_vae:
        vae = SynthAE.from_safetensors(synth_path, device=device)
        if dtype is not None:
            vae = vae.to(dtype)
    if ae_source is not None:
        with torch.device("meta"):
            vae = FluxVAE(config.vae)
        state = {k: ae_source.get(k) for k in ae_source.shapes()}
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        vae.load_flux_state_dict(state, assign=True, source=str(ae_path))  # strict: raises listing bad keys
        vae.eval()

    tokenizer = None
    if load_tokenizer:
        from unimage.script.tokenizer import HFTokenizer

        tokenizer = HFTokenizer.from_directory(directory)
        _check_tokens(config, tokenizer, directory)
    return BagelCheckpoint(model=model, vae=vae, config=config, tokenizer=tokenizer, path=directory)


def _declared_ae(directory: Path) -> str:
    """``config.json``'s ``ae`` (``flux`` when the file or the key is absent, as in the public release)."""
    top_path = directory / CONFIG_FILE
    if not top_path.is_file():
        return "flux"
    try:
        top = json.loads(top_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{top_path}: cannot read: {err}") from err
    return str(top.get("ae", "flux")) if isinstance(top, dict) else "flux"


def _check_tokens(config: ModelConfig, tokenizer: ScriptTokenizer, directory: Path) -> None:
    ids = {
        "im_start": tokenizer.im_start_id,
        "im_end": tokenizer.im_end_id,
        "vision_start": tokenizer.vision_start_id,
        "vision_end": tokenizer.vision_end_id,
    }
    wrong = {k: (v, getattr(config.tokens, k)) for k, v in ids.items() if v != getattr(config.tokens, k)}
    if wrong:
        raise ValueError(
            f"{directory}: tokenizer ids differ from the model's special tokens (tokenizer, model): {wrong}"
        )
    if tokenizer.vocab_size > config.llm.vocab_size:
        raise ValueError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} ids but the embedding only {config.llm.vocab_size} rows"
        )


# -------------------------------------------------------------------------------------------------------- saving


def _save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with fsio.atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_bagel_dir(
    model: UniMAGE,
    path: str | Path,
    vae: Autoencoder | None = None,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (and ``vae``) as a BAGEL-layout directory that the official code and ``load_bagel_dir`` read.

    Every file is written to a temporary name and renamed. Keys and shapes are checked against
    ``bagel_checkpoint_shapes`` before anything is written.

    Args:
        model: The model to export.
        path: Target directory (created; existing files of the layout are replaced).
        vae: The autoencoder: a ``FluxVAE`` is written as ``ae.safetensors`` under FLUX keys, a ``SynthAE`` as
            ``synth_ae.safetensors`` (its fit record also goes into ``config.json``'s ``synth_ae_config``). Its kind
            must be the model's ``config.ae``.
        tokenizer_dir: A directory whose tokenizer files are copied alongside.
        dtype: Cast floating tensors (e.g. ``torch.bfloat16`` as in the release); None keeps them.

    Returns:
        The directory.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = dict(model.state_dict())
    check_key_table({k: tuple(v.shape) for k, v in state.items()}, bagel_checkpoint_shapes(config), "model state dict")
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _save_safetensors_atomic(state, directory / EMA_FILE, {"format": "pt"})
    config.llm.to_json(directory / LLM_CONFIG_FILE)
    config.vit.to_json(directory / VIT_CONFIG_FILE)
    if vae is not None:
        kind = "synth" if isinstance(vae, SynthAE) else "flux"
        if kind != config.ae:
            raise ValueError(f"the autoencoder is a {type(vae).__name__} but model.config.ae={config.ae!r}")
    top = config.to_json_dict()
    top["vae_config"] = config.vae.to_json_dict()
    if config.ae == "synth":
        top["synth_ae_config"] = config.synth_ae.to_json_dict()
        if isinstance(vae, SynthAE):
            top["synth_ae_config"]["fit"] = vae.fit_info
    fsio.atomic_write_text(directory / CONFIG_FILE, json.dumps(top, indent=2, sort_keys=True) + "\n")
    if isinstance(vae, SynthAE):
        if vae.config != config.synth_ae:
            raise ValueError(f"vae.config {vae.config} differs from model.config.synth_ae {config.synth_ae}")
        vae.save(directory / SYNTH_AE_FILE)  # bf16 would round the basis: the synth AE always stays in fp32
    elif vae is not None:
        if vae.config != config.vae:
            raise ValueError(f"vae.config {vae.config} differs from model.config.vae {config.vae}")
        ae_state = vae.flux_state_dict()
        if dtype is not None:
            ae_state = {k: v.to(dtype) for k, v in ae_state.items()}
        _save_safetensors_atomic(ae_state, directory / AE_FILE, {"format": "pt"})
    if tokenizer_dir is not None:
        src = Path(tokenizer_dir)
        copied = [name for name in TOKENIZER_FILES if (src / name).is_file()]
        if not copied:
            raise FileNotFoundError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        for name in copied:
            if (src / name).resolve() != (directory / name).resolve():
                with fsio.atomic_path(directory / name) as tmp:
                    shutil.copyfile(src / name, tmp)
    return directory


# -------------------------------------------------------------------------------------------------------- tiny dirs


def config_for_tokenizer(base: ModelConfig, tok: ScriptTokenizer) -> ModelConfig:
    """``base`` with the special token ids of ``tok`` and at least its vocabulary (rounded up to a multiple of 64).

    A model built from a named size for a tokenizer of its own (``unimage fit --model.tokenizer DIR``, tiny BAGEL
    directories): the embedding needs a row for every id, and BAGEL's chat/vision ids are wherever the tokenizer put
    them.
    """
    vocab = max(base.llm.vocab_size, -(-tok.vocab_size // 64) * 64)
    tokens = SpecialTokens(
        im_start=tok.im_start_id, im_end=tok.im_end_id, vision_start=tok.vision_start_id, vision_end=tok.vision_end_id
    )
    return replace(base, llm=replace(base.llm, vocab_size=vocab), tokens=tokens)


def write_tiny_bagel_dir(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random BAGEL-layout directory of a small named size (tests, examples, offline demos).

    The tokenizer is a tiny real Qwen2-style BPE tokenizer (``unimage.script.tiny_tokenizer``); the model's special
    token ids and vocabulary size are set from it. ``llm2vae`` is randomised (BAGEL zero-initialises it, which would
    make every predicted velocity 0) so generation tests see a non-trivial model. Deterministic in ``seed``.
    ``tiny-synth`` gets a synth autoencoder fitted on seeded random smooth images (a placeholder with the right shapes
    and conventions, marked ``"placeholder": true`` in its fit record; training fits it on real keyframes).

    Raises:
        ValueError: ``size`` is a full-size config (use a real checkpoint instead).
    """
    from unimage.model.unimage import UniMAGE
    from unimage.script.tiny_tokenizer import write_tiny_qwen2_tokenizer
    from unimage.script.tokenizer import HFTokenizer

    if size not in ("tiny", "tiny-synth", "small"):
        raise ValueError(
            f"write_tiny_bagel_dir writes random weights for 'tiny', 'tiny-synth' or 'small' only, got {size!r}"
        )
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_qwen2_tokenizer(directory, with_vision_tokens=True)
    config = config_for_tokenizer(get_config(size), HFTokenizer.from_directory(directory))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UniMAGE(config)
        with torch.no_grad():
            torch.nn.init.normal_(model.llm2vae.weight, std=0.02)
            torch.nn.init.normal_(model.llm2vae.bias, std=0.02)
        vae: Autoencoder = FluxVAE(config.vae) if config.ae == "flux" else _placeholder_synth_ae(config, seed)
    save_bagel_dir(model, directory, vae=vae)
    return directory


def _placeholder_synth_ae(config: ModelConfig, seed: int) -> SynthAE:
    """A synth autoencoder fitted on 32 seeded random smooth 64 px images (low-resolution noise, upsampled)."""
    from unimage.model.synth_ae import fit_synth_ae

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(32, config.synth_ae.in_channels, 8, 8, generator=g)
    images = torch.tanh(torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False))
    ae = fit_synth_ae(list(images), config.synth_ae)
    ae.fit_info = {**ae.fit_info, "placeholder": True}
    return ae
