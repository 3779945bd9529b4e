"""NaViT SigLIP encoder: key names, numerical equality with transformers' SiglipVisionModel, packing, config json."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from unimage.model.image_transforms import flattened_position_ids, patchify
from unimage.model.vit import (
    VIT_SIZES,
    SiglipNavit,
    ViTConfig,
    conv_patch_weight_to_linear,
    linear_patch_weight_to_conv,
)

TINY = VIT_SIZES["tiny"]  # 32-dim, 2 layers, S = 8


def _hf_model(cfg: ViTConfig, layers: int) -> SiglipVisionModel:
    hf_cfg = SiglipVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=cfg.num_attention_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_act=cfg.hidden_act,
        layer_norm_eps=cfg.layer_norm_eps,
        vision_use_head=False,
    )
    model = SiglipVisionModel(hf_cfg).eval()
    with torch.no_grad():  # non-trivial norms so that LayerNorm weights matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _vm(hf: SiglipVisionModel) -> torch.nn.Module:
    """The vision transformer inside transformers' model (nested as `vision_model` before transformers 5)."""
    return getattr(hf, "vision_model", hf)


def _copy_from_hf(ours: SiglipNavit, hf: SiglipVisionModel) -> None:
    """Map transformers' SigLIP (Conv2d patch embedding) onto ours (Linear), keeping only our layer count."""
    hf_sd = {f"vision_model.{k}": v for k, v in _vm(hf).state_dict().items()}
    state = {}
    for key in ours.state_dict():
        if key == "vision_model.embeddings.patch_embedding.weight":
            state[key] = conv_patch_weight_to_linear(hf_sd[key])
        else:
            state[key] = hf_sd[key]
    ours.load_state_dict(state, strict=True)


def test_parameter_names_match_bagel_checkpoint() -> None:
    cfg = VIT_SIZES["bagel-7b-mot"]
    with torch.device("meta"):
        model = SiglipNavit(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["vision_model.embeddings.patch_embedding.weight"] == (1152, 588)
    assert shapes["vision_model.embeddings.patch_embedding.bias"] == (1152,)
    assert shapes["vision_model.embeddings.position_embedding.weight"] == (4900, 1152)
    assert shapes["vision_model.encoder.layers.25.mlp.fc1.weight"] == (4304, 1152)
    assert shapes["vision_model.encoder.layers.25.self_attn.out_proj.bias"] == (1152,)
    assert shapes["vision_model.post_layernorm.weight"] == (1152,)
    assert "vision_model.encoder.layers.26.mlp.fc1.weight" not in shapes
    per_layer = {k.split(".", 4)[4] for k in shapes if k.startswith("vision_model.encoder.layers.0.")}
    assert per_layer == {
        f"{m}.{p}"
        for m in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "layer_norm1",
            "layer_norm2",
            "mlp.fc1",
            "mlp.fc2",
        )
        for p in ("weight", "bias")
    }
    assert len(shapes) == 3 + 26 * 16 + 2
    # 0.403 B numbers (bagel-compat §1.4 "ViT is 0.403 B"), by the shape formulas
    d, i = 1152, 4304
    per_layer = 4 * (d * d + d) + 4 * d + (i * d + i) + (d * i + d)
    expected = (d * 588 + d) + 4900 * d + 26 * per_layer + 2 * d
    assert expected == 402_552_736
    assert sum(v.numel() for v in model.state_dict().values()) == expected


