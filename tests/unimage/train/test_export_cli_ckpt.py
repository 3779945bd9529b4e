"""A checkpoint that ``unimage fit`` (LightningCLI) saved exports by hand, as a user would after a run."""

from __future__ import annotations

from pathlib import Path

import torch

from tests._helpers.train import data_section
from unimage.model.checkpoint import load_bagel_dir
from unimage.train.api import fit
from unimage.train.export import export_checkpoint, load_checkpoint_file


def test_last_ckpt_of_a_cli_run_exports(tiny_set: Path, tmp_path: Path) -> None:
    cfg = {
        "model": {"size": "tiny", "icl_steps": 1, "del_steps": 0, "lr": 1e-3, "attention_backend": "sdpa"},
        "data": data_section(tiny_set),
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False},
    }
    run = tmp_path / "run"
    exported = fit(cfg, run)
    ckpt = run / "checkpoints" / "last.ckpt"
    # LightningCLI stores its own entries beside the module's arguments; the export must not pass them on.
    assert any(str(k).startswith("_") for k in load_checkpoint_file(ckpt)["hyper_parameters"])
    again = export_checkpoint(ckpt, tmp_path / "again")
    a = dict(load_bagel_dir(exported).model.named_parameters())
    b = dict(load_bagel_dir(again).model.named_parameters())
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
