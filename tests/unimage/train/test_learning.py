"""The tiny model learns on a SynthStory set: CE and MSE fall in both stages (a short version of the manual run).

Losses are measured on FIXED batches (the same samples, timesteps and noise every time) before training, after the
``icl`` stage and after the ``del`` stage, so the comparison is not drowned by the per-step sampling noise of the
flow-matching loss.
"""

from __future__ import annotations

import itertools

import lightning.pytorch as pl
import pytest
import torch

from unimage.data.datamodule import TrainDataConfig, UniMAGEDataModule
from unimage.data.packer import PackerConfig
from unimage.data.segments import ImageSizes
from unimage.data.synthstory import SynthStoryConfig, generate
from unimage.train.module import UniMAGETrainModule

ICL, DEL = 60, 40
PACKER = PackerConfig(expected_num_tokens=1536, max_num_tokens=2560, max_num_tokens_per_sample=2560, max_buffer_size=4)
IMAGES = ImageSizes(vae_max_size=64, vae_min_size=32, vit_max_size=56, vit_min_size=28)


class _Probe(pl.Callback):
    def __init__(self, batches):
        self.batches = batches
        self.after_icl: dict[str, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == ICL:
            self.after_icl = _measure(pl_module, self.batches)


@torch.no_grad()
def _measure(module, batches) -> dict[str, float]:
    icl = module.step_losses(batches["icl"])
    dl = module.step_losses(batches["del"])
    return {
        "icl/ce": float(icl["ce"]),
        "icl/mse": float(icl["mse"]),
        "del/ce": float(dl["ce"]),
        "del/mse": float(dl["mse"]),
    }


@pytest.mark.slow
def test_both_losses_fall_in_both_stages(tmp_path):
    synth = tmp_path / "synth"
    generate(
        synth,
        SynthStoryConfig(
            seed=5,
            train_stories=8,
            text_stories=8,
            pairs=8,
            eval_stories=0,
            image_size=64,
            train_shots=(2, 3),
            text_shots=(2, 3),
        ),
    )
    module = UniMAGETrainModule(
        size="tiny", id_prompting=True, icl_steps=ICL, del_steps=DEL, lr=2e-3, warmup_steps=5, attention_backend="sdpa"
    )
    module.configure_model()
    probe_dm = UniMAGEDataModule(synthstory=str(synth), packer=PACKER, images=IMAGES)
    probe_dm.bind(TrainDataConfig(model=module.model_config, icl_steps=1, seed=99))  # other seed: other batches
    probe_dm.setup("fit")
    first, second = itertools.islice(iter(probe_dm.train_dataloader()), 2)
    fixed = {"icl": first, "del": second}
    before = _measure(module, fixed)
    probe = _Probe(fixed)
    dm = UniMAGEDataModule(synthstory=str(synth), packer=PACKER, images=IMAGES, binding=module.data_binding())
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=str(tmp_path),
        max_steps=ICL + DEL,
        logger=False,
        callbacks=[probe],
        gradient_clip_val=1.0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    after = _measure(module, fixed)
    mid = probe.after_icl
    print({"before": before, "after_icl": mid, "after_del": after})
    # icl trains both experts: script CE and keyframe MSE fall.
    assert mid["icl/ce"] < 0.6 * before["icl/ce"]
    assert mid["icl/mse"] < 0.95 * before["icl/mse"]
    # del trains the understanding expert on text CE and the generation expert on MSE: both fall further.
    assert after["del/ce"] < 0.95 * mid["del/ce"]
    assert after["del/mse"] < 0.95 * mid["del/mse"]
