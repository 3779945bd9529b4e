"""Full-size official architectures (random init) have exactly the official checkpoint shapes. Slow: ~1.5 GB RAM."""

from __future__ import annotations

import pytest
import torch

from bench.backbones.aesthetic import build_head
from bench.backbones.csd import CSD_SIZES, CSDConfig, CSDModel


@pytest.mark.slow
def test_csd_vit_large_shapes_and_inferred_config():
    model = CSDModel(CSD_SIZES["vit_large"])
    sd = model.state_dict()
    assert sd["backbone.conv1.weight"].shape == (1024, 3, 14, 14)
    assert sd["backbone.positional_embedding"].shape == (257, 1024)
    assert sd["backbone.transformer.resblocks.23.attn.in_proj_weight"].shape == (3072, 1024)
    assert sd["backbone.transformer.resblocks.23.mlp.c_fc.weight"].shape == (4096, 1024)
    assert sd["last_layer_style"].shape == sd["last_layer_content"].shape == (1024, 768)
    assert "backbone.proj" not in sd
    assert CSDConfig.from_state_dict(sd) == CSD_SIZES["vit_large"]
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 768)


@pytest.mark.slow
def test_siglip_so400m_with_official_head_dims():
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
    )
    tower = SiglipVisionModel(cfg).eval()
    dims = [1152, 1024, 128, 64, 16, 1]
    head = build_head(
        {f"scoring_head.{i}.weight": torch.zeros(dims[n + 1], dims[n]) for n, i in enumerate((0, 2, 4, 6, 8))}
        | {f"scoring_head.{i}.bias": torch.zeros(dims[n + 1]) for n, i in enumerate((0, 2, 4, 6, 8))}
    )
    with torch.no_grad():
        pooled = tower(pixel_values=torch.rand(1, 3, 378, 378)).pooler_output  # 378 px: 27×27 patches, no interpolation
    assert pooled.shape == (1, 1152)
    assert head(pooled).shape == (1, 1)
