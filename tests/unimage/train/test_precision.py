"""``bf16-mixed`` training on CPU (issue 13): the step runs as on GPU, attention sees bf16, weights stay fp32, and the
losses agree with the fp32 step within bf16 rounding."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tests._helpers.data import IMAGES, PACKER
from unimage.data.datamodule import UniMAGEDataModule
from unimage.model import attention as attention_mod


def _fit(tiny_set, tmp_path, precision, monkeypatch):
    from unimage.train.module import UniMAGETrainModule

    seen: list[torch.dtype] = []
    real = attention_mod.packed_attention

    def rec(q, k, v, *args, **kwargs):
        out = real(q, k, v, *args, **kwargs)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr("unimage.model.mot.packed_attention", rec)
    torch.manual_seed(0)
    module = UniMAGETrainModule(size="tiny", icl_steps=1, del_steps=0, lr=1e-3, attention_backend="sdpa")
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        fast_dev_run=True,
    )
    trainer.fit(module, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train/ce", "train/mse")}
    return module, metrics, seen


@pytest.mark.slow
def test_bf16_mixed_step_on_cpu(tiny_set, tmp_path, monkeypatch):
    module, mixed, seen = _fit(tiny_set, tmp_path / "bf16", "bf16-mixed", monkeypatch)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in module.model.parameters())  # fp32 master weights
    _, fp32, seen32 = _fit(tiny_set, tmp_path / "fp32", "32-true", monkeypatch)
    assert set(seen32) == {torch.float32}
    for key in ("train/ce", "train/mse"):
        assert abs(mixed[key] - fp32[key]) <= 0.03 * abs(fp32[key]), (key, mixed[key], fp32[key])
