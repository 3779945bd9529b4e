"""``Trainer.fit`` on the tiny model: one fast_dev_run step per stage, EMA maths, export and reload."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch

from tests._helpers.data import IMAGES, PACKER
from unimage.data.datamodule import UniMAGEDataModule
from unimage.model.checkpoint import load_bagel_dir
from unimage.train.ema import EMA
from unimage.train.export import BagelExport, export_checkpoint


def _module(**kw):
    from unimage.train.module import UniMAGETrainModule

    kw.setdefault("attention_backend", "sdpa")
    return UniMAGETrainModule(size="tiny", id_prompting=True, lr=1e-3, **kw)


def _trainer(tmp_path, **kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        **kw,
    )


@pytest.mark.parametrize(("icl", "dl", "stage"), [(1, 0, "icl"), (0, 1, "del")])
def test_fast_dev_run_each_stage(tiny_set, tmp_path, icl, dl, stage):
    module = _module(icl_steps=icl, del_steps=dl)
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1
    metrics = trainer.callback_metrics
    assert float(metrics["train/ce"]) > 0 and float(metrics["train/mse"]) > 0
    assert set(module._stage_metrics) == {f"{stage}/ce", f"{stage}/mse"}
    assert all(v > 0 for v in module._stage_metrics.values())
    assert dm._state["consumed"] == 1


def test_schedule_runs_icl_then_del_and_exports_ema_weights(tiny_set, tmp_path):
    module = _module(icl_steps=2, del_steps=1)
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    ema = EMA(decay=0.5)
    export = BagelExport()
    before = {n: p.detach().clone() for n, p in _materialised(module).named_parameters() if p.requires_grad}
    trainer = _trainer(tmp_path, max_steps=3, callbacks=[ema, export])
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 3
    rows = [line for line in (tmp_path / "batches.jsonl").read_text().splitlines() if line]
    assert [json.loads(r)["stage"] for r in rows] == ["icl", "icl", "del"]
    # EMA with decay 0.5 over 3 steps is a weighted mean: it differs from the final weights and the initial ones.
    name = "language_model.model.layers.0.mlp_moe_gen.up_proj.weight"
    final = dict(module.model.named_parameters())[name].detach()
    shadow = ema.shadow[name]
    assert ema.num_updates == 3
    assert not torch.equal(shadow, final) and not torch.equal(shadow, before[name])
    # The exported directory reloads into the model with zero missing / unexpected keys and holds the EMA weights.
    out = tmp_path / "checkpoints" / "export"
    assert export.exported == out
    ckpt = load_bagel_dir(out)
    assert ckpt.config.layout.id_prompting is True
    loaded = dict(ckpt.model.named_parameters())
    torch.testing.assert_close(loaded[name], shadow, rtol=0, atol=0)
    for n, p in module.model.named_parameters():
        if not p.requires_grad:
            torch.testing.assert_close(loaded[n], p.detach(), rtol=0, atol=0)
    vae_sd = module.vae.flux_state_dict()
    for k, v in ckpt.vae.flux_state_dict().items():
        torch.testing.assert_close(v, vae_sd[k], rtol=0, atol=0)
    # The same export from the saved checkpoint file (the path for consolidated FSDP checkpoints).
    trainer.save_checkpoint(tmp_path / "final.ckpt")
    again = export_checkpoint(tmp_path / "final.ckpt", tmp_path / "export2")
    torch.testing.assert_close(dict(load_bagel_dir(again).model.named_parameters())[name], shadow, rtol=0, atol=0)
    status = (tmp_path / "train_status.json").read_text()
    assert '"complete": true' in status and '"del"' in status


def _materialised(module):
    module.configure_model()
    return module.model


def test_ema_update_matches_hand_computation():
    from unimage.train.module import UniMAGETrainModule

    class Toy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(2, 1, bias=False)

    toy = Toy()
    ema = EMA(decay=0.9)

    class FakeTrainer:
        global_step = 0
        world_size = 1
        strategy = None

    t = FakeTrainer()
    with torch.no_grad():
        toy.model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    ema.on_fit_start(t, toy)
    with torch.no_grad():
        toy.model.weight.copy_(torch.tensor([[3.0, 6.0]]))
    t.global_step = 1
    ema.on_train_batch_end(t, toy, None, None, 0)
    torch.testing.assert_close(ema.shadow["weight"], torch.tensor([[1.2, 2.4]]))  # 0.9·1 + 0.1·3, 0.9·2 + 0.1·6
    ema.on_train_batch_end(t, toy, None, None, 1)  # same step (accumulation): no update
    torch.testing.assert_close(ema.shadow["weight"], torch.tensor([[1.2, 2.4]]))
    assert UniMAGETrainModule is not None


def test_init_from_a_bagel_dir_trains_and_exports_with_its_tokenizer(tiny_set, tmp_path):
    from unimage.model.checkpoint import write_tiny_bagel_dir

    init = write_tiny_bagel_dir(tmp_path / "init", seed=1)
    module = _module(init_from=str(init), icl_steps=1, del_steps=0)
    assert module.tokenizer_dir == str(init)
    start = load_bagel_dir(init).model.state_dict()
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    export = BagelExport()
    _trainer(tmp_path / "run", max_steps=1, callbacks=[export]).fit(module, datamodule=dm)
    ckpt = load_bagel_dir(export.exported, load_tokenizer=True)
    assert ckpt.tokenizer is not None and ckpt.config.tokens == module.model_config.tokens
    moved = [k for k, v in ckpt.model.state_dict().items() if not torch.equal(v, start[k])]
    assert "language_model.model.layers.0.mlp.up_proj.weight" in moved  # trained (no EMA: raw weights exported)


def test_a_size_built_model_trains_with_a_tokenizer_of_its_own_and_exports_it(tiny_set, tmp_path):
    """``model.tokenizer``: the vocabulary and BAGEL's special ids come from the tokenizer, the data is encoded with
    it, and the export ships it, so the Director reads the script the way training did."""
    from unimage.script.tiny_tokenizer import write_tiny_qwen2_tokenizer
    from unimage.script.tokenizer import load_tokenizer
    from unimage.train.module import UniMAGETrainModule

    scripts = [json.loads(line)["script"] for line in (tiny_set / "train" / "interleaved.jsonl").open()]
    tok_dir = write_tiny_qwen2_tokenizer(tmp_path / "tok", vocab_size=700, corpus=scripts, with_vision_tokens=True)
    tok = load_tokenizer(str(tok_dir))
    module = _module(tokenizer=str(tok_dir), icl_steps=1, del_steps=0)
    cfg = module.model_config
    assert cfg.llm.vocab_size >= tok.vocab_size and cfg.llm.vocab_size % 64 == 0
    assert (cfg.tokens.im_start, cfg.tokens.vision_start) == (tok.im_start_id, tok.vision_start_id)
    assert cfg.tokens.im_start != UniMAGETrainModule(size="tiny").model_config.tokens.im_start  # not the byte ids
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    export = BagelExport()
    _trainer(tmp_path / "run", max_steps=1, callbacks=[export]).fit(module, datamodule=dm)
    ckpt = load_bagel_dir(export.exported, load_tokenizer=True)
    assert ckpt.tokenizer is not None and ckpt.tokenizer.encode(scripts[0]) == tok.encode(scripts[0])
    assert ckpt.config.llm.vocab_size == cfg.llm.vocab_size
    with pytest.raises(ValueError, match="init_from brings its own"):
        _module(tokenizer=str(tok_dir), init_from=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"model\.tokenizer"):
        _module(tokenizer=str(tmp_path / "missing"))


def test_gradient_accumulation_keeps_stages_aligned(tiny_set, tmp_path):
    module = _module(icl_steps=1, del_steps=1)
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=PACKER, images=IMAGES, binding=module.data_binding())
    trainer = _trainer(tmp_path, max_steps=2, accumulate_grad_batches=2)
    trainer.fit(module, datamodule=dm)
    rows = [json.loads(r) for r in (tmp_path / "batches.jsonl").read_text().splitlines()]
    assert [(r["step"], r["batch"], r["stage"]) for r in rows] == [
        (0, 0, "icl"),
        (0, 1, "icl"),
        (1, 2, "del"),
        (1, 3, "del"),
    ]


def test_freezing_flags_decide_what_the_optimiser_sees():
    module = _module(icl_steps=1, del_steps=1, train_vit=False, train_connector=False)
    model = _materialised(module)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n for n in frozen if n.startswith("vit_model.")} == {
        n for n, _ in model.named_parameters() if n.startswith("vit_model.")
    }
    assert any(n.startswith("connector.") for n in frozen)
    assert {"latent_pos_embed.pos_embed", "vit_pos_embed.pos_embed"} <= frozen
    assert not any(p.requires_grad for p in module.vae.parameters())
    opt = module.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in module.parameters() if p.requires_grad}
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["eps"] == 1e-15


def test_warmup_then_cosine_learning_rate():
    import math

    module = _module(icl_steps=3, del_steps=3, warmup_steps=2, lr_schedule="cosine", min_lr=1e-4)
    _materialised(module)
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factors = [f(step) for step in range(7) for f in sched.lr_lambdas]
    floor = 1e-4 / 1e-3
    expected = [0.5, 1.0] + [floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert factors == pytest.approx(expected)
