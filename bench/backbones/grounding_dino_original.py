"""Load IDEA-Research's ORIGINAL `groundingdino_swint_ogc.pth` into transformers' `GroundingDinoForObjectDetection`.

Why: the ViStoryBench bundle (§11) ships the original checkpoint (`{"model": state_dict}` of the
`groundingdino` package), not the transformers conversion. Both hold the same tensors under different names;
a few are fused in one format and split in the other:

- Swin window attention: `attn.qkv` ([3C, C], rows q, k, v in that order) ↔ `q_proj`/`k_proj`/`v_proj`.
- `nn.MultiheadAttention` (text-enhancer self-attention, decoder self-attention, decoder text cross-attention):
  `in_proj_weight` ([3D, D], rows q, k, v) / `in_proj_bias` ↔ `query`/`key`/`value`.

`RULES` is the complete table. Every original key must match exactly one rule (or one `DROPPED` pattern:
tensors the original file carries that inference does not use or that transformers recomputes); anything
else is an error naming the key, so a different checkpoint cannot half-load silently.

Hyper-parameters are read from tensor shapes where shapes determine them (Swin width, depths, heads and
window; d_model; layer counts; FFN widths; query count; feature levels). The attention head counts and
deformable sampling points of the transformer are not determined by shapes; they are the official Swin-T OGC
values (8 heads, 4 points, `GroundingDINO_SwinT_OGC.py`), checked against the `sampling_offsets` shape.
The BERT text encoder's config comes from the bundle's `google-bert/bert-base-uncased/` directory, as in the
original code, which builds BERT from that directory and then overwrites its weights from the checkpoint.

Safety: the file is read with `torch.load(weights_only=True)`, which only unpickles tensors and plain
containers; the released checkpoint is exactly that. A file needing arbitrary unpickling is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Official transformer hyper-parameters that tensor shapes do not determine (GroundingDINO_SwinT_OGC.py).
OFFICIAL_HEADS = 8
OFFICIAL_POINTS = 4
OFFICIAL_MAX_TEXT_LEN = 256

_SWIN = "model.backbone.conv_encoder.model.swin"
_STAGE_NORMS = "model.backbone.conv_encoder.model.hidden_states_norms"


@dataclass(frozen=True)
class Rule:
    """One row of the conversion table.

    Attributes:
        original: regex over original keys (full match); named groups are copied into `hf`.
        hf: transformers key template(s) (`\\g<name>` substitutions). Several targets mean the original tensor
            is split along dim 0 into that many equal chunks, in this order (fused q, k, v).
    """

    original: str
    hf: tuple[str, ...]


def _r(original: str, *hf: str) -> Rule:
    return Rule(original, hf)


_L = r"(?P<l>\d+)"  # layer index
_B = r"(?P<b>\d+)"  # block / sub-layer index
_W = r"(?P<w>weight|bias)"
_QKV_W = ("query.weight", "key.weight", "value.weight")
_QKV_B = ("query.bias", "key.bias", "value.bias")


def _mha(original_prefix: str, hf_prefix: str) -> list[Rule]:
    """nn.MultiheadAttention (fused in_proj) → transformers' split query/key/value + out_proj."""
    return [
        _r(rf"{original_prefix}\.in_proj_weight", *(f"{hf_prefix}.{n}" for n in _QKV_W)),
        _r(rf"{original_prefix}\.in_proj_bias", *(f"{hf_prefix}.{n}" for n in _QKV_B)),
        _r(rf"{original_prefix}\.out_proj\.{_W}", rf"{hf_prefix}.out_proj.\g<w>"),
    ]


_SWIN_BLOCK = rf"backbone\.0\.layers\.{_L}\.blocks\.{_B}"
_HF_SWIN_BLOCK = rf"{_SWIN}.encoder.layers.\g<l>.blocks.\g<b>"
_ENC = rf"transformer\.encoder\.layers\.{_L}"
_ENC_TEXT = rf"transformer\.encoder\.text_layers\.{_L}"
_ENC_FUSE = rf"transformer\.encoder\.fusion_layers\.{_L}"
_HF_ENC = r"model.encoder.layers.\g<l>"
_DEC = rf"transformer\.decoder\.layers\.{_L}"
_HF_DEC = r"model.decoder.layers.\g<l>"
_MSDA = r"(?P<p>sampling_offsets|attention_weights|value_proj|output_proj)"
_FUSE_LINEAR = {"v_proj": "vision_proj", "l_proj": "text_proj", "values_v_proj": "values_vision_proj"}
_FUSE_LINEAR |= {"values_l_proj": "values_text_proj", "out_v_proj": "out_vision_proj", "out_l_proj": "out_text_proj"}

