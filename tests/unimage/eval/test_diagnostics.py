"""``diagnose`` end to end on a tiny checkpoint: deterministic, complete, region losses consistent with the whole-image
loss, a checkpoint trained a few steps beats the random one (positive control), and the CSV writer merges rows."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import pytest
import torch

from unimage.data.segments import ImageSizes, SegmentBuilder
from unimage.eval.diagnostics import DiagRow, diagnose, image_rows, training_image_sizes, write_rows
from unimage.eval.heldout import HeldOutStory, load_heldout
from unimage.eval.regions import REGIONS, region_masks

SIZES = ImageSizes(vae_max_size=64, vae_min_size=64, vit_max_size=56, vit_min_size=56)
TEXT = ("full_ce", "cont_ce", "cont_ce_nomarker", "ext_ce", "ext_ce_nomarker")


def _by_metric(rows: list[DiagRow]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(r.metric, []).append(r.value)
    return out


def test_deterministic_and_complete(tiny_ckpt_id, synth):
    kw = {"max_stories": 2, "structure": ("continue",), "structure_stories": 1, "max_entry_tokens": 16}
    a = diagnose(tiny_ckpt_id, synth, **kw)
    b = diagnose(tiny_ckpt_id, synth, **kw)
    assert a == b  # exactly equal, values included
    assert {r.story for r in a} == {"01", "02"}
    metrics = {r.metric for r in a if r.story == "01"}
    for name in TEXT:
        assert f"diag.{name}" in metrics and f"diag.{name}_token" in metrics
    assert {"diag.cont_marker_delta", "diag.ext_marker_delta", "diag.icl_ce", "diag.img_mse"} <= metrics
    assert {"diag.img_mse_first", "diag.img_mse_bg", "diag.struct_parse", "diag.struct_valid"} <= metrics
    assert not any(r.metric.startswith("diag.struct") for r in a if r.story == "02")  # structure_stories=1
    assert all(r.metric.startswith("diag.") and math.isfinite(r.value) for r in a)
    assert all(r.higher_is_better == r.metric.startswith("diag.struct") for r in a)
    c = _by_metric(diagnose(tiny_ckpt_id, synth, max_stories=1, structure=(), seed=1))
    first = _by_metric([r for r in a if r.story == "01"])
    assert c["diag.img_mse"] != first["diag.img_mse"]  # the seed sets the noise
    assert c["diag.full_ce"] == first["diag.full_ce"]  # ...and not the full-script CE


def test_region_losses_decompose_the_image_loss(director, synth):
    builder = SegmentBuilder(director.model.config, director.tokenizer, SIZES)
    for story in load_heldout(synth):
        rows = {r.metric: r.value for r in image_rows(director, builder, story, seed=0)}
        counts = torch.zeros(len(REGIONS))
        for shot in range(len(story.script.shots)):
            counts += region_masks(story.truth, shot).flatten(1).sum(1)
        parts = [(counts[k], rows.get(f"diag.img_mse_{r}")) for k, r in enumerate(REGIONS)]
        assert all(v is not None for c, v in parts if c > 0) and all(v is None for c, v in parts if c == 0)
        whole = sum(float(c) * v for c, v in parts if v is not None) / float(counts.sum())
        assert whole == pytest.approx(rows["diag.img_mse"], rel=1e-6)


def test_a_story_without_reappearing_characters_has_no_reappear_row(director, synth):
    builder = SegmentBuilder(director.model.config, director.tokenizer, SIZES)
    story = load_heldout(synth, max_stories=1)[0]
    one = HeldOutStory(
        story.story_id,
        story.text,
        replace(story.script, shots=story.script.shots[:1]),
        story.keyframes[:1],
        dict(story.truth, shots=story.truth["shots"][:1]),
    )
    metrics = {r.metric for r in image_rows(director, builder, one, seed=0)}
    assert "diag.img_mse_first" in metrics and "diag.img_mse_reappear" not in metrics


def _train_a_few_steps(ckpt, synth, out, steps: int = 8):
    """Adam on the training loss (``UniMAGE.forward``) over SynthStory's *training* scripts and keyframes."""
    from unimage.data.manifest import Manifest
    from unimage.data.transforms import PreContextSplitting
    from unimage.model.checkpoint import load_bagel_dir, save_bagel_dir
    from unimage.model.packing import pack

    loaded = load_bagel_dir(ckpt, load_vae=True, load_tokenizer=True)
    model, vae = loaded.model, loaded.vae
    builder = SegmentBuilder(model.config, loaded.tokenizer, SIZES)
    split = PreContextSplitting()
    texts = [builder.text(s, split(s)) for s in Manifest(synth / "train" / "text.jsonl", kind="text")]
    inter = [builder.interleaved(s, True) for s in Manifest(synth / "train" / "interleaved.jsonl")]
    opt = torch.optim.Adam([p for p in model.parameters() if p.is_floating_point()], lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        picked = [texts[step % len(texts)], inter[step % len(inter)]]
        samples = []
        for s in picked:
            with torch.no_grad():
                lat = [vae.encode(px[None], generator=g)[0] for px in s.vae_pixels]
            samples.append(s.to_model_segments(lat))
        loss = model(pack(samples, model.config), g).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_bagel_dir(model.eval(), out, vae=vae, tokenizer_dir=ckpt)
    return out


def test_positive_control_a_few_training_steps_lower_the_losses(tiny_ckpt, synth, tmp_path):
    trained = _train_a_few_steps(tiny_ckpt, synth, tmp_path / "trained")
    kw = {"max_stories": 1, "structure": ()}  # 8 steps: CE per byte 3.42 -> 2.54, image MSE 1.198 -> 1.171
    before, after = _by_metric(diagnose(tiny_ckpt, synth, **kw)), _by_metric(diagnose(trained, synth, **kw))
    for metric in (*(f"diag.{n}" for n in TEXT), "diag.icl_ce", "diag.img_mse"):
        assert sum(after[metric]) < sum(before[metric]), metric


def test_write_rows_merges_into_the_long_csv(tmp_path):
    path = tmp_path / "metrics" / "long.csv"
    path.parent.mkdir()
    path.write_text("story,metric,family,higher_is_better,value,arm\n01,csd_self,toy,True,50.0,full\n")
    rows = [DiagRow("01", "diag.full_ce", 1.5, False), DiagRow("02", "diag.struct_valid", 1.0, True)]
    write_rows(rows, path, arm="full")
    write_rows([replace(rows[0], value=1.25)], path, arm="full")  # a rerun replaces, never duplicates
    write_rows(rows[:1], path, arm="no_script_splitting")
    with path.open() as handle:
        got = list(csv.DictReader(handle))
    assert [(r["story"], r["metric"], r["family"], r["arm"], r["value"]) for r in got] == [
        ("01", "csd_self", "toy", "full", "50.0"),
        ("02", "diag.struct_valid", "diag", "full", "1.0"),
        ("01", "diag.full_ce", "diag", "full", "1.25"),
        ("01", "diag.full_ce", "diag", "no_script_splitting", "1.5"),
    ]
    assert got[1]["higher_is_better"] == "1" and got[2]["higher_is_better"] == "0"
    fresh = write_rows(rows, tmp_path / "new.csv")
    assert fresh.read_text().splitlines()[0] == "story,metric,family,higher_is_better,value"


def test_write_rows_refuses_bad_input_and_keeps_the_file(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("story,value\n01,3\n")
    with pytest.raises(ValueError, match="missing"):
        write_rows([DiagRow("01", "diag.full_ce", 1.0, False)], path)
    good = tmp_path / "good.csv"
    write_rows([DiagRow("01", "diag.full_ce", 1.0, False)], good)
    before = good.read_text()
    with pytest.raises(ValueError, match="not finite"):
        write_rows([DiagRow("01", "diag.full_ce", float("nan"), False)], good)
    assert good.read_text() == before and path.read_text() == "story,value\n01,3\n"


def test_bad_inputs_are_clear_errors(tiny_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match="no held-out scripts"):
        diagnose(tiny_ckpt, tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        diagnose(tmp_path / "nope", tmp_path)


def test_training_image_sizes_from_the_run_config(tmp_path):
    export = tmp_path / "run" / "checkpoints" / "export"
    export.mkdir(parents=True)
    assert training_image_sizes(export) is None
    (tmp_path / "run" / "config.yaml").write_text(
        "data:\n  images: {vae_max_size: 64, vae_min_size: 32, vit_max_size: 56, vit_min_size: 28}\n"
    )
    assert training_image_sizes(export) == ImageSizes(64, 32, 56, 28)


@pytest.mark.parametrize("ckpt", ["tiny_ckpt", "tiny_ckpt_id"])
def test_timestep_copies_equal_one_forward_per_timestep(ckpt, synth, request):
    """The copies of a noisy block in one sequence give the losses of one training layout per timestep."""
    from unimage.eval.diagnostics import plan_image_batch
    from unimage.eval.losses import token_losses
    from unimage.infer.director import Director

    d = Director.from_pretrained(request.getfixturevalue(ckpt), device="cpu")
    builder = SegmentBuilder(d.model.config, d.tokenizer, SIZES)
    story = load_heldout(synth, max_stories=1)[0]
    ts = (0.2, 0.6, 0.9)
    joint = plan_image_batch(d, builder, story, seed=3, timesteps=ts)
    got = token_losses(d.model, joint.batch, noise=joint.noise)
    for k, t in enumerate(ts):
        single = plan_image_batch(d, builder, story, seed=3, timesteps=(t,))
        ref = token_losses(d.model, single.batch, noise=single.noise)
        torch.testing.assert_close(got.ce, ref.ce, rtol=1e-5, atol=1e-5)  # text never sees a noisy block
        for img, shot, step in zip(joint.images, joint.shots, joint.steps):
            if step != k:
                continue
            ref_img = single.images[single.shots.index(shot)]
            torch.testing.assert_close(
                got.mse[got.mse_image == img], ref.mse[ref.mse_image == ref_img], rtol=1e-5, atol=1e-6
            )
    assert d.model.config.layout.id_prompting == (ckpt == "tiny_ckpt_id")


@pytest.mark.gpu
def test_cuda_gives_the_cpu_numbers(tiny_ckpt_id, synth):
    kw = {"max_stories": 1, "structure": ()}
    cpu = {r.metric: r.value for r in diagnose(tiny_ckpt_id, synth, device="cpu", **kw)}
    cuda = {r.metric: r.value for r in diagnose(tiny_ckpt_id, synth, device="cuda", **kw)}
    assert cuda.keys() == cpu.keys()
    for metric, value in cpu.items():
        assert cuda[metric] == pytest.approx(value, rel=1e-3, abs=1e-4), metric
