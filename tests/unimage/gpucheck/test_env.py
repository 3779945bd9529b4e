"""The dense bf16 peak table behind MFU: known chips by their CUDA names, everything else null with a reason."""

from __future__ import annotations

import pytest
import torch

from unimage.gpucheck.env import collect_env, peak_bf16_tflops


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),  # the SXM5 board's CUDA name
        ("NVIDIA H100 SXM5 80GB", 989.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100-PCIE-40GB", 312.0),
    ],
)
def test_known_chips_get_their_dense_bf16_peak(name, peak):
    value, source = peak_bf16_tflops(name)
    assert value == peak
    assert source in ("H100 SXM", "H200", "A100")


@pytest.mark.parametrize(
    "name", ["NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA L4", "Tesla V100-SXM2-16GB"]
)
def test_other_chips_get_no_peak_and_a_reason(name):
    value, reason = peak_bf16_tflops(name)
    assert value is None
    assert name in reason and "no dense bf16 peak" in reason


def test_cpu_environment_has_versions_and_no_peak():
    env = collect_env(torch.device("cpu")).to_dict()
    assert env["device_type"] == "cpu" and env["peak_bf16_tflops"] is None and "CPU" in env["peak_source"]
    assert env["torch"] == torch.__version__
    assert env["git_commit"] is None or len(env["git_commit"].split("+")[0]) == 40
