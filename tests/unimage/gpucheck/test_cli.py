"""The tiny CPU run of ``python -m unimage.gpucheck``: every step present, run or skipped with its reason.

One run (module fixture) of all four steps through ``cli.run`` (the FSDP step in its own process, gloo), then
assertions on the record it left. On this CPU the flash backend and MFU are absent and must say why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from unimage.gpucheck.cli import STEPS, build_parser, main, run

REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpucheck")
    t0 = time.perf_counter()
    exits: list[int] = []  # the watchdog would end pytest itself; record instead, and fail below
    doc = run(build_parser().parse_args(["--out", str(out), "--device", "cpu"]), exit_fn=exits.append)
    assert not exits, "the tiny run overstayed its budget"
    return out, doc, time.perf_counter() - t0


def test_tiny_run_writes_a_complete_record(tiny_run):
    out, doc, wall = tiny_run
    on_disk = json.loads((out / "gpucheck.json").read_text())
    assert on_disk == json.loads(json.dumps(doc, default=str))
    assert doc["schema"] == "unimage.gpucheck/1" and doc["scale"] == "tiny" and doc["dtype"] == "float32"
    assert doc["complete"] is True and doc["ok"] is True, {n: s["reason"] for n, s in doc["steps"].items()}
    assert list(doc["steps"]) == list(STEPS)
    for name, step in doc["steps"].items():
        assert step["status"] == "ok", (name, step["reason"])
        assert step["checks"] and all(c["passed"] for c in step["checks"]), name
        assert step["wall_s"] <= step["box_s"] + 5, name
    assert wall < 120
    md = (out / "gpucheck.md").read_text()
    assert "| parity: attention kernel parity vs float64 | ok |" in md and "## fsdp" in md


def test_tiny_parity_runs_sdpa_and_flex_and_says_why_flash_did_not(tiny_run):
    r = tiny_run[1]["steps"]["parity"]["results"]
    assert r["heads_q"] == 4 and r["heads_kv"] == 2 and r["documents"] > 1 and 0 < r["mask_density"] < 1
    b = r["backends"]
    assert b["flash"]["status"] == "skipped" and "needs CUDA" in b["flash"]["reason"]
    assert b["sdpa"]["status"] == "ran" and set(b["sdpa"]["max_abs_err"]) == {"out", "dq", "dk", "dv"}
    assert b["flex"]["status"] == "ran" and "no flex_attention backward on the CPU" in b["flex"]["backward"]
    assert 0 < b["sdpa"]["max_abs_err"]["out"] < 1e-4  # fp32 kernel vs float64


def test_tiny_train_measures_both_checkpointing_modes_and_explains_the_missing_mfu(tiny_run):
    r = tiny_run[1]["steps"]["train"]["results"]
    assert r["tokens"] == 256 and r["model_flops_per_step"] > 0 and r["backend"] == "sdpa"
    assert r["peak_bf16_tflops"] is None and "CPU" in r["mfu_note"]
    for mode in ("checkpointing_off", "checkpointing_on"):
        m = r["modes"][mode]
        assert m["tokens_per_s"] > 0 and m["mfu"] is None and m["timing"]["iters"] >= 1
    assert r["modes"]["checkpointing_on"]["loss"] == pytest.approx(r["modes"]["checkpointing_off"]["loss"], rel=1e-6)


def test_tiny_inference_has_prefill_decode_and_both_cfg_modes(tiny_run):
    r = tiny_run[1]["steps"]["inference"]["results"]
    assert r["prefill"]["tokens"] == 26 and r["prefill"]["tokens_per_s"] > 0
    assert r["decode"]["tokens"] == 6 and r["decode"]["context_tokens"] == 26
    k = r["keyframe"]
    assert k["px"] == 128 and k["latent_tokens"] == 64 and k["branches"] == 3
    assert k["batched"]["step_s"] > 0 and k["sequential"]["step_s"] > 0
    assert k["max_abs_update"] > 0.01  # the sampler moved the latents, so the equality check means something
    assert k["max_abs_diff"] < 1e-4 * k["max_abs_update"]


def test_tiny_fsdp_resumes_from_its_sharded_checkpoint_with_the_same_loss(tiny_run):
    out, doc, _ = tiny_run
    r = doc["steps"]["fsdp"]["results"]
    assert r["world_size"] == 1 and r["backend"] == "gloo" and r["returncodes"] == [0]
    assert r["fsdp_units"] == 1 + r["layers"]  # every MoT decoder layer, plus the root
    assert r["checkpoint"]["shard_files"] == 1 and "__0_0.distcp" in r["checkpoint"]["files"]
    cont, resumed = r["continuous"]["losses"], r["resumed"]["losses"]
    assert len(cont) == 2 and len(resumed) == 1 and resumed[0] == pytest.approx(cont[1], rel=1e-6)
    assert cont[0] != cont[1]
    assert not (out / "work" / "fsdp" / "sharded.ckpt").exists()  # removed after the step (GBs on 7B)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_7b_scale_is_refused_without_cuda(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--scale", "7b"])
    assert exc.value.code == 2 and "--scale 7b needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpucheck.json").exists()


def test_unknown_step_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--device", "cpu", "--steps", "parity,mfu"])
    assert exc.value.code == 2 and "unknown step(s) ['mfu']" in capsys.readouterr().err


def test_selected_steps_only_and_the_rest_marked(tmp_path):
    doc = run(build_parser().parse_args(["--out", str(tmp_path), "--device", "cpu", "--steps", "train"]))
    assert doc["steps"]["train"]["status"] == "ok"
    assert {n: s["reason"] for n, s in doc["steps"].items() if n != "train"} == dict.fromkeys(
        ["parity", "inference", "fsdp"], "not selected (--steps)"
    )


@pytest.mark.slow
def test_module_entry_point_runs_the_tiny_proof_in_under_two_minutes(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "unimage.gpucheck", "--out", str(tmp_path), "--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpucheck.json").read_text())
    assert doc["ok"] is True and set(doc["steps"]) == set(STEPS)
    assert wall < 120, wall


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_forced_backend_that_cannot_run_here_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path), "--device", "cpu", "--backend", "flash"])
    assert exc.value.code == 2 and "needs CUDA and the flash-attn package" in capsys.readouterr().err


def test_summary_renders_any_partial_record(tiny_run):
    """The watchdog may write the record mid-step: every prefix of a step's results must still render."""
    import copy

    from unimage.gpucheck.report import summary_markdown

    doc = tiny_run[1]
    for name, step in doc["steps"].items():
        keys = list(step["results"])
        for n in range(len(keys) + 1):
            partial = copy.deepcopy(doc)
            partial["steps"][name]["results"] = {k: step["results"][k] for k in keys[:n]}
            partial["steps"][name]["status"] = "timeout"
            partial["steps"][name]["reason"] = "watchdog: the run's budget (140 s) ran out here"
            md = summary_markdown(partial)
            assert f"| {name}: {step['title']} | timeout (watchdog" in md
    failed = copy.deepcopy(doc)
    failed["steps"]["train"]["checks"][0].update(value=2.0, limit=1.0, passed=False)
    assert "failed checks: loss_rel_diff_ac_on_vs_off = 2 > 1" in summary_markdown(failed)
