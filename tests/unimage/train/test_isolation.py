"""Disentangled Expert Learning: the MSE of the generation pack never reaches an understanding parameter.

Checked parameter by parameter on a real ``del`` batch of the tiny model, with a positive control (the same pack
without the stop-gradient DOES send MSE gradient into understanding parameters, so the check can fail), and the
complementary fact that the text pack's CE reaches only understanding parameters.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from tests._helpers.data import IMAGES, PACKER
from unimage.data.datamodule import TrainDataConfig, UniMAGEDataModule
from unimage.train.module import UniMAGETrainModule, und_parameter_names


@pytest.fixture(scope="module")
def del_setup(tiny_set):
    module = UniMAGETrainModule(size="tiny", id_prompting=True, icl_steps=0, del_steps=1, attention_backend="sdpa")
    module.configure_model()
    with torch.no_grad():  # BAGEL zero-inits llm2vae, which would block every gradient below it
        torch.nn.init.normal_(module.model.llm2vae.weight, std=0.05)
    dm = UniMAGEDataModule(synthstory=str(tiny_set), packer=dataclasses.replace(PACKER, packing=False), images=IMAGES)
    dm.bind(TrainDataConfig(model=module.model_config, icl_steps=0))
    dm.setup("fit")
    batch = next(itertools.islice(iter(dm.train_dataloader()), 1))
    assert batch.stage == "del" and {"und", "gen"} <= set(batch.packs)
    assert any(s.kind == "pair" for s in batch.packs["gen"].samples) or any(
        s.kind == "interleaved" for s in batch.packs["gen"].samples
    )
    return module, batch


def _grads(module, pack, freeze_und: bool, which: str) -> dict[str, torch.Tensor | None]:
    module.model.zero_grad(set_to_none=True)
    terms = module.pack_losses(pack, freeze_und=freeze_und, seed=11)
    loss = terms.mse if which == "mse" else terms.ce
    assert loss.requires_grad and float(loss.detach()) > 0
    loss.backward()
    return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in module.model.named_parameters()}


def _nonzero(g: torch.Tensor | None) -> bool:
    return g is not None and bool(g.abs().sum() > 0)


def test_mse_under_stop_gradient_reaches_no_understanding_parameter(del_setup):
    module, batch = del_setup
    grads = _grads(module, batch.packs["gen"], freeze_und=True, which="mse")
    und = set(und_parameter_names(module.model))
    assert len(und) > 50  # embedding, every und projection/norm of both layers, lm_head, ViT, connector
    leaked = sorted(n for n in und if _nonzero(grads[n]))
    assert leaked == [], f"MSE gradient reached understanding parameters: {leaked}"
    gen = [n for n, p in module.model.named_parameters() if n not in und and p.requires_grad]
    learned = [n for n in gen if _nonzero(grads[n])]
    # Every generation-side parameter learns from the MSE (the moe_gen q/k norms included).
    assert sorted(learned) == sorted(gen)


def test_positive_control_without_stop_gradient_mse_leaks(del_setup):
    module, batch = del_setup
    grads = _grads(module, batch.packs["gen"], freeze_und=False, which="mse")
    und = und_parameter_names(module.model)
    leaked = [n for n in und if _nonzero(grads[n])]
    assert any("self_attn.k_proj.weight" in n for n in leaked)
    assert "language_model.model.embed_tokens.weight" in leaked


def test_text_pack_ce_trains_only_the_understanding_expert(del_setup):
    module, batch = del_setup
    grads = _grads(module, batch.packs["und"], freeze_und=False, which="ce")
    und = set(und_parameter_names(module.model))
    gen_touched = sorted(n for n in grads if n not in und and _nonzero(grads[n]))
    assert gen_touched == []
    assert _nonzero(grads["language_model.lm_head.weight"])
    assert _nonzero(grads["language_model.model.layers.0.mlp.up_proj.weight"])
