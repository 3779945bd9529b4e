"""``unimage fit``: argv pass-through to LightningCLI, --print_config of the bundled configs, the FSDP strategy."""

from __future__ import annotations

import pytest
import yaml

from unimage.train.api import BUNDLED_CONFIGS, bundled_config, overrides_to_args


def _printed(capsys, argv):
    from unimage.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_unimage_fit_print_config_tiny(capsys, tmp_path):
    cfg = _printed(
        capsys,
        ["fit", "--config", str(bundled_config("tiny-synthstory")), "--model.id_prompting", "false", "--print_config"],
    )
    assert cfg["model"]["size"] == "tiny-synth" and cfg["model"]["id_prompting"] is False
    assert cfg["model"]["betas"] == [0.9, 0.95] and cfg["model"]["eps"] == 1e-15
    assert cfg["trainer"]["gradient_clip_val"] == 1.0
    assert cfg["data"]["packer"]["expected_num_tokens"] == 2048


def test_unimage_fit_hands_its_argv_to_lightningcli(capsys):
    """Everything after ``fit`` is LightningCLI's, ``--help`` included (no argparse subparser in between)."""
    from unimage.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--model.id_prompting" in out and "--run_dir" in out and "--print_config" in out


def test_bagel_config_is_the_paper_recipe_on_fsdp(capsys):
    cfg = _printed(capsys, ["fit", "--config", str(bundled_config("bagel-7b-mot-finetune")), "--print_config"])
    m = cfg["model"]
    assert (m["icl_steps"], m["del_steps"], m["lr"]) == (30000, 10000, 1e-5)
    assert cfg["trainer"]["precision"] == "bf16-mixed"
    strategy = cfg["trainer"]["strategy"]
    assert strategy["class_path"] == "unimage.train.strategy.UniMAGEFSDPStrategy"
    assert strategy["init_args"]["sharding_strategy"] == "HYBRID_SHARD"
    assert strategy["init_args"]["state_dict_type"] == "sharded"
    assert cfg["ema"]["decay"] == 0.9999


def test_fsdp_strategy_wraps_and_checkpoints_decoder_and_siglip_layers():
    from torch.distributed.fsdp import ShardingStrategy
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    from unimage.model.mot import MoTDecoderLayer
    from unimage.train.strategy import UniMAGEFSDPStrategy

    s = UniMAGEFSDPStrategy(sharding_strategy="HYBRID_SHARD")
    assert s.sharding_strategy == ShardingStrategy.HYBRID_SHARD
    assert s.kwargs["use_orig_params"] is True
    wrapped = s.kwargs["auto_wrap_policy"]._module_classes
    checkpointed = s._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes
    assert set(wrapped) == {MoTDecoderLayer}  # the ViT runs on some ranks only: not its own unit by default
    assert set(checkpointed) == {MoTDecoderLayer, SiglipEncoderLayer}
    vit_wrapped = UniMAGEFSDPStrategy(wrap_vit=True).kwargs["auto_wrap_policy"]._module_classes
    assert set(vit_wrapped) == {MoTDecoderLayer, SiglipEncoderLayer}
    assert UniMAGEFSDPStrategy(activation_checkpointing=False)._activation_checkpointing_kwargs == {}


def test_overrides_and_bundled_names():
    assert overrides_to_args({"model.lr": 1e-4, "data.synthstory": "d", "model.id_prompting": False}) == [
        "--model.lr=0.0001",
        "--data.synthstory=d",
        "--model.id_prompting=false",
    ]
    assert overrides_to_args(["--model.lr", "1"]) == ["--model.lr", "1"]
    assert all(bundled_config(n).is_file() for n in BUNDLED_CONFIGS)
    with pytest.raises(ValueError, match="unknown bundled config"):
        bundled_config("nope")


def test_plain_ddp_is_refused_with_a_clear_message():
    from lightning.pytorch.strategies import DDPStrategy

    from unimage.train.module import check_strategy

    with pytest.raises(ValueError, match="find_unused_parameters"):
        check_strategy(DDPStrategy())
    check_strategy(DDPStrategy(find_unused_parameters=True))


def test_fit_links_the_modules_data_binding_into_the_datamodule(tiny_set):
    """``link_arguments``: the data stream's model side is the built module's (not a YAML key of ``data``)."""
    from unimage.data.datamodule import DataBinding
    from unimage.train.cli import build_cli

    args = ["--config", str(bundled_config("tiny-synthstory")), "--data.synthstory", str(tiny_set)]
    cli = build_cli([*args, "--model.id_prompting", "false", "--model.seed", "5"], run=False)
    binding = cli.datamodule.binding
    assert isinstance(binding, DataBinding) and binding.model is cli.model.model_config
    assert (binding.model.layout.id_prompting, binding.icl_steps, binding.del_steps, binding.seed) == (
        False,
        200,
        120,
        5,
    )
    assert "binding" not in cli.parser.dump(cli.config, skip_none=False)


def test_a_datamodule_without_the_model_side_says_how_to_give_it(tiny_set):
    from unimage.data.datamodule import UniMAGEDataModule

    with pytest.raises(RuntimeError, match=r"binding=module\.data_binding\(\)"):
        UniMAGEDataModule(synthstory=str(tiny_set)).setup("fit")
