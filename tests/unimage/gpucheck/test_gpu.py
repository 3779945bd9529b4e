"""The real proof on a CUDA device (skipped without one): ``--scale 7b``, every tolerance asserted.

One run of all four steps at BAGEL-7B-MoT layer shapes (module fixture, about 8 minutes), then one test per step.
The record is also kept under ``$GPUCHECK_OUT`` when set, so a lent machine's run can be pasted into the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unimage.gpucheck.cli import STEPS, build_parser, run
from unimage.gpucheck.env import PEAK_BF16_TFLOPS

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    out = Path(os.environ["GPUCHECK_OUT"]) if os.environ.get("GPUCHECK_OUT") else tmp_path_factory.mktemp("gpucheck")
    exits: list[int] = []  # the watchdog would end pytest itself; the wall-time test reports an overrun instead
    return run(build_parser().parse_args(["--out", str(out), "--scale", "7b"]), exit_fn=exits.append)


def _step(doc, name):
    step = doc["steps"][name]
    assert step["status"] == "ok", (name, step["reason"], [c for c in step["checks"] if not c["passed"]])
    return step["results"]


def test_record_is_complete_within_eight_minutes(gpu_run):
    assert gpu_run["complete"] is True and list(gpu_run["steps"]) == list(STEPS)
    assert gpu_run["wall_s"] < 480
    assert gpu_run["env"]["device_type"] == "cuda" and gpu_run["dtype"] == "bfloat16"


def test_kernel_parity_at_7b_shapes(gpu_run):
    r = _step(gpu_run, "parity")
    assert (r["heads_q"], r["heads_kv"], r["head_dim"], r["tokens"]) == (28, 4, 128, 4096)
    b = r["backends"]
    for name in ("flex", "sdpa"):
        assert b[name]["status"] == "ran" and set(b[name]["max_abs_err"]) == {"out", "dq", "dk", "dv"}
    if gpu_run["env"]["flash_attn"]:
        assert b["flash"]["status"] == "ran"
    else:
        assert b["flash"]["status"] == "skipped" and "flash-attn is not installed" in b["flash"]["reason"]
    checks = gpu_run["steps"]["parity"]["checks"]
    assert checks and all(c["passed"] for c in checks)


def test_training_step_mfu_and_checkpointing_memory(gpu_run):
    r = _step(gpu_run, "train")
    assert r["tokens"] == 8192 and r["hidden"] == 3584 and r["intermediate"] == 18944
    on, off = r["modes"]["checkpointing_on"], r["modes"]["checkpointing_off"]
    assert on["peak_mem_gib"] < off["peak_mem_gib"]
    if gpu_run["env"]["peak_bf16_tflops"] in PEAK_BF16_TFLOPS.values():
        assert 0 < off["mfu"] < 1 and 0 < on["mfu"] < 1
    else:
        assert off["mfu"] is None and r["mfu_note"]


def test_inference_decoding_and_1024_keyframe_cfg_step(gpu_run):
    r = _step(gpu_run, "inference")
    assert r["prefill"]["tokens_per_s"] > 0 and r["decode"]["tokens"] >= 4
    k = r["keyframe"]
    assert k["px"] == 1024 and k["latent_tokens"] == 4096 and k["branches"] == 3
    assert k["batched"]["step_s"] > 0 and k["sequential"]["step_s"] > 0


def test_fsdp_on_nccl_resumes_with_the_same_loss(gpu_run):
    r = _step(gpu_run, "fsdp")
    assert r["backend"] == "nccl" and r["checkpoint"]["shard_files"] == r["world_size"]
    assert r["resumed"]["losses"][0] == pytest.approx(r["continuous"]["losses"][1], rel=1e-3)