#: The complete original → transformers table for Grounding DINO (Swin backbone, BERT text encoder).
RULES: tuple[Rule, ...] = (
    # --- Swin-T image backbone (`backbone.0`; `backbone.1` is the parameter-free sine position encoding)
    _r(rf"backbone\.0\.patch_embed\.proj\.{_W}", rf"{_SWIN}.embeddings.patch_embeddings.projection.\g<w>"),
    _r(rf"backbone\.0\.patch_embed\.norm\.{_W}", rf"{_SWIN}.embeddings.norm.\g<w>"),
    _r(rf"{_SWIN_BLOCK}\.norm1\.{_W}", rf"{_HF_SWIN_BLOCK}.layernorm_before.\g<w>"),
    _r(rf"{_SWIN_BLOCK}\.norm2\.{_W}", rf"{_HF_SWIN_BLOCK}.layernorm_after.\g<w>"),
    _r(
        rf"{_SWIN_BLOCK}\.attn\.relative_position_bias_table",
        rf"{_HF_SWIN_BLOCK}.attention.relative_position_bias.relative_position_bias_table",
    ),
    _r(rf"{_SWIN_BLOCK}\.attn\.qkv\.{_W}", *(rf"{_HF_SWIN_BLOCK}.attention.{p}_proj.\g<w>" for p in "qkv")),
    _r(rf"{_SWIN_BLOCK}\.attn\.proj\.{_W}", rf"{_HF_SWIN_BLOCK}.attention.o_proj.\g<w>"),
    _r(rf"{_SWIN_BLOCK}\.mlp\.(?P<fc>fc1|fc2)\.{_W}", rf"{_HF_SWIN_BLOCK}.mlp.\g<fc>.\g<w>"),
    _r(
        rf"backbone\.0\.layers\.{_L}\.downsample\.(?P<m>reduction\.weight|norm\.weight|norm\.bias)",
        rf"{_SWIN}.encoder.layers.\g<l>.downsample.\g<m>",
    ),
    # per-output-stage norms: original `norm{i}` is Swin stage i (0-based) = transformers `stage{i+1}`
    *(_r(rf"backbone\.0\.norm{i}\.{_W}", rf"{_STAGE_NORMS}.stage{i + 1}.\g<w>") for i in range(4)),
    # --- BERT text encoder (same module names inside; the pooler is dropped, see DROPPED)
    _r(r"bert\.(?P<rest>(embeddings|encoder)\..+)", r"model.text_backbone.\g<rest>"),
    _r(rf"feat_map\.{_W}", r"model.text_projection.\g<w>"),
    # --- input projections of the 4 feature levels: (Conv2d, GroupNorm) Sequentials
    _r(rf"input_proj\.{_L}\.(?P<m>0|1)\.{_W}", r"model.input_proj_vision.\g<l>.\g<m>.\g<w>"),
    # --- encoder: deformable image layer, text-enhancer layer and bi-attention fusion layer per index
    _r(rf"{_ENC}\.self_attn\.{_MSDA}\.{_W}", rf"{_HF_ENC}.deformable_layer.self_attn.\g<p>.\g<w>"),
    _r(rf"{_ENC}\.norm1\.{_W}", rf"{_HF_ENC}.deformable_layer.self_attn_layer_norm.\g<w>"),
    _r(rf"{_ENC}\.linear1\.{_W}", rf"{_HF_ENC}.deformable_layer.fc1.\g<w>"),
    _r(rf"{_ENC}\.linear2\.{_W}", rf"{_HF_ENC}.deformable_layer.fc2.\g<w>"),
    _r(rf"{_ENC}\.norm2\.{_W}", rf"{_HF_ENC}.deformable_layer.final_layer_norm.\g<w>"),
    *_mha(rf"{_ENC_TEXT}\.self_attn", rf"{_HF_ENC}.text_enhancer_layer.self_attn"),
    _r(rf"{_ENC_TEXT}\.linear1\.{_W}", rf"{_HF_ENC}.text_enhancer_layer.fc1.\g<w>"),
    _r(rf"{_ENC_TEXT}\.linear2\.{_W}", rf"{_HF_ENC}.text_enhancer_layer.fc2.\g<w>"),
    _r(rf"{_ENC_TEXT}\.norm1\.{_W}", rf"{_HF_ENC}.text_enhancer_layer.layer_norm_before.\g<w>"),
    _r(rf"{_ENC_TEXT}\.norm2\.{_W}", rf"{_HF_ENC}.text_enhancer_layer.layer_norm_after.\g<w>"),
    _r(rf"{_ENC_FUSE}\.gamma_v", rf"{_HF_ENC}.fusion_layer.vision_param"),
    _r(rf"{_ENC_FUSE}\.gamma_l", rf"{_HF_ENC}.fusion_layer.text_param"),
    _r(rf"{_ENC_FUSE}\.layer_norm_v\.{_W}", rf"{_HF_ENC}.fusion_layer.layer_norm_vision.\g<w>"),
    _r(rf"{_ENC_FUSE}\.layer_norm_l\.{_W}", rf"{_HF_ENC}.fusion_layer.layer_norm_text.\g<w>"),
    *(
        _r(rf"{_ENC_FUSE}\.attn\.{src}\.{_W}", rf"{_HF_ENC}.fusion_layer.attn.{dst}.\g<w>")
        for src, dst in _FUSE_LINEAR.items()
    ),
    # --- decoder layers
    _r(rf"{_DEC}\.cross_attn\.{_MSDA}\.{_W}", rf"{_HF_DEC}.encoder_attn.\g<p>.\g<w>"),
    _r(rf"{_DEC}\.norm1\.{_W}", rf"{_HF_DEC}.encoder_attn_layer_norm.\g<w>"),
    *_mha(rf"{_DEC}\.ca_text", rf"{_HF_DEC}.encoder_attn_text"),
    _r(rf"{_DEC}\.catext_norm\.{_W}", rf"{_HF_DEC}.encoder_attn_text_layer_norm.\g<w>"),
    *_mha(rf"{_DEC}\.self_attn", rf"{_HF_DEC}.self_attn"),
    _r(rf"{_DEC}\.norm2\.{_W}", rf"{_HF_DEC}.self_attn_layer_norm.\g<w>"),
    _r(rf"{_DEC}\.linear1\.{_W}", rf"{_HF_DEC}.fc1.\g<w>"),
    _r(rf"{_DEC}\.linear2\.{_W}", rf"{_HF_DEC}.fc2.\g<w>"),
    _r(rf"{_DEC}\.norm3\.{_W}", rf"{_HF_DEC}.final_layer_norm.\g<w>"),
    _r(rf"transformer\.decoder\.norm\.{_W}", r"model.decoder.layer_norm.\g<w>"),
    _r(
        rf"transformer\.decoder\.ref_point_head\.layers\.{_B}\.{_W}",
        r"model.decoder.reference_points_head.layers.\g<b>.\g<w>",
    ),
    # box heads: one MLP shared by all decoder layers, registered under both paths (so stored once per
    # layer under each); transformers ties them the same way.
    _r(
        rf"transformer\.decoder\.bbox_embed\.{_L}\.layers\.{_B}\.{_W}",
        r"model.decoder.bbox_embed.\g<l>.layers.\g<b>.\g<w>",
    ),
    _r(rf"bbox_embed\.{_L}\.layers\.{_B}\.{_W}", r"bbox_embed.\g<l>.layers.\g<b>.\g<w>"),
    # --- two-stage query selection
    _r(r"transformer\.level_embed", r"model.level_embed"),
    _r(r"transformer\.tgt_embed\.weight", r"model.query_position_embeddings.weight"),
    _r(rf"transformer\.enc_output\.{_W}", r"model.enc_output.\g<w>"),
    _r(rf"transformer\.enc_output_norm\.{_W}", r"model.enc_output_norm.\g<w>"),
    _r(rf"transformer\.enc_out_bbox_embed\.layers\.{_B}\.{_W}", r"model.encoder_output_bbox_embed.layers.\g<b>.\g<w>"),
)

