"""Bad records (a corrupted keyframe, a malformed script) are skipped during training and counted in the logs."""

from __future__ import annotations

import csv
import json
import shutil

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger

from tests._helpers.data import IMAGES
from unimage.data.datamodule import UniMAGEDataModule
from unimage.data.packer import PackerConfig
from unimage.train.module import UniMAGETrainModule


def test_corrupted_image_and_malformed_script_are_skipped_and_logged(tiny_set, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_set / "train", data)
    records = [json.loads(r) for r in (data / "interleaved.jsonl").read_text().splitlines()][:2]
    bad_image = dict(records[0], id="bad-image", images=["broken.png", *records[0]["images"][1:]])
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    bad_script = dict(records[1], id="bad-script", script="<User>: a story\n<Frame1>: only a frame, no video\n")
    bad_script["images"] = records[1]["images"][:1]
    (data / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*records, bad_image, bad_script]))

    module = UniMAGETrainModule(size="tiny", icl_steps=3, del_steps=0, attention_backend="sdpa", log_batches=False)
    packer = PackerConfig(
        expected_num_tokens=64, max_num_tokens=1536, max_num_tokens_per_sample=1536, max_buffer_size=0
    )
    dm = UniMAGEDataModule(
        interleaved=str(data / "mixed.jsonl"), packer=packer, images=IMAGES, binding=module.data_binding()
    )
    logger = CSVLogger(tmp_path, name="logs", version="csv")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,  # 3 one-sample packs from 2 good records: epoch 0 is read entirely
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 3
    rows = list(csv.DictReader((tmp_path / "logs" / "csv" / "metrics.csv").open()))
    last = [r for r in rows if r.get("data/skipped")][-1]
    assert float(last["data/skipped_unreadable_image"]) == 1
    assert float(last["data/skipped_malformed_script"]) == 1
    assert float(last["data/skipped"]) == 2
    assert dm.skip_counts()["unreadable_image"] == 1
