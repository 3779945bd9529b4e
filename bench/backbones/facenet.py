"""FaceNet InceptionResnetV1 (Era B/C CIDS face ensemble, §4.1), our own module with facenet-pytorch's key names.

Architecture (timesler/facenet-pytorch `InceptionResnetV1`, vendored by ViStoryBench as
`bench/content/inception_resnet_v1.py`): a stem of "basic convs" (conv without bias → BN(eps 1e-3) → ReLU):
`conv2d_1a` 3→32 s2, `conv2d_2a` 32→32, `conv2d_2b` 32→64 p1, `maxpool_3a` 3/2, `conv2d_3b` 64→80 1×1,
`conv2d_4a` 80→192, `conv2d_4b` 192→256 s2; `repeat_1` = 5 Block35 (scale 0.17), `mixed_6a` (→896),
`repeat_2` = 10 Block17 (scale 0.10), `mixed_7a` (→1792), `repeat_3` = 5 Block8 (scale 0.20), `block8`
(scale 1, no ReLU), global average pool, dropout, `last_linear` 1792→512 (no bias), `last_bn` (eps 1e-3),
L2 normalisation. The 'vggface2' state dict (`20180402-114759-vggface2.pt`) also holds the classifier
`logits` (512→8631), kept here (unused) so the file loads strictly.

`FaceNetConfig` scales every width by `1/width_div` and sets the repeat counts, so tests build tiny models whose
state dicts have the same keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FaceNetConfig:
    """Shape of an InceptionResnetV1.

    Attributes:
        repeats: Block35, Block17 and Block8 repeats (official: 5, 10, 5).
        width_div: every channel count of the official model divided by this (1 = official).
        num_classes: rows of the `logits` classifier in the checkpoint (vggface2: 8631).
    """

    repeats: tuple[int, int, int] = (5, 10, 5)
    width_div: int = 1
    num_classes: int = 8631

    def c(self, channels: int) -> int:
        """An official channel count scaled by `width_div`."""
        return channels // self.width_div


FACENET_SIZES: dict[str, FaceNetConfig] = {
    "vggface2": FaceNetConfig(),
    "tiny": FaceNetConfig(repeats=(1, 2, 1), width_div=8, num_classes=10),
}


class BasicConv2d(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3, the TensorFlow value) → ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] → [B, out, H', W']."""
        return self.relu(self.bn(self.conv(x)))


class Block35(nn.Module):
    """35×35-grid residual block (three branches, 1×1 up-projection, scaled residual, ReLU)."""

    def __init__(self, cfg: FaceNetConfig, scale: float) -> None:
        super().__init__()
        c, b = cfg.c(256), cfg.c(32)
        self.scale = scale
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, b, 1), BasicConv2d(b, b, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(c, b, 1), BasicConv2d(b, b, 3, padding=1), BasicConv2d(b, b, 3, padding=1)
        )
        self.conv2d = nn.Conv2d(3 * b, c, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 256, H, W] → same shape."""
        out = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1)  # [B, 96, H, W]
        return self.relu(self.conv2d(out) * self.scale + x)


class Block17(nn.Module):
    """17×17-grid residual block (1×7 / 7×1 factorised branch)."""

    def __init__(self, cfg: FaceNetConfig, scale: float) -> None:
        super().__init__()
        c, b = mixed_6a_out(cfg), cfg.c(128)
        self.scale = scale
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(c, b, 1), BasicConv2d(b, b, (1, 7), padding=(0, 3)), BasicConv2d(b, b, (7, 1), padding=(3, 0))
        )
        self.conv2d = nn.Conv2d(2 * b, c, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 896, H, W] → same shape."""
        out = torch.cat([self.branch0(x), self.branch1(x)], dim=1)  # [B, 256, H, W]
        return self.relu(self.conv2d(out) * self.scale + x)


class Block8(nn.Module):
    """8×8-grid residual block (1×3 / 3×1 branch); the final one has no ReLU."""

    def __init__(self, cfg: FaceNetConfig, scale: float = 1.0, relu: bool = True) -> None:
        super().__init__()
        c, b = mixed_7a_out(cfg), cfg.c(192)
        self.scale = scale
        self.use_relu = relu
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(c, b, 1), BasicConv2d(b, b, (1, 3), padding=(0, 1)), BasicConv2d(b, b, (3, 1), padding=(1, 0))
        )
        self.conv2d = nn.Conv2d(2 * b, c, 1)
        if relu:
            self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1792, H, W] → same shape."""
        out = torch.cat([self.branch0(x), self.branch1(x)], dim=1)  # [B, 384, H, W]
        out = self.conv2d(out) * self.scale + x
        return self.relu(out) if self.use_relu else out


def mixed_6a_out(cfg: FaceNetConfig) -> int:
    """Channels after Mixed_6a: conv branch + conv branch + max-pooled input (official 384 + 256 + 256 = 896)."""
    return cfg.c(384) + cfg.c(256) + cfg.c(256)


def mixed_7a_out(cfg: FaceNetConfig) -> int:
    """Channels after Mixed_7a (official 384 + 256 + 256 + 896 = 1792)."""
    return cfg.c(384) + cfg.c(256) + cfg.c(256) + mixed_6a_out(cfg)


class Mixed6a(nn.Module):
    """Grid reduction 35→17: two strided conv branches and a max-pool, concatenated."""

    def __init__(self, cfg: FaceNetConfig) -> None:
        super().__init__()
        c = cfg.c(256)
        self.branch0 = BasicConv2d(c, cfg.c(384), 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(c, cfg.c(192), 1),
            BasicConv2d(cfg.c(192), cfg.c(192), 3, padding=1),
            BasicConv2d(cfg.c(192), cfg.c(256), 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 256, H, W] → [B, 896, (H-3)/2+1, …]."""
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1)


