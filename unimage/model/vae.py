"""The FLUX autoencoder of BAGEL through diffusers' ``AutoencoderKL``, with an explicit key table from ``ae.safetensors``.

BAGEL (ByteDance-Seed/Bagel @ 056b5fd, ``modeling/autoencoder.py``) uses the FLUX.1 VAE: ch 128, ch_mult (1, 2, 4, 4),
2 res blocks per level, 16 latent channels, 8× downsampling, one single-head attention block in each mid block, GroupNorm
(32 groups, eps 1e-6) and swish everywhere, no quant convs. diffusers' ``AutoencoderKL`` with ``use_quant_conv=False``
computes the same function, so we load the original weights into it through ``flux_to_diffusers_key_table``:

======================================================  =====================================================
FLUX ``ae.safetensors``                                  diffusers ``AutoencoderKL``
======================================================  =====================================================
``encoder.down.{i}.block.{j}.{norm1,conv1,norm2,conv2}``  ``encoder.down_blocks.{i}.resnets.{j}.<same>``
``….block.{j}.nin_shortcut``                              ``….resnets.{j}.conv_shortcut``
``encoder.down.{i}.downsample.conv``                      ``encoder.down_blocks.{i}.downsamplers.0.conv``
``{enc,dec}oder.mid.block_{1,2}``                         ``{enc,dec}oder.mid_block.resnets.{0,1}``
``{enc,dec}oder.mid.attn_1.norm``                         ``….mid_block.attentions.0.group_norm``
``….attn_1.{q,k,v,proj_out}`` (1×1 conv [C,C,1,1])        ``….attentions.0.{to_q,to_k,to_v,to_out.0}`` (linear [C,C])
``decoder.up.{i}.block.{j}`` / ``.upsample.conv``          ``decoder.up_blocks.{n-1-i}.resnets.{j}`` / ``.upsamplers.0.conv``
``{enc,dec}oder.norm_out``                                ``{enc,dec}oder.conv_norm_out``
``{enc,dec}oder.conv_in`` / ``conv_out``                   same
======================================================  =====================================================

diffusers numbers its decoder up-blocks in execution order (lowest resolution first); FLUX numbers them by resolution
level, hence ``n-1-i``.

Latent convention (BAGEL): ``encode`` returns z = scale·(posterior sample − shift) with the posterior sampled
(mean + exp(logvar/2)·ε, ε from the caller's ``torch.Generator``); ``decode`` runs the decoder on z/scale + shift.
Pixels are in [-1, 1]. Deviation: diffusers clamps logvar to [-30, 20] before sampling; FLUX does not (no effect on
realistic encoder outputs).

Shape letters: B batch, H×W pixels, Z latent channels (16), h×w = H/8 × W/8 latent grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

import fsio
from unimage.model.synth_ae import SynthAE

__all__ = [
    "VAE_SIZES",
    "Autoencoder",
    "FluxVAE",
    "VAEConfig",
    "convert_diffusers_to_flux",
    "convert_flux_to_diffusers",
    "flux_to_diffusers_key_table",
    "images_to_uint8",
]


@dataclass(frozen=True)
class VAEConfig:
    """FLUX autoencoder shape and latent normalisation (BAGEL's ``AutoEncoderParams``).

    Attributes:
        z_channels: Latent channels Z.
        downsample: Pixel → latent downsampling factor; must equal 2^(len(ch_mult) − 1).
        scale_factor: z = scale·(sample − shift).
        shift_factor: See ``scale_factor``.
        ch: Base channel count.
        ch_mult: Channel multiplier per resolution level.
        num_res_blocks: Res blocks per encoder level (the decoder has one more).
        in_channels: Image channels.
        out_ch: Decoded image channels.
        norm_num_groups: GroupNorm groups (FLUX hard-codes 32; every channel count must be a multiple).
    """

    z_channels: int = 16
    downsample: int = 8
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        if not self.ch_mult:
            raise ValueError("VAEConfig.ch_mult must not be empty")
        if self.downsample != 2 ** (len(self.ch_mult) - 1):
            raise ValueError(
                f"VAEConfig.downsample={self.downsample} does not match ch_mult={self.ch_mult} "
                f"(expected {2 ** (len(self.ch_mult) - 1)})"
            )
        for m in self.ch_mult:
            if (self.ch * m) % self.norm_num_groups:
                raise ValueError(
                    f"VAEConfig: channel count {self.ch * m} (ch={self.ch} × {m}) is not a multiple of "
                    f"norm_num_groups={self.norm_num_groups}"
                )
        if self.num_res_blocks <= 0 or self.z_channels <= 0:
            raise ValueError(
                f"VAEConfig: num_res_blocks={self.num_res_blocks}, z_channels={self.z_channels} must be > 0"
            )

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.ch * m for m in self.ch_mult)

    def to_json_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        return out

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], source: str = "vae config") -> VAEConfig:
        """Build from a dict (unknown keys such as FLUX's ``resolution`` are ignored).

        Raises:
            ValueError: A value is invalid; the message names ``source``.
        """
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    def to_json(self, path: str | Path) -> None:
        fsio.atomic_write_text(path, json.dumps(self.to_json_dict(), indent=2) + "\n")


VAE_SIZES: dict[str, VAEConfig] = {
    # Same class and 8× downsampling as FLUX, 32 channels at every level, one res block: ~0.6 M numbers.
    "tiny": VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1),
    "small": VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1),
    "bagel-7b-mot": VAEConfig(),
}


# --------------------------------------------------------------------------------------------------- key conversion

_RESNET_PARTS = ("norm1", "conv1", "norm2", "conv2")
_ATTN_MAP = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_LINEAR = {"q", "k", "v", "proj_out"}  # FLUX stores these as 1×1 convs, diffusers as linears


def _resnet_rows(src: str, dst: str, has_shortcut: bool) -> list[tuple[str, str]]:
    rows = [(f"{src}.{part}", f"{dst}.{part}") for part in _RESNET_PARTS]
    if has_shortcut:
        rows.append((f"{src}.nin_shortcut", f"{dst}.conv_shortcut"))
    return rows


def _module_table(config: VAEConfig) -> list[tuple[str, str]]:
    """(FLUX module prefix, diffusers module prefix) for every module that owns a weight and a bias."""
    n = len(config.ch_mult)
    chans = config.block_out_channels
    rows: list[tuple[str, str]] = []
    for coder in ("encoder", "decoder"):
        rows.append((f"{coder}.conv_in", f"{coder}.conv_in"))
        rows += _resnet_rows(f"{coder}.mid.block_1", f"{coder}.mid_block.resnets.0", False)
        rows += [(f"{coder}.mid.attn_1.{a}", f"{coder}.mid_block.attentions.0.{b}") for a, b in _ATTN_MAP.items()]
        rows += _resnet_rows(f"{coder}.mid.block_2", f"{coder}.mid_block.resnets.1", False)
        rows.append((f"{coder}.norm_out", f"{coder}.conv_norm_out"))
        rows.append((f"{coder}.conv_out", f"{coder}.conv_out"))
    # Encoder levels: block 0 of level i maps chans[i-1] (or ch) -> chans[i].
    for i in range(n):
        c_in = config.ch if i == 0 else chans[i - 1]
        for j in range(config.num_res_blocks):
            shortcut = j == 0 and c_in != chans[i]
            rows += _resnet_rows(f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}", shortcut)
        if i != n - 1:
            rows.append((f"encoder.down.{i}.downsample.conv", f"encoder.down_blocks.{i}.downsamplers.0.conv"))
    # Decoder levels: FLUX level i runs after level i+1; diffusers numbers them in execution order.
    for i in range(n):
        c_in = chans[-1] if i == n - 1 else chans[i + 1]
        k = n - 1 - i
        for j in range(config.num_res_blocks + 1):
            shortcut = j == 0 and c_in != chans[i]
            rows += _resnet_rows(f"decoder.up.{i}.block.{j}", f"decoder.up_blocks.{k}.resnets.{j}", shortcut)
        if i != 0:
            rows.append((f"decoder.up.{i}.upsample.conv", f"decoder.up_blocks.{k}.upsamplers.0.conv"))
    return rows


def flux_to_diffusers_key_table(config: VAEConfig) -> dict[str, str]:
    """Every FLUX ``ae.safetensors`` key for ``config`` → its diffusers ``AutoencoderKL`` key (244 rows for FLUX.1)."""
    return {f"{src}.{suffix}": f"{dst}.{suffix}" for src, dst in _module_table(config) for suffix in ("weight", "bias")}


def _is_attn_linear(flux_key: str) -> bool:
    parts = flux_key.split(".")
    return len(parts) == 5 and parts[1:3] == ["mid", "attn_1"] and parts[3] in _ATTN_LINEAR and parts[4] == "weight"


def _check_key_sets(got: set[str], expected: set[str], what: str) -> None:
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise ValueError(
            f"{what}: {len(missing)} missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )


def convert_flux_to_diffusers(
    state_dict: dict[str, torch.Tensor], config: VAEConfig, source: str = "ae.safetensors"
) -> dict[str, torch.Tensor]:
    """Rename FLUX keys to diffusers keys; 1×1 attention convs become linears. The key set must match exactly.

    Raises:
        ValueError: Missing or unexpected keys (listed), naming ``source``.
    """
    table = flux_to_diffusers_key_table(config)
    _check_key_sets(set(state_dict), set(table), source)
    out: dict[str, torch.Tensor] = {}
    for src, dst in table.items():
        t = state_dict[src]
        if _is_attn_linear(src):
            if t.ndim != 4 or t.shape[2:] != (1, 1):
                raise ValueError(f"{source}: {src} has shape {tuple(t.shape)}, expected [C, C, 1, 1]")
            t = t[:, :, 0, 0]  # [C, C, 1, 1] -> [C, C] (a view: no copy)
        out[dst] = t
    return out


def convert_diffusers_to_flux(state_dict: dict[str, torch.Tensor], config: VAEConfig) -> dict[str, torch.Tensor]:
    """Inverse of ``convert_flux_to_diffusers`` (diffusers ``AutoencoderKL`` keys → ``ae.safetensors`` keys)."""
    table = flux_to_diffusers_key_table(config)
    _check_key_sets(set(state_dict), set(table.values()), "AutoencoderKL state dict")
    out: dict[str, torch.Tensor] = {}
    for src, dst in table.items():
        t = state_dict[dst]
        out[src] = t[:, :, None, None] if _is_attn_linear(src) else t
    return out


# ------------------------------------------------------------------------------------------------------------ model


def _autoencoder_kl(config: VAEConfig) -> Any:
    from diffusers import AutoencoderKL

    n = len(config.ch_mult)
    return AutoencoderKL(
        in_channels=config.in_channels,
        out_channels=config.out_ch,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.num_res_blocks,
        act_fn="silu",
        latent_channels=config.z_channels,
        norm_num_groups=config.norm_num_groups,
        scaling_factor=config.scale_factor,
        shift_factor=config.shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=True,
    )


class FluxVAE(nn.Module):
    """BAGEL's FLUX autoencoder: diffusers ``AutoencoderKL`` in ``self.ae`` plus BAGEL's latent scale/shift.

    Build under ``torch.device("meta")`` and call ``load_flux_state_dict(..., assign=True)`` to load a checkpoint
    without allocating random weights first.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.ae: Any = _autoencoder_kl(config)  # diffusers AutoencoderKL

    # ---------------------------------------------------------------- weights

    def load_flux_state_dict(
        self, state_dict: dict[str, torch.Tensor], assign: bool = False, source: str = "ae.safetensors"
    ) -> None:
        """Load weights stored with the original FLUX key names (strict; shapes checked).

        Raises:
            ValueError: Key sets differ or a tensor has the wrong shape; the message names ``source`` and the key.
        """
        converted = convert_flux_to_diffusers(state_dict, self.config, source)
        own = self.ae.state_dict()
        table = {v: k for k, v in flux_to_diffusers_key_table(self.config).items()}
        for key, t in converted.items():
            if tuple(own[key].shape) != tuple(t.shape):
                raise ValueError(
                    f"{source}: {table[key]} has shape {tuple(t.shape)}, this VAEConfig expects {tuple(own[key].shape)}"
                )
        result = self.ae.load_state_dict(converted, strict=True, assign=assign)
        if result.missing_keys or result.unexpected_keys:  # strict=True raises first; kept as an invariant
            raise ValueError(f"{source}: missing {result.missing_keys}, unexpected {result.unexpected_keys}")

    def flux_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the original FLUX key names (what ``ae.safetensors`` holds)."""
        return convert_diffusers_to_flux(dict(self.ae.state_dict()), self.config)

    @classmethod
    def from_safetensors(
        cls, path: str | Path, config: VAEConfig | None = None, device: str | torch.device = "cpu"
    ) -> FluxVAE:
        """Load ``ae.safetensors`` (FLUX keys) without a second copy: build on meta, then assign the loaded tensors."""
        from safetensors.torch import load_file

        config = config or VAEConfig()
        with torch.device("meta"):
            vae = cls(config)
        state = load_file(str(path), device=str(device))
        vae.load_flux_state_dict(state, assign=True, source=str(path))
        return vae.eval()

    # ---------------------------------------------------------------- latent maths

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> torch.Tensor:
        """[B, 3, H, W] pixels in [-1, 1] → [B, Z, H/8, W/8] normalised latents scale·(z − shift).

        Args:
            images: Pixels in [-1, 1]; H and W multiples of ``downsample``.
            generator: Seeds the posterior sample (BAGEL samples conditioning latents; seed for reproducibility).
            sample: Posterior sample (BAGEL) if True, posterior mean otherwise.
        """
        d = self.config.downsample
        if images.ndim != 4 or images.shape[-1] % d or images.shape[-2] % d:
            raise ValueError(f"images must be [B, C, H, W] with H, W multiples of {d}, got {tuple(images.shape)}")
        posterior = self.ae.encode(images).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mean  # [B, Z, h, w]
        return self.config.scale_factor * (z - self.config.shift_factor)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, Z, h, w] normalised latents → [B, 3, 8h, 8w] pixels in (about) [-1, 1], unclamped."""
        z = latents / self.config.scale_factor + self.config.shift_factor
        return self.ae.decode(z).sample


# What a checkpoint's ``vae`` can be: BAGEL's FLUX VAE, or the patch-PCA synth autoencoder (``ModelConfig.ae``). Both
# take ``encode(images, generator=..., sample=...)`` and ``decode(latents)`` with the same pixel and latent conventions.
Autoencoder = FluxVAE | SynthAE


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] → [B, H, W, 3] uint8, as BAGEL: ((x·0.5 + 0.5) clamped to [0, 1]) · 255, truncated."""
    x = (images.float() * 0.5 + 0.5).clamp(0, 1) * 255
    return x.permute(0, 2, 3, 1).to(torch.uint8)
