"""Full-size official architectures (random init) have exactly the official checkpoint shapes. Slow: ~1.5 GB RAM."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("open_clip", reason="the CSD tower needs open_clip (the csd extra)")

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


def _bn(c: int) -> int:  # affine BatchNorm parameters
    return 2 * c


@pytest.mark.slow
def test_adaface_ir101_official_key_and_parameter_counts():
    """IR-101 of mk-minchul/AdaFace net.py (`Backbone((112,112), 100, "ir")`), built on the meta device.

    Hand counts from the official layer list: stem conv+BN+PReLU = 7 keys; each of the 3+13+30+3 = 49 units has
    BN, conv, BN, PReLU, conv, BN = 18 keys, plus conv+BN = 6 in the shortcut of the first unit of stages 2-4;
    output BN2d (5) + Linear (2) + BN1d without affine (3) → 7 + 49·18 + 3·6 + 10 = 917 keys, 65,150,912 parameters.
    """
    from bench.backbones.adaface import IR_SIZES, IRBackbone, ir_config_from_state_dict

    with torch.device("meta"):
        model = IRBackbone(IR_SIZES["ir101"])
    sd = model.state_dict()
    params = 3 * 64 * 9 + _bn(64) + 64
    in_ch = 64
    for units, width in zip((3, 13, 30, 3), (64, 128, 256, 512), strict=True):
        for i in range(units):
            params += _bn(in_ch) + in_ch * width * 9 + _bn(width) + width + width * width * 9 + _bn(width)
            if i == 0 and in_ch != width:
                params += in_ch * width + _bn(width)
            in_ch = width
    params += _bn(512) + 512 * 7 * 7 * 512 + 512
    assert len(sd) == 7 + 49 * 18 + 3 * 6 + 10 == 917
    assert sum(p.numel() for p in model.parameters()) == params == 65_150_912
    assert sd["output_layer.3.weight"].shape == (512, 25088)
    assert sd["body.48.res_layer.4.weight"].shape == (512, 512, 3, 3)
    assert "body.3.shortcut_layer.0.weight" in sd and "body.1.shortcut_layer.0.weight" not in sd
    assert ir_config_from_state_dict(sd) == IR_SIZES["ir101"]


@pytest.mark.slow
def test_facenet_vggface2_official_key_and_parameter_counts():
    """InceptionResnetV1 of timesler/facenet-pytorch with pretrained='vggface2' (8631-class logits), on meta.

    Hand counts: a BasicConv2d has 6 keys (conv weight, BN weight/bias/mean/var/count); stem 6 convs; Block35 =
    6 convs + conv2d (2) = 38 keys ×5; Mixed_6a 4 convs; Block17 = 4 convs + 2 = 26 ×10; Mixed_7a 7 convs;
    Block8 = 26 ×(5+1); last_linear 1, last_bn 5, logits 2 → 716 keys; 27,910,327 parameters
    (23,482,624 without the 4,427,703 of the classifier).
    """
    from bench.backbones.facenet import FACENET_SIZES, InceptionResnetV1, facenet_config_from_state_dict

    with torch.device("meta"):
        model = InceptionResnetV1(FACENET_SIZES["vggface2"])
    sd = model.state_dict()

    def bc(i: int, o: int, kh: int, kw: int | None = None) -> int:
        return i * o * kh * (kh if kw is None else kw) + _bn(o)

    stem = bc(3, 32, 3) + bc(32, 32, 3) + bc(32, 64, 3) + bc(64, 80, 1) + bc(80, 192, 3) + bc(192, 256, 3)
    b35 = bc(256, 32, 1) * 3 + bc(32, 32, 3) * 3 + 96 * 256 + 256
    m6a = bc(256, 384, 3) + bc(256, 192, 1) + bc(192, 192, 3) + bc(192, 256, 3)
    b17 = bc(896, 128, 1) * 2 + bc(128, 128, 1, 7) + bc(128, 128, 7, 1) + 256 * 896 + 896
    m7a = bc(896, 256, 1) * 3 + bc(256, 384, 3) + bc(256, 256, 3) * 3
    b8 = bc(1792, 192, 1) * 2 + bc(192, 192, 1, 3) + bc(192, 192, 3, 1) + 384 * 1792 + 1792
    head = 1792 * 512 + _bn(512)
    logits = 512 * 8631 + 8631
    total = stem + 5 * b35 + m6a + 10 * b17 + m7a + 6 * b8 + head + logits
    assert len(sd) == 6 * 6 + 5 * 38 + 4 * 6 + 10 * 26 + 7 * 6 + 6 * 26 + 1 + 5 + 2 == 716
    assert sum(p.numel() for p in model.parameters()) == total == 27_910_327
    assert total - logits == 23_482_624
    assert sd["last_linear.weight"].shape == (512, 1792) and sd["logits.weight"].shape == (8631, 512)
    assert facenet_config_from_state_dict(sd) == FACENET_SIZES["vggface2"]


@pytest.mark.slow
def test_full_size_face_nets_run_on_112px_aligned_crops():
    from bench.backbones.adaface import IRBackbone
    from bench.backbones.facenet import InceptionResnetV1

    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        emb, norm = IRBackbone().eval()(x * 2 - 1)
        fn = InceptionResnetV1().eval()(x)  # the official call: 112 px, no resize to 160
    assert emb.shape == (2, 512) and norm.shape == (2, 1) and fn.shape == (2, 512)
    torch.testing.assert_close(fn.norm(dim=1), torch.ones(2))