class Mixed7a(nn.Module):
    """Grid reduction 17→8: three strided conv branches and a max-pool, concatenated."""

    def __init__(self, cfg: FaceNetConfig) -> None:
        super().__init__()
        c = mixed_6a_out(cfg)
        c256, c384 = cfg.c(256), cfg.c(384)
        self.branch0 = nn.Sequential(BasicConv2d(c, c256, 1), BasicConv2d(c256, c384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(c, c256, 1), BasicConv2d(c256, c256, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(c, c256, 1), BasicConv2d(c256, c256, 3, padding=1), BasicConv2d(c256, c256, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 896, H, W] → [B, 1792, (H-3)/2+1, …]."""
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


class InceptionResnetV1(nn.Module):
    """FaceNet embedding network; `forward` returns L2-normalised [B, 512] embeddings (dropout off in eval)."""

    def __init__(self, config: FaceNetConfig = FACENET_SIZES["vggface2"]) -> None:
        super().__init__()
        cfg = self.config = config
        self.conv2d_1a = BasicConv2d(3, cfg.c(32), 3, stride=2)
        self.conv2d_2a = BasicConv2d(cfg.c(32), cfg.c(32), 3)
        self.conv2d_2b = BasicConv2d(cfg.c(32), cfg.c(64), 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(cfg.c(64), cfg.c(80), 1)
        self.conv2d_4a = BasicConv2d(cfg.c(80), cfg.c(192), 3)
        self.conv2d_4b = BasicConv2d(cfg.c(192), cfg.c(256), 3, stride=2)
        self.repeat_1 = nn.Sequential(*[Block35(cfg, 0.17) for _ in range(cfg.repeats[0])])
        self.mixed_6a = Mixed6a(cfg)
        self.repeat_2 = nn.Sequential(*[Block17(cfg, 0.10) for _ in range(cfg.repeats[1])])
        self.mixed_7a = Mixed7a(cfg)
        self.repeat_3 = nn.Sequential(*[Block8(cfg, 0.20) for _ in range(cfg.repeats[2])])
        self.block8 = Block8(cfg, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.6)
        self.last_linear = nn.Linear(mixed_7a_out(cfg), cfg.c(512), bias=False)
        self.last_bn = nn.BatchNorm1d(cfg.c(512), eps=0.001, momentum=0.1)
        self.logits = nn.Linear(cfg.c(512), cfg.num_classes)  # classifier of the checkpoint; not used for embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (H, W ≥ ~80) → [B, 512] unit-norm embeddings."""
        for stem in (self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a, self.conv2d_3b):
            x = stem(x)
        x = self.conv2d_4b(self.conv2d_4a(x))  # [B, 256, h, w]
        x = self.mixed_6a(self.repeat_1(x))  # [B, 896, …]
        x = self.mixed_7a(self.repeat_2(x))  # [B, 1792, …]
        x = self.block8(self.repeat_3(x))
        x = self.dropout(self.avgpool_1a(x)).flatten(1)  # [B, 1792]
        x = self.last_bn(self.last_linear(x))  # [B, 512]
        return F.normalize(x, p=2, dim=1)


def facenet_config_from_state_dict(sd: dict[str, torch.Tensor]) -> FaceNetConfig:
    """Recover repeats, width divisor and class count from a facenet-pytorch state dict.

    Raises:
        ValueError: the keys do not look like an InceptionResnetV1 state dict.
    """
    try:
        stem = int(sd["conv2d_1a.conv.weight"].shape[0])
        classes = int(sd["logits.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"not an InceptionResnetV1 state dict: missing {err}") from err
    if stem == 0 or 32 % stem:
        raise ValueError(f"conv2d_1a has {stem} channels; expected 32 divided by an integer")

    def count(prefix: str) -> int:
        pat = re.compile(rf"^{prefix}\.(\d+)\.")
        return len({int(m.group(1)) for k in sd if (m := pat.match(k))})

    return FaceNetConfig(
        repeats=(count("repeat_1"), count("repeat_2"), count("repeat_3")), width_div=32 // stem, num_classes=classes
    )


def load_facenet(path: Path) -> InceptionResnetV1:
    """Build the InceptionResnetV1 that fits the flat state dict at `path` and load it strictly, in eval mode.

    Raises:
        FileNotFoundError: `path` is missing (message names it).
        ValueError: not such a state dict, or keys/shapes do not fit (message names `path`).
    """
    if not path.is_file():
        raise FileNotFoundError(f"FaceNet state dict missing: {path}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a flat state dict (facenet-pytorch format), got {type(sd).__name__}")
    try:
        model = InceptionResnetV1(facenet_config_from_state_dict(sd))
        model.load_state_dict(sd, strict=True)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: checkpoint does not fit InceptionResnetV1: {err}") from err
    return model.eval()