def test_matches_transformers_siglip_penultimate_layer() -> None:
    """Ours with L layers == transformers' SigLIP with L+1 layers, hidden state after layer L, then post_layernorm."""
    hf = _hf_model(TINY, TINY.num_hidden_layers + 1)
    ours = SiglipNavit(TINY).eval()
    _copy_from_hf(ours, hf)
    image = torch.randn(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        out = hf(pixel_values=image, output_hidden_states=True)
        expected = _vm(hf).post_layernorm(out.hidden_states[-2])[0]  # [S², D]
        s = TINY.num_patches_per_side
        got = ours(patchify(image[0], TINY.patch_size), flattened_position_ids(s, s, s), torch.tensor([0, s * s]))
    assert got.shape == (s * s, TINY.hidden_size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_non_square_image_uses_row_times_side_position_ids() -> None:
    """A 3×5-patch image: transformers' conv patch embedding + position rows r·S + c, then its encoder layers."""
    hf = _hf_model(TINY, TINY.num_hidden_layers)
    ours = SiglipNavit(TINY).eval()
    _copy_from_hf(ours, hf)
    p, s = TINY.patch_size, TINY.num_patches_per_side
    image = torch.randn(3, 3 * p, 5 * p)
    with torch.no_grad():
        emb = _vm(hf).embeddings.patch_embedding(image[None]).flatten(2).transpose(1, 2)  # [1, 15, D]
        rows = [r * s + c for r in range(3) for c in range(5)]
        emb = emb + _vm(hf).embeddings.position_embedding.weight[rows][None]
        h = emb
        for layer in _vm(hf).encoder.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h  # a 1-tuple under transformers 4.x
        expected = _vm(hf).post_layernorm(h)[0]
        got = ours(patchify(image, p), flattened_position_ids(3, 5, s), torch.tensor([0, 15]))
    assert flattened_position_ids(3, 5, s).tolist() == rows
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_packed_images_do_not_attend_to_each_other() -> None:
    model = SiglipNavit(TINY).eval()
    p, s = TINY.patch_size, TINY.num_patches_per_side
    a, b = torch.randn(3, 2 * p, 4 * p), torch.randn(3, 5 * p, 3 * p)
    xa, xb = patchify(a, p), patchify(b, p)
    ia, ib = flattened_position_ids(2, 4, s), flattened_position_ids(5, 3, s)
    c = torch.randn(3, 2 * p, 4 * p)  # same length as `a`: batched together with it
    xc = patchify(c, p)
    with torch.no_grad():
        alone_a = model(xa, ia, torch.tensor([0, 8]))
        alone_b = model(xb, ib, torch.tensor([0, 15]))
        alone_c = model(xc, ia, torch.tensor([0, 8]))
        packed = model(
            torch.cat([xa, xb, xc]), torch.cat([ia, ib, ia]), torch.tensor([0, 8, 23, 31], dtype=torch.int32)
        )
    torch.testing.assert_close(packed, torch.cat([alone_a, alone_b, alone_c]), rtol=1e-5, atol=1e-5)
    # and the packing really matters: without the mask the first image would change
    with torch.no_grad():
        leaky = model(torch.cat([xa, xb]), torch.cat([ia, ib]), torch.tensor([0, 23]))
    assert (leaky[:8] - alone_a).abs().max() > 1e-3


def test_patch_weight_conversion_round_trip_and_order() -> None:
    conv = torch.nn.Conv2d(3, 6, kernel_size=14, stride=14)
    image = torch.randn(3, 14, 28)
    linear_w = conv_patch_weight_to_linear(conv.weight)
    assert linear_w.shape == (6, 588)
    via_linear = patchify(image, 14) @ linear_w.T + conv.bias  # [2, 6]
    via_conv = conv(image[None])[0].flatten(1).T  # [2, 6]
    torch.testing.assert_close(via_linear, via_conv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear_patch_weight_to_conv(linear_w, 14), conv.weight)


def test_vit_config_json_layer_count_offset(tmp_path) -> None:
    path = tmp_path / "vit_config.json"
    VIT_SIZES["bagel-7b-mot"].to_json(path)
    data = json.loads(path.read_text())
    assert data["num_hidden_layers"] == 27  # as in the released vit_config.json
    assert data["rope"] is False
    loaded = ViTConfig.from_json(path)
    assert loaded == VIT_SIZES["bagel-7b-mot"]
    assert loaded.num_hidden_layers == 26


def test_vit_config_json_errors(tmp_path) -> None:
    path = tmp_path / "vit_config.json"
    path.write_text(json.dumps({"hidden_size": 32, "num_attention_heads": 4, "rope": True, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="rope"):
        ViTConfig.from_json(path)
    path.write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(ValueError, match="num_hidden_layers"):
        ViTConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"vit_config\.json"):
        ViTConfig.from_json(path)
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig(hidden_size=30, num_attention_heads=4)


def test_bad_inputs_are_rejected() -> None:
    model = SiglipNavit(TINY)
    x = torch.randn(4, TINY.patch_dim)
    with pytest.raises(ValueError, match="cu_seqlens"):
        model(x, torch.arange(4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="position_ids"):
        model(x, torch.arange(3), torch.tensor([0, 4]))
