"""CSD style encoder (Somepalli et al. 2024, "Measuring Style Similarity in Diffusion Models"), ViT-L/14.

Architecture (ViStoryBench `vistorybench/bench/style/csd/csd_model.py` at 514cc31, §3): the OpenAI-CLIP
ViT-L/14 visual tower with its projection removed; embedding = L2-normalise(ln_post(CLS) @ last_layer_style).
The tower is open_clip's `VisionTransformer` with QuickGELU, whose parameter names equal OpenAI CLIP's, so
the checkpoint's `backbone.*` keys load without renaming.

Checkpoint `csd/csd_vit-large.pth`: a flat state dict with `backbone.*` (no `backbone.proj`),
`last_layer_style` [width, 768] and `last_layer_content` [width, 768]. The CSD authors' own release nests it
under `model_state_dict` with a DDP `module.` prefix; both are accepted. Deviation from the official loader:
it loads with strict=False (a wrong file silently loads nothing); we require zero missing and zero
unexpected keys.

Sizes are read from the checkpoint (width from `conv1`, depth from the block count, patch and grid from
`conv1` and `positional_embedding`, heads = width // 64 as in OpenAI's `build_model`), so a tiny checkpoint
with the same key names builds a tiny model for tests.

Preprocessing (§3): float RGB in [0, 1] → squash-resize to 224×224 on the tensor with antialias (Era A:
bilinear; Era B/C: bicubic) → CLIP mean/std. Run in float32.

Shapes: N images, W width, E = 768 style dim, G grid (16 at 224/14).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.model import QuickGELU
from open_clip.transformer import VisionTransformer
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.backbones.base import Era

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CSDConfig:
    """CSD tower sizes. `vit_large` is the official one; `from_state_dict` infers any size from a checkpoint."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    style_dim: int = 768

    @staticmethod
    def from_state_dict(sd: Mapping[str, torch.Tensor]) -> CSDConfig:
        """Infer the sizes from `backbone.*` / `last_layer_style` shapes."""
        for key in ("backbone.conv1.weight", "backbone.positional_embedding", "last_layer_style"):
            if key not in sd:
                raise KeyError(f"CSD checkpoint has no {key!r} (is this csd_vit-large.pth?)")
        width, _, patch, _ = sd["backbone.conv1.weight"].shape
        grid = round((sd["backbone.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = len({k.split(".")[3] for k in sd if k.startswith("backbone.transformer.resblocks.")})
        return CSDConfig(
            image_size=grid * patch,
            patch_size=patch,
            width=width,
            layers=layers,
            heads=max(1, width // 64),
            style_dim=sd["last_layer_style"].shape[1],
        )


CSD_SIZES: dict[str, CSDConfig] = {
    "vit_large": CSDConfig(),
    "tiny": CSDConfig(width=64, layers=2, heads=1, style_dim=16),
}


class CSDModel(nn.Module):
    """CLIP visual tower + style/content projections; `forward` returns unit style embeddings."""

    def __init__(self, config: CSDConfig) -> None:
        """Build an untrained model of the given sizes."""
        super().__init__()
        self.config = config
        self.backbone = VisionTransformer(
            image_size=config.image_size,
            patch_size=config.patch_size,
            width=config.width,
            layers=config.layers,
            heads=config.heads,
            mlp_ratio=4.0,
            output_dim=config.style_dim,
            act_layer=QuickGELU,  # OpenAI CLIP ViT-L/14 uses QuickGELU
        )
        self.backbone.proj = None  # CSD drops the CLIP projection; the pooled output is ln_post(CLS)
        self.last_layer_style = nn.Parameter(torch.zeros(config.width, config.style_dim))
        self.last_layer_content = nn.Parameter(torch.zeros(config.width, config.style_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] → unit style embeddings [N, E]."""
        feature = self.backbone(pixels)  # [N, W] = ln_post(CLS)
        return nn.functional.normalize(feature @ self.last_layer_style, dim=-1)  # [N, E]


def read_csd_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a CSD checkpoint in either layout (flat, or the CSD release's `model_state_dict` + `module.`)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if k != "backbone.proj"}


def load_csd(path: Path) -> CSDModel:
    """Build a `CSDModel` sized by the checkpoint at `path` and load it strictly (fp32, eval mode)."""
    sd = read_csd_state_dict(path)
    model = CSDModel(CSDConfig.from_state_dict(sd))
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: not a CSD ViT checkpoint: missing keys {result.missing_keys[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )
    return model.float().eval()


class CSDStyleEncoder:
    """`StyleEncoder` over a loaded `CSDModel` with the era's preprocessing (§3)."""

    def __init__(self, model: CSDModel, era: Era = "A", device: str = "cpu", batch_size: int = 16) -> None:
        """Args: model, era (A: bilinear resize; B/C: bicubic), device, batch_size."""
        self.model = model.to(device)
        self.era = era
        self.device = device
        self.batch_size = batch_size
        self._mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL → [3, S, S] normalised float32, resized on the float tensor as the official code does."""
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)  # [3, H, W]
        size = [self.model.config.image_size] * 2
        mode = InterpolationMode.BILINEAR if self.era == "A" else InterpolationMode.BICUBIC
        x = TF.resize(x[None], size, interpolation=mode, antialias=True)  # [1, 3, S, S]
        return ((x - self._mean) / self._std)[0]

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed images → [N, E] float32 unit rows."""
        out = [torch.zeros(0, self.model.config.style_dim)]
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
            out.append(self.model(batch.to(self.device)).float().cpu())
        return torch.cat(out)
