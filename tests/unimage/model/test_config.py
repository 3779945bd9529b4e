"""LLMConfig / ModelConfig: llm_config.json in the Hugging Face Qwen2 format, validation, size registry."""

from __future__ import annotations

import json

import pytest
import torch

from unimage.model.config import (
    LLMConfig,
    LossRecipe,
    ModelConfig,
    SequenceLayout,
    SpecialTokens,
    get_config,
    list_sizes,
)

# The published Qwen2.5-7B-Instruct config.json (which BAGEL ships as llm_config.json, bagel-compat §1.2).
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}


def test_reads_published_qwen25_config(tmp_path):
    path = tmp_path / "llm_config.json"
    path.write_text(json.dumps(QWEN25_7B))
    cfg = LLMConfig.from_json(path)
    assert cfg == get_config("bagel-7b-mot").llm
    assert cfg.head_dim == 128 and cfg.qk_norm is True  # BAGEL forces qk_norm on


def test_llm_config_round_trip_and_transformers_reads_it(tmp_path):
    from transformers import Qwen2Config

    cfg = get_config("tiny").llm
    path = tmp_path / "llm_config.json"
    cfg.to_json(path)
    assert LLMConfig.from_json(path) == cfg
    assert not (tmp_path / "llm_config.json.tmp").exists()
    hf = Qwen2Config.from_json_file(str(path))
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_key_value_heads, hf.vocab_size) == (64, 2, 2, 640)
    assert hf.intermediate_size == cfg.intermediate_size and hf.rms_norm_eps == cfg.rms_norm_eps


def test_bad_llm_config_names_file_and_field(tmp_path):
    path = tmp_path / "llm_config.json"
    path.write_text(json.dumps({k: v for k, v in QWEN25_7B.items() if k != "hidden_size"}))
    with pytest.raises(ValueError, match=r"llm_config\.json.*hidden_size"):
        LLMConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        LLMConfig.from_json(path)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LLMConfig(num_attention_heads=28, num_key_value_heads=5)


def test_model_config_validation_and_registry():
    assert list_sizes() == ["tiny", "tiny-synth", "small-synth", "small", "bagel-7b-mot"]
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        get_config("huge")
    tiny = get_config("tiny", id_prompting=True)
    assert tiny.layout.id_prompting and not get_config("tiny").layout.id_prompting
    assert tiny.patch_latent_dim == 64 and tiny.latent_downsample == 16
    with pytest.raises(ValueError, match="attention_backend"):
        tiny.replace(attention_backend="xformers")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny.replace(tokens=SpecialTokens())  # Qwen ids do not fit the tiny vocabulary
    real = get_config("bagel-7b-mot")
    assert (real.max_latent_size, real.vit_max_num_patch_per_side, real.latent_patch_size) == (64, 70, 2)
    assert real.tokens == SpecialTokens(151644, 151645, 151652, 151653)


def test_tiny_special_tokens_match_the_offline_tokenizer():
    from unimage.script.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    t = get_config("tiny").tokens
    assert (t.im_start, t.im_end, t.vision_start, t.vision_end) == (
        tok.im_start_id,
        tok.im_end_id,
        tok.vision_start_id,
        tok.vision_end_id,
    )
    assert tok.vocab_size <= get_config("tiny").llm.vocab_size


def test_top_level_json_round_trip():
    cfg = get_config("tiny", id_prompting=True, timestep_shift=2.0, ce_weight=0.5, freeze_und=True)
    assert cfg.layout == SequenceLayout(id_prompting=True)
    assert cfg.loss == LossRecipe(ce_weight=0.5, mse_weight=1.0, timestep_shift=2.0, freeze_und=True)
    top = json.loads(json.dumps(cfg.to_json_dict()))
    # BAGEL's flat config.json keys, as every checkpoint on disk has them.
    assert {k: top[k] for k in ("id_prompting", "timestep_shift", "ce_weight", "mse_weight", "freeze_und")} == {
        "id_prompting": True,
        "timestep_shift": 2.0,
        "ce_weight": 0.5,
        "mse_weight": 1.0,
        "freeze_und": True,
    }
    again = ModelConfig.from_json_dicts(top, cfg.llm, cfg.vit, cfg.vae)
    assert again == cfg
    assert ModelConfig.from_json_dicts(top, cfg.llm, cfg.vit, cfg.vae, changes={"id_prompting": False}).layout == (
        SequenceLayout(id_prompting=False)
    )
    with pytest.raises(ValueError, match="interpolate_pos"):
        ModelConfig.from_json_dicts({"interpolate_pos": True}, cfg.llm, cfg.vit, cfg.vae)


def test_bagel_7b_on_meta_has_the_released_key_set():
    """bagel-compat §1.4: 1223 tensors, 14,607,260,128 numbers (both sin-cos tables included)."""
    from unimage.model.unimage import UniMAGE

    with torch.device("meta"):
        model = UniMAGE(get_config("bagel-7b-mot"))
    sd = model.state_dict()
    assert len(sd) == 1223
    assert sum(t.numel() for t in sd.values()) == 14_607_260_128
    assert sd["language_model.model.layers.27.self_attn.k_proj_moe_gen.weight"].shape == (512, 3584)
    assert sd["language_model.model.layers.0.self_attn.q_norm_moe_gen.weight"].shape == (128,)
    assert sd["vit_model.vision_model.embeddings.patch_embedding.weight"].shape == (1152, 588)
    assert sd["latent_pos_embed.pos_embed"].shape == (4096, 3584)
    assert sd["vit_pos_embed.pos_embed"].shape == (4900, 3584)
    assert "vit_model.vision_model.encoder.layers.25.mlp.fc2.bias" in sd
    assert "vit_model.vision_model.encoder.layers.26.mlp.fc2.bias" not in sd
    assert not any("inv_freq" in k for k in sd)


def test_flat_changes_go_to_their_one_owner_and_typos_name_the_nearest_field():
    cfg = get_config("tiny").replace(id_prompting=True, mse_weight=2.0, attention_backend="flex")
    assert cfg.layout.id_prompting and cfg.loss.mse_weight == 2.0 and cfg.attention_backend == "flex"
    assert cfg.loss.ce_weight == 1.0  # the other fields of a part are kept
    with pytest.raises(ValueError, match="did you mean 'id_prompting'"):
        cfg.replace(id_promting=True)
    with pytest.raises(ValueError, match="timestep_shift must be positive"):
        cfg.replace(timestep_shift=0.0)


def test_sequence_layout_is_the_one_gate_of_id_tokens():
    from unimage.script.tokenizer import ByteTokenizer
    from unimage.script.vocab import IdPrompt

    tok = ByteTokenizer()
    on, off = SequenceLayout(id_prompting=True), SequenceLayout(id_prompting=False)
    ids = on.image_id_tokens(IdPrompt(3, (1, 2), (1,)), tok)
    assert [tok.decode([i]) for i in ids] == ["<Frame3>", "<Character1>", "<Character2>", "<Environment1>"]
    assert on.image_id_tokens(None, tok) == ()
    # Off, no id is looked up: an index beyond the vocabulary is no error (it is one with the flag on).
    beyond = IdPrompt(10_000)
    assert off.image_id_tokens(beyond, tok) == ()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        on.image_id_tokens(beyond, tok)
