"""Aesthetic Predictor V2.5 (discus0434): SigLIP so400m vision tower + a 5-layer linear head (§7).

Official (ViStoryBench `bench/quality/aesthetic_evaluator.py` and the vendored
`aesthetic-predictor-v2-5/model.py`, 514cc31): `SiglipVisionModel` from `<bundle>/google/siglip-so400m-
patch14-384` → `pooler_output` (attention-pool head) → L2-normalise → `scoring_head` =
Linear(1152,1024) Dropout Linear(1024,128) Dropout Linear(128,64) Dropout Linear(64,16) Dropout Linear(16,1),
no activations; head weights `aesthetic_predictor/aesthetic_predictor_v2_5.pth` with keys
`scoring_head.{0,2,4,6,8}.{weight,bias}`.

THE QUIRK (kept on purpose, all eras): the input is torchvision `Resize((378, 378))` (bilinear, squash) +
`ToTensor()` — pixels in [0, 1], NO SigLIP normalisation (the upstream predictor uses mean = std = 0.5 at
384 px). 378 / 14 = 27 patches per side, the same grid as 384, so the position table fits unchanged.
The official run is float16 end to end; we default to float16 on CUDA and float32 on CPU (CPU half matmuls
are slow and not what anyone compares against); pass `dtype` to override.

Head sizes are read from the head checkpoint, so a tiny SigLIP plus a tiny head with the same key names
loads for tests.

Shapes: N images, H hidden size (1152 for so400m).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from bench.backbones.weights import load_pretrained_checked

AESTHETIC_INPUT_SIZE = 378
HEAD_LINEAR_INDICES = (0, 2, 4, 6, 8)
HEAD_DROPOUTS = (0.5, 0.5, 0.5, 0.2)


def build_head(sd: Mapping[str, torch.Tensor]) -> nn.Sequential:
    """Build the scoring head sized by its state dict (Linear/Dropout alternating) and load it strictly."""
    expected = {f"scoring_head.{i}.{p}" for i in HEAD_LINEAR_INDICES for p in ("weight", "bias")}
    if set(sd) != expected:
        raise ValueError(
            f"not an aesthetic predictor V2.5 head: missing {sorted(expected - set(sd))[:4]}, "
            f"unexpected {sorted(set(sd) - expected)[:4]}"
        )
    layers: list[nn.Module] = []
    for n, i in enumerate(HEAD_LINEAR_INDICES):
        out_dim, in_dim = sd[f"scoring_head.{i}.weight"].shape
        layers.append(nn.Linear(in_dim, out_dim))
        if n < len(HEAD_DROPOUTS):
            layers.append(nn.Dropout(HEAD_DROPOUTS[n]))
    head = nn.Sequential(*layers)
    try:
        head.load_state_dict({k.removeprefix("scoring_head."): v for k, v in sd.items()}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"not an aesthetic predictor V2.5 head: {err}") from err
    return head


class AestheticPredictorV25:
    """`AestheticScorer`: SigLIP pooled features → L2-normalise → linear head → score."""

    def __init__(
        self,
        siglip_dir: Path,
        head_path: Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        batch_size: int = 16,
    ) -> None:
        """Load the tower from the local HF directory and the head from its .pth."""
        from transformers import SiglipVisionModel

        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        self.tower = load_pretrained_checked(SiglipVisionModel, siglip_dir)
        head_sd = torch.load(head_path, map_location="cpu", weights_only=True)
        self.head = build_head(head_sd)
        hidden = int(self.tower.config.hidden_size)
        if self.head[0].in_features != hidden:
            raise ValueError(
                f"{head_path}: head expects {self.head[0].in_features}-d features, {siglip_dir} gives {hidden}-d"
            )
        self.tower = self.tower.to(device=device, dtype=self.dtype).eval()
        self.head = self.head.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.batch_size = batch_size

    @staticmethod
    def preprocess(image: Image.Image) -> torch.Tensor:
        """PIL → [3, 378, 378] in [0, 1]: squash-resize (bilinear, PIL) and ToTensor, no normalisation."""
        resized = TF.resize(image.convert("RGB"), [AESTHETIC_INPUT_SIZE, AESTHETIC_INPUT_SIZE])
        return TF.to_tensor(resized)

    @torch.inference_mode()
    def score(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Score images → [N] float32."""
        out = [torch.zeros(0)]
        for start in range(0, len(images), self.batch_size):
            pixels = torch.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
            pooled = self.tower(pixel_values=pixels.to(self.device, self.dtype)).pooler_output  # [n, H]
            pooled = pooled / pooled.norm(dim=-1, keepdim=True)
            out.append(self.head(pooled)[:, 0].float().cpu())  # [n]
        return torch.cat(out)
