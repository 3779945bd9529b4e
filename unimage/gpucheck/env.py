"""Where the proof ran: device, versions, git commit, and the chip's dense bf16 peak for MFU.

Peak numbers are the vendors' dense (no 2:4 sparsity) bf16 tensor-core figures per chip. Only chips whose figure is
in ``PEAK_BF16_TFLOPS`` get an MFU; any other device gets ``null`` with the reason, never a guessed peak.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["PEAK_BF16_TFLOPS", "EnvInfo", "collect_env", "peak_bf16_tflops"]

# Dense bf16 TFLOPS per chip (NVIDIA data sheets; the "with sparsity" figures are twice these).
PEAK_BF16_TFLOPS: dict[str, float] = {"H100 SXM": 989.0, "H200": 989.0, "A100": 312.0}


def peak_bf16_tflops(device_name: str) -> tuple[float | None, str]:
    """(peak TFLOPS, which table entry or why none) for a CUDA device name such as ``NVIDIA H100 80GB HBM3``.

    H100 PCIe and NVL and the H200 NVL have lower peaks than the SXM parts, so an H100 counts as SXM only when its
    name says SXM or HBM3 (the SXM5 board's name) and not PCIe / NVL, and an H200 only when not NVL.
    """
    name = device_name.upper()
    if "H200" in name:
        if "NVL" in name:
            return None, f"no dense bf16 peak on record for {device_name!r} (only the H200 SXM)"
        return PEAK_BF16_TFLOPS["H200"], "H200"
    if "H100" in name:
        if ("SXM" in name or "HBM3" in name) and "PCIE" not in name and "NVL" not in name:
            return PEAK_BF16_TFLOPS["H100 SXM"], "H100 SXM"
        return None, f"no dense bf16 peak on record for {device_name!r} (only H100 SXM among H100s)"
    if "A100" in name:
        return PEAK_BF16_TFLOPS["A100"], "A100"
    return None, f"no dense bf16 peak on record for {device_name!r} (known: {', '.join(PEAK_BF16_TFLOPS)})"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class EnvInfo:
    """The run's environment, as written under ``env`` in ``gpucheck.json``."""

    device_type: str
    device_name: str
    device_count: int
    cuda: str | None
    torch: str
    flash_attn: str | None
    lightning: str | None
    python: str
    git_commit: str | None
    peak_bf16_tflops: float | None
    peak_source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def collect_env(device: torch.device) -> EnvInfo:
    """Describe ``device`` and the software around it."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        count = torch.cuda.device_count()
        peak, source = peak_bf16_tflops(name)
    else:
        name, count = platform.processor() or platform.machine(), 1
        peak, source = None, "CPU: no MFU (the peak table holds GPUs only)"
    return EnvInfo(
        device_type=device.type,
        device_name=name,
        device_count=count,
        cuda=torch.version.cuda,
        torch=torch.__version__,
        flash_attn=_version("flash-attn") or _version("flash_attn"),
        lightning=_version("lightning"),
        python=platform.python_version(),
        git_commit=_git_commit(),
        peak_bf16_tflops=peak,
        peak_source=source,
    )
