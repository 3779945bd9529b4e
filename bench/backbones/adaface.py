"""AdaFace IR-101 face recogniser (Era B/C CIDS face ensemble, §4.1), our own module with the official key names.

Architecture (mk-minchul/AdaFace `net.py`, `build_model("ir_101")` = `Backbone((112, 112), 100, "ir")`):
`input_layer` (3×3 conv → BN → PReLU, 64 ch), `body` = a flat `Sequential` of "IR" basic units in four stages
(3, 13, 30, 3 units; 64, 128, 256, 512 ch; the first unit of each stage has stride 2), `output_layer`
(BN2d → Dropout → flatten → Linear(512·7·7, 512) → BatchNorm1d(affine=False)); the forward returns the
L2-normalised embedding and its norm. Each unit is res = BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN plus a
shortcut that is a 1×1 max-pool (same width, no weights) or a strided 1×1 conv + BN (width change).

The checkpoint `adaface/adaface_ir101_webface12m.ckpt` is a PyTorch Lightning checkpoint: `{"state_dict":
{"model.<key>": …, "head.kernel": …}, …}`; the official inference script keeps the `model.`-prefixed entries.
Stage widths and unit counts are configurable (`IRConfig`) so tests can build tiny models with the same key scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ADAFACE_INPUT = 112
_OUT_SPATIAL = 7  # 112 px input after four stride-2 stages


@dataclass(frozen=True)
class IRConfig:
    """Shape of an IR backbone.

    Attributes:
        units: residual units per stage (IR-101: 3, 13, 30, 3).
        widths: channels per stage (IR-101: 64, 128, 256, 512); the stem has `widths[0]` channels.
        embedding_dim: output embedding width (512).
    """

    units: tuple[int, int, int, int] = (3, 13, 30, 3)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    embedding_dim: int = 512


IR_SIZES: dict[str, IRConfig] = {
    "ir101": IRConfig(),
    "tiny": IRConfig(units=(1, 2, 1, 1), widths=(8, 16, 24, 32), embedding_dim=32),
}


class IRUnit(nn.Module):
    """One IR basic unit (`BasicBlockIR`): BN-conv-BN-PReLU-conv-BN residual plus a pooled or projected shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_ch == out_ch:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # a strided subsample, no weights
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] → [B, out, H/stride, W/stride]."""
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """AdaFace's IR backbone for 112×112 input; `forward` returns (unit-norm embedding, norm) like the official."""

    def __init__(self, config: IRConfig = IR_SIZES["ir101"]) -> None:
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        self.input_layer = nn.Sequential(nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.PReLU(w0))
        units: list[nn.Module] = []
        in_ch = w0
        for n, width in zip(config.units, config.widths, strict=True):
            for i in range(n):
                units.append(IRUnit(in_ch, width, 2 if i == 0 else 1))
                in_ch = width
        self.body = nn.Sequential(*units)
        last = config.widths[-1]
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(last),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(last * _OUT_SPATIAL * _OUT_SPATIAL, config.embedding_dim),
            nn.BatchNorm1d(config.embedding_dim, affine=False),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, 112, 112] BGR in [-1, 1] → ([B, E] unit-norm embedding, [B, 1] its norm before normalising)."""
        x = self.body(self.input_layer(x))  # [B, C4, 7, 7]
        x = self.output_layer(x)  # [B, E]
        norm = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)
        return x / norm, norm


def ir_config_from_state_dict(sd: dict[str, torch.Tensor]) -> IRConfig:
    """Recover stage units/widths from an IR state dict (unprefixed keys), so any IR depth loads.

    Why: a stage starts at a unit whose stride-2 second conv halves the map; in the state dict that is visible
    only through the width change, except for the first stage, so units are grouped by output width in order.

    Raises:
        ValueError: the keys do not look like an IR backbone with four stages.
    """
    pattern = re.compile(r"^body\.(\d+)\.res_layer\.1\.weight$")
    widths_per_unit: dict[int, int] = {}
    for key, value in sd.items():
        m = pattern.match(key)
        if m:
            widths_per_unit[int(m.group(1))] = int(value.shape[0])
    if not widths_per_unit or sorted(widths_per_unit) != list(range(len(widths_per_unit))):
        raise ValueError("not an IR backbone state dict: no contiguous body.<i>.res_layer.1.weight keys")
    units: list[int] = []
    widths: list[int] = []
    for i in range(len(widths_per_unit)):
        w = widths_per_unit[i]
        if widths and widths[-1] == w:
            units[-1] += 1
        else:
            widths.append(w)
            units.append(1)
    if len(units) != 4:
        raise ValueError(f"IR backbone must have 4 stages of distinct widths, found widths {widths}")
    if int(sd["input_layer.0.weight"].shape[0]) != widths[0]:
        raise ValueError("IR stem width differs from the first stage width")
    emb = int(sd["output_layer.3.weight"].shape[0])
    return IRConfig(
        units=(units[0], units[1], units[2], units[3]),
        widths=(widths[0], widths[1], widths[2], widths[3]),
        embedding_dim=emb,
    )


def adaface_state_dict(ckpt: object, path: Path) -> dict[str, torch.Tensor]:
    """The backbone weights of an AdaFace Lightning checkpoint: its `state_dict` entries prefixed `model.`.

    Raises:
        ValueError: naming `path`, when the file is not such a checkpoint.
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path}: not an AdaFace Lightning checkpoint (expected a dict with a 'state_dict' entry)")
    sd = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not sd:
        raise ValueError(f"{path}: its state_dict has no 'model.'-prefixed backbone keys")
    return sd


def load_adaface(path: Path) -> IRBackbone:
    """Build the IR backbone that fits `path` and load it strictly, in eval mode.

    Raises:
        FileNotFoundError: `path` is missing (message names it).
        ValueError: not an AdaFace checkpoint, or keys/shapes do not fit (message names `path`).
    """
    if not path.is_file():
        raise FileNotFoundError(f"AdaFace checkpoint missing: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = adaface_state_dict(ckpt, path)
    try:
        model = IRBackbone(ir_config_from_state_dict(sd))
        model.load_state_dict(sd, strict=True)
    except (KeyError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: checkpoint does not fit the AdaFace IR backbone: {err}") from err
    return model.eval()
