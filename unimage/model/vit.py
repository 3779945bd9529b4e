"""NaViT SigLIP vision encoder, key-compatible with BAGEL's ``vit_model``.

BAGEL (ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/siglip_navit.py``) feeds images to a SigLIP-so400m/14 encoder at
their native aspect ratio ("NaViT"): each image becomes (H/p)·(W/p) patch tokens, the images of one call are packed into
one sequence, and attention is bidirectional inside an image and blocked between images. This module reproduces that
encoder with transformers' own ``SiglipEncoderLayer`` blocks, so the parameter names below ``vision_model.`` are exactly
the checkpoint's:

- ``vision_model.embeddings.patch_embedding``: a ``Linear(p·p·C → D)``, not a ``Conv2d``. BAGEL converts its conv to a
  linear before saving; the input patch vector is flattened in (row-in-patch, col-in-patch, channel) order.
- ``vision_model.embeddings.position_embedding``: learned ``Embedding(S², D)`` with S = image_size / patch_size, indexed
  by ``row·S + col`` ("extrapolate" ids: a small image uses the top-left corner of the table).
- ``vision_model.encoder.layers.{j}``: pre-LN SigLIP layers (``self_attn.{q,k,v,out}_proj``, ``layer_norm1/2``,
  ``mlp.fc1/fc2``).
- ``vision_model.post_layernorm``.

Layer count: the released ``vit_config.json`` says 27 layers but the checkpoint holds 26, because BAGEL uses the
penultimate layer's features (``vit_select_layer = -2``) and drops the last layer before saving.
``ViTConfig.num_hidden_layers`` is the number we INSTANTIATE; the json reader subtracts ``JSON_EXTRA_LAYERS`` and the
writer adds it back, so a round trip through ``vit_config.json`` is lossless and the public tooling reads our files.

Deviations from the reference: attention runs in the activation dtype (BAGEL casts q/k/v to bf16 for flash-attn);
instead of flash-attn's ``cu_seqlens`` the packed images are regrouped by length and each group runs as a batch
through SDPA without a mask (same maths, no N×N mask, flash SDPA kernels on GPU).

Shape letters: N packed patch tokens (all images), D hidden size, P = p·p·C patch vector length, n images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

import fsio

__all__ = [
    "JSON_EXTRA_LAYERS",
    "VIT_SIZES",
    "SiglipNavit",
    "ViTConfig",
    "conv_patch_weight_to_linear",
    "linear_patch_weight_to_conv",
]

# vit_config.json counts one layer more than the checkpoint holds (BAGEL selects the penultimate layer and drops the last).
JSON_EXTRA_LAYERS = 1


@dataclass(frozen=True)
class ViTConfig:
    """SigLIP NaViT encoder shape, as instantiated (``num_hidden_layers`` = layers that exist in the checkpoint).

    Attributes:
        hidden_size: Width D of the encoder.
        intermediate_size: Width of the MLP.
        num_attention_heads: Heads; must divide ``hidden_size``.
        num_hidden_layers: Layers instantiated (26 for BAGEL-7B-MoT; its ``vit_config.json`` says 27).
        patch_size: Square patch side p in pixels.
        image_size: Side of the largest square image; S = image_size / patch_size positions per side.
        layer_norm_eps: LayerNorm epsilon.
        hidden_act: Activation of the MLP (a transformers ``ACT2FN`` name).
        num_channels: Input channels C.
    """

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_attention_heads: int = 16
    num_hidden_layers: int = 26
    patch_size: int = 14
    image_size: int = 980
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    num_channels: int = 3

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "patch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ViTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ViTConfig.hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"ViTConfig.image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )

    @property
    def num_patches_per_side(self) -> int:
        """S: learned positions per side (70 for BAGEL)."""
        return self.image_size // self.patch_size

    @property
    def patch_dim(self) -> int:
        """P = p·p·C, the length of one flattened patch (588 for BAGEL)."""
        return self.patch_size * self.patch_size * self.num_channels

    def to_json_dict(self) -> dict[str, Any]:
        """The ``vit_config.json`` content: SigLIP fields with the json layer count (instantiated + 1)."""
        out: dict[str, Any] = asdict(self)
        out["num_hidden_layers"] = self.num_hidden_layers + JSON_EXTRA_LAYERS
        out["model_type"] = "siglip_vision_model"
        out["attention_dropout"] = 0.0
        out["rope"] = False
        return out

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], source: str = "vit_config.json") -> ViTConfig:
        """Read a SigLIP ``vit_config.json`` dict; subtracts ``JSON_EXTRA_LAYERS`` from ``num_hidden_layers``.

        Args:
            data: Parsed json.
            source: Name used in error messages.

        Raises:
            ValueError: A required field is missing, or the config asks for 2-D RoPE (BAGEL's release never uses it).
        """
        if data.get("rope", False):
            raise ValueError(f"{source}: rope=true is not supported (BAGEL-7B-MoT uses learned position embeddings)")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "num_hidden_layers" not in kwargs:
            raise ValueError(f"{source}: missing field 'num_hidden_layers'")
        kwargs["num_hidden_layers"] = int(kwargs["num_hidden_layers"]) - JSON_EXTRA_LAYERS
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_json(cls, path: str | Path) -> ViTConfig:
        """Load ``vit_config.json`` (see ``from_json_dict``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read ViT config: {err}") from err
        return cls.from_json_dict(data, source=str(path))

    def to_json(self, path: str | Path) -> None:
        """Write ``vit_config.json`` atomically (temp file + rename)."""
        fsio.atomic_write_text(path, json.dumps(self.to_json_dict(), indent=2, sort_keys=True) + "\n")


# Named sizes. `tiny` has 8 positions per side (112 px at p=14) so tests run in milliseconds.
VIT_SIZES: dict[str, ViTConfig] = {
    "tiny": ViTConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, patch_size=14, image_size=112
    ),
    "small": ViTConfig(
        hidden_size=192,
        intermediate_size=768,
        num_attention_heads=3,
        num_hidden_layers=4,
        patch_size=14,
        image_size=448,
    ),
    "bagel-7b-mot": ViTConfig(),
}


def conv_patch_weight_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d patch weight [D, C, p, p] → Linear weight [D, p·p·C] in (row, col, channel) order (BAGEL's layout)."""
    d = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(d, -1)  # [D, p, p, C] -> [D, P]


def linear_patch_weight_to_conv(weight: torch.Tensor, patch_size: int, num_channels: int = 3) -> torch.Tensor:
    """Inverse of ``conv_patch_weight_to_linear``: [D, p·p·C] → [D, C, p, p]."""
    d = weight.shape[0]
    return weight.reshape(d, patch_size, patch_size, num_channels).permute(0, 3, 1, 2)


class _VisionEmbeddings(nn.Module):
    """Linear patch embedding + learned position embedding (ids row·S + col)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(config.patch_dim, config.hidden_size)
        self.position_embedding = nn.Embedding(config.num_patches_per_side**2, config.hidden_size)

    def forward(self, packed_pixel_values: torch.Tensor, packed_position_ids: torch.Tensor) -> torch.Tensor:
        # [N, P] -> [N, D]
        return self.patch_embedding(packed_pixel_values) + self.position_embedding(packed_position_ids)


class _VisionEncoder(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

        hf_config = _hf_vision_config(config)
        self.layers = nn.ModuleList([SiglipEncoderLayer(hf_config) for _ in range(config.num_hidden_layers)])


class _VisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.embeddings = _VisionEmbeddings(config)
        self.encoder = _VisionEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


def _hf_vision_config(config: ViTConfig) -> Any:
    """A transformers ``SiglipVisionConfig`` for the layer blocks, with SDPA attention."""
    from transformers import SiglipVisionConfig

    hf = SiglipVisionConfig(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_channels=config.num_channels,
        image_size=config.image_size,
        patch_size=config.patch_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        attention_dropout=0.0,
    )
    hf._attn_implementation = "sdpa"
    return hf


class SiglipNavit(nn.Module):
    """NaViT SigLIP encoder over a packed sequence of images (BAGEL's ``vit_model``).

    Holds one attribute, ``vision_model``, so ``state_dict()`` keys equal the checkpoint keys after ``vit_model.``.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_model = _VisionTransformer(config)

    def forward(
        self,
        packed_pixel_values: torch.Tensor,
        packed_position_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
    ) -> torch.Tensor:
        """Encode packed patches.

        Args:
            packed_pixel_values: [N, P] patches of all images, each image's patches row-major, each patch flattened in
                (row, col, channel) order (see ``unimage.model.image_transforms.patchify``).
            packed_position_ids: [N] learned-position ids row·S + col.
            cu_seqlens: [n+1] cumulative patch counts (0, N₁, N₁+N₂, ...); attention stays within each image.

        Returns:
            [N, D] features after the last instantiated layer and ``post_layernorm``.
        """
        n = packed_pixel_values.shape[0]
        if packed_position_ids.shape != (n,):
            raise ValueError(f"packed_position_ids has shape {tuple(packed_position_ids.shape)}, expected ({n},)")
        if int(cu_seqlens[-1]) != n or int(cu_seqlens[0]) != 0:
            raise ValueError(f"cu_seqlens must run from 0 to {n}, got {cu_seqlens.tolist()}")
        vm = self.vision_model
        h = vm.embeddings(packed_pixel_values, packed_position_ids)  # [N, D]
        # Images of equal length run as one batch without a mask; attention never crosses images.
        bounds = cu_seqlens.tolist()
        groups: dict[int, list[int]] = {}
        for i in range(len(bounds) - 1):
            groups.setdefault(bounds[i + 1] - bounds[i], []).append(i)
        out = torch.zeros_like(h)
        for length, images in groups.items():
            idx = torch.cat([torch.arange(bounds[i], bounds[i + 1], device=h.device) for i in images])  # [B·n]
            x = h[idx].view(len(images), length, -1)  # [B, n, D]
            for layer in vm.encoder.layers:
                y = layer(x, None)
                # transformers 4.x returns a 1-tuple (hidden_states,), 5.x the tensor itself.
                x = y[0] if isinstance(y, tuple) else y
            out = out.index_copy(0, idx, x.reshape(len(images) * length, -1))
        return vm.post_layernorm(out)  # [N, D]
