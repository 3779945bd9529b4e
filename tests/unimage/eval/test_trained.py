"""The diagnostics on a checkpoint trained by ``unimage fit`` (the sweep's path: byte tokenizer, no tokenizer files in
the export, keyframe sizes from the run's ``config.yaml``). Slow: trains first."""

from __future__ import annotations

import pytest

from unimage.eval.diagnostics import diagnose, training_image_sizes


@pytest.mark.slow
def test_diagnose_a_fit_run(synth, tmp_path):
    from unimage.train.api import fit

    run = tmp_path / "run"
    over = {
        "data.synthstory": str(synth),
        "model.icl_steps": 6,
        "model.del_steps": 4,
        "data.packer.expected_num_tokens": 1024,
        "data.packer.max_num_tokens": 2048,
        "data.packer.max_num_tokens_per_sample": 2048,
        "trainer.enable_progress_bar": False,
    }
    export = fit("tiny-synthstory", run, over)
    sizes = training_image_sizes(export)
    assert sizes is not None and sizes.vae_max_size == 64  # tiny-synthstory.yaml: data.images
    rows = diagnose(run, synth, max_stories=2, structure_stories=1, max_entry_tokens=32)
    assert rows == diagnose(export, synth, max_stories=2, structure_stories=1, max_entry_tokens=32)
    metrics = {r.metric for r in rows}
    assert {"diag.cont_ce", "diag.cont_ce_nomarker", "diag.img_mse_bg", "diag.struct_valid"} <= metrics