#: Original keys accepted and dropped. `class_embed`/`enc_out_class_embed` (ContrastiveEmbed) have no tensors.
DROPPED: dict[str, str] = {
    rf"{_SWIN_BLOCK}\.attn\.relative_position_index": "constant buffer; transformers recomputes it",
    r"bert\.embeddings\.position_ids": "constant arange buffer (persistent in old transformers)",
    rf"bert\.pooler\.dense\.{_W}": "BERT pooler: Grounding DINO uses only the token states",
    r"label_enc\.weight": "DINO denoising-training label embedding, unused at inference",
}

#: transformers keys the original checkpoint cannot provide and the model never uses (its own ignore list).
HF_UNUSED_MISSING = re.compile(r".*swin\.layernorm\..*")

_COMPILED = [(re.compile(rule.original), rule) for rule in RULES]
_COMPILED_DROPPED = [re.compile(p) for p in DROPPED]


class CheckpointFormatError(ValueError):
    """The checkpoint is not an original Grounding DINO state dict this table covers."""


def original_to_hf(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename/split an original Grounding DINO state dict into transformers names.

    Args:
        state_dict: original keys (a leading `module.` from DDP training is stripped).
        source: file name for error messages.

    Raises:
        CheckpointFormatError: a key no rule covers (listing up to five), or a fused tensor that does not split
            into equal parts.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for raw_key, tensor in state_dict.items():
        key = raw_key.removeprefix("module.")
        if any(p.fullmatch(key) for p in _COMPILED_DROPPED):
            continue
        matches = [(m, rule) for pattern, rule in _COMPILED if (m := pattern.fullmatch(key))]
        if len(matches) != 1:
            unknown.append(key)
            continue
        match, rule = matches[0]
        targets = [match.expand(t) for t in rule.hf]
        if len(targets) == 1:
            out[targets[0]] = tensor
            continue
        if tensor.shape[0] % len(targets):
            raise CheckpointFormatError(f"{source}: {key} of shape {tuple(tensor.shape)} is not a fused q/k/v tensor")
        for target, part in zip(targets, tensor.chunk(len(targets), dim=0), strict=True):
            out[target] = part.clone()  # own storage: chunks are views of the fused tensor
    if unknown:
        raise CheckpointFormatError(
            f"{source}: {len(unknown)} key(s) are not original Grounding DINO SwinT weights, e.g. {unknown[:5]}"
        )
    return out


def hf_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse renaming (transformers → original keys, q/k/v re-fused); used to write test checkpoints.

    Only keys that some rule produces are converted; unused transformers-only keys are skipped.
    """
    inverse: list[tuple[re.Pattern[str], Rule]] = []
    for rule in RULES:
        # A target template becomes a regex over transformers keys; each `\g<x>` becomes a named group.
        for position, template in enumerate(rule.hf):
            pieces = re.split(r"\\g<(\w+)>", template)
            regex = "".join(
                re.escape(p) if i % 2 == 0 else _group_regex(rule.original, p) for i, p in enumerate(pieces)
            )
            inverse.append((re.compile(regex), Rule(rule.original, (str(position),))))
    pending: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    counts: dict[str, int] = {rule.original: len(rule.hf) for rule in RULES}
    for key, tensor in state_dict.items():
        for pattern, rule in inverse:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            original = _fill(rule.original, match.groupdict())
            pending.setdefault((rule.original, original), {})[int(rule.hf[0])] = tensor
            break
    out: dict[str, torch.Tensor] = {}
    for (rule_original, original), parts in pending.items():
        if len(parts) != counts[rule_original]:
            raise CheckpointFormatError(f"{original}: found {len(parts)} of {counts[rule_original]} fused parts")
        out[original] = parts[0] if len(parts) == 1 else torch.cat([parts[i] for i in sorted(parts)], dim=0)
    return out


def _group_regex(original_regex: str, name: str) -> str:
    """The sub-pattern of group `name` in `original_regex`, as a named group again."""
    m = re.search(rf"\(\?P<{name}>((?:[^()]|\([^()]*\))*)\)", original_regex)
    assert m is not None, f"group {name} not in {original_regex}"
    return f"(?P<{name}>{m.group(1)})"


def _fill(original_regex: str, groups: Mapping[str, str]) -> str:
    """Instantiate an original-key regex with group values (the regexes only escape dots)."""
    text = original_regex
    for name, value in groups.items():
        m = re.search(rf"\(\?P<{name}>(?:[^()]|\([^()]*\))*\)", text)
        assert m is not None, f"group {name} not in {original_regex}"
        text = text[: m.start()] + value + text[m.end() :]
    return text.replace("\\.", ".")


def read_original_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The `model` state dict of an original checkpoint, unpickled with `weights_only=True`.

    Raises:
        CheckpointFormatError: not loadable as plain tensors, or no `model` state dict inside.
    """
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointFormatError(
            f"{path}: cannot be read as a plain-tensor checkpoint (torch.load weights_only=True refused it: "
            f"{str(err).splitlines()[0][:200]}); arbitrary pickles are not executed"
        ) from err
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointFormatError(f"{path}: expected {{'model': state_dict}} of tensors, got {type(obj).__name__}")
    return sd


def infer_config(state_dict: Mapping[str, torch.Tensor], text_config: Any, source: str = "checkpoint") -> Any:
    """A `GroundingDinoConfig` for an original state dict (shapes → sizes; see module docstring).

    Args:
        state_dict: original keys.
        text_config: the BERT config (`BertConfig`) of the text encoder directory.
        source: file name for error messages.

    Raises:
        CheckpointFormatError: a tensor needed to read a size is missing or inconsistent.
    """
    from transformers import GroundingDinoConfig, SwinConfig

    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}

    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointFormatError(f"{source}: missing {key}")
        return sd[key]

    def count(prefix: str) -> int:
        ids = {int(m.group(1)) for k in sd if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
        return max(ids) + 1 if ids else 0

    patch = need("backbone.0.patch_embed.proj.weight")  # [C, 3, p, p]
    n_stages = count("backbone.0.layers")
    depths = [count(f"backbone.0.layers.{i}.blocks") for i in range(n_stages)]
    tables = [need(f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table") for i in range(n_stages)]
    window = (math.isqrt(tables[0].shape[0]) + 1) // 2  # table rows = (2w - 1)^2
    out_stages = [f"stage{i + 1}" for i in range(n_stages) if f"backbone.0.norm{i}.weight" in sd]
    swin: dict[str, Any] = {
        "embed_dim": patch.shape[0],
        "patch_size": patch.shape[-1],
        "depths": depths,
        "num_heads": [t.shape[1] for t in tables],
        "window_size": window,
        "out_features": out_stages,  # a BackboneConfigMixin argument the stubs do not declare
    }
    backbone = SwinConfig(**swin)
    d_model = need("feat_map.weight").shape[0]
    levels = need("transformer.level_embed").shape[0]
    offsets = need("transformer.encoder.layers.0.self_attn.sampling_offsets.weight").shape[0]
    if offsets != OFFICIAL_HEADS * levels * OFFICIAL_POINTS * 2:
        raise CheckpointFormatError(
            f"{source}: sampling_offsets has {offsets} rows, not {OFFICIAL_HEADS} heads × {levels} levels × "
            f"{OFFICIAL_POINTS} points × 2 of the official SwinT-OGC config"
        )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text_config,
        d_model=d_model,
        num_feature_levels=levels,
        encoder_layers=count("transformer.encoder.layers"),
        decoder_layers=count("transformer.decoder.layers"),
        encoder_ffn_dim=need("transformer.encoder.layers.0.linear1.weight").shape[0],
        decoder_ffn_dim=need("transformer.decoder.layers.0.linear1.weight").shape[0],
        encoder_attention_heads=OFFICIAL_HEADS,
        decoder_attention_heads=OFFICIAL_HEADS,
        encoder_n_points=OFFICIAL_POINTS,
        decoder_n_points=OFFICIAL_POINTS,
        num_queries=need("transformer.tgt_embed.weight").shape[0],
        max_text_len=OFFICIAL_MAX_TEXT_LEN,
    )


def load_original_grounding_dino(path: Path, text_encoder_dir: Path) -> Any:
    """`GroundingDinoForObjectDetection` holding the weights of an original `.pth` checkpoint.

    Args:
        path: `groundingdino_swint_ogc.pth`.
        text_encoder_dir: BERT directory with `config.json` (the bundle's `google-bert/bert-base-uncased/`).

    Raises:
        CheckpointFormatError: unreadable file, unknown keys, or any model weight left unset / mis-shaped.
    """
    from transformers import BertConfig, GroundingDinoForObjectDetection

    original = read_original_checkpoint(path)
    config = infer_config(original, BertConfig.from_pretrained(str(text_encoder_dir), local_files_only=True), str(path))
    converted = original_to_hf(original, str(path))
    model = GroundingDinoForObjectDetection(config)
    expected = model.state_dict()
    bad_shapes = [k for k, v in converted.items() if k in expected and expected[k].shape != v.shape]
    if bad_shapes:
        k = bad_shapes[0]
        raise CheckpointFormatError(
            f"{path}: {len(bad_shapes)} mis-shaped tensor(s), e.g. {k}: {tuple(converted[k].shape)} "
            f"vs {tuple(expected[k].shape)} in the inferred config"
        )
    result = model.load_state_dict(converted, strict=False)
    missing = [k for k in result.missing_keys if not HF_UNUSED_MISSING.fullmatch(k)]
    if missing or result.unexpected_keys:
        raise CheckpointFormatError(
            f"{path}: does not fit GroundingDinoForObjectDetection: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model
