"""Fixed 2-D sin-cos tables, timestep embedder and connector against hand-written formulas (bagel-compat §2.3, §3.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unimage.model.embeddings import MLPconnector, PositionEmbedding, TimestepEmbedder, sincos_2d_table


def _table_by_formula(dim: int, side: int) -> np.ndarray:
    """Row r·S + c = [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)], ω_k = 10000^(−k/(D/4)), in float64 loops."""
    q = dim // 4
    omega = np.array([10000.0 ** (-k / q) for k in range(q)])
    out = np.zeros((side * side, dim))
    for r in range(side):
        for c in range(side):
            out[r * side + c] = np.concatenate(
                [np.sin(c * omega), np.cos(c * omega), np.sin(r * omega), np.cos(r * omega)]
            )
    return out


@pytest.mark.parametrize(("dim", "side"), [(64, 8), (32, 5), (3584, 4)])
def test_sincos_table_matches_formula(dim: int, side: int) -> None:
    table = sincos_2d_table(dim, side)
    assert table.dtype == torch.float32 and table.shape == (side * side, dim)
    expected = torch.from_numpy(_table_by_formula(dim, side)).float()
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-6)


def test_sincos_table_column_first() -> None:
    # pid 1 is (row 0, column 1): the first quarter holds sin(1·ω), the third quarter sin(0) = 0.
    table = sincos_2d_table(16, 4)
    assert table[1, 0].item() == pytest.approx(math.sin(1.0))
    assert table[1, 8:12].abs().max().item() == 0.0
    assert table[4, 8].item() == pytest.approx(math.sin(1.0))  # pid 4 is (row 1, column 0)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d_table(18, 4)


def test_position_embedding_is_frozen_and_recomputable() -> None:
    pe = PositionEmbedding(6, 32)
    assert pe.pos_embed.requires_grad is False
    assert list(dict(pe.state_dict())) == ["pos_embed"]
    ids = torch.tensor([0, 7, 35])
    torch.testing.assert_close(pe(ids), sincos_2d_table(32, 6)[ids])
    with torch.device("meta"):
        meta = PositionEmbedding(6, 32)
    assert meta.pos_embed.is_meta
    meta.to_empty(device="cpu")
    meta.reset_table()
    torch.testing.assert_close(meta.pos_embed, pe.pos_embed, rtol=0, atol=0)


def test_timestep_embedding_cos_first_unscaled() -> None:
    t = torch.tensor([0.0, 0.5, 1.0])
    emb = TimestepEmbedder.timestep_embedding(t, 256)
    assert emb.shape == (3, 256)
    # t = 0: cos = 1, sin = 0
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))
    for k in (0, 1, 64, 127):
        f = math.exp(-math.log(10000) * k / 128)
        assert emb[1, k].item() == pytest.approx(math.cos(0.5 * f), abs=1e-6)
        assert emb[1, 128 + k].item() == pytest.approx(math.sin(0.5 * f), abs=1e-6)
        assert emb[2, 128 + k].item() == pytest.approx(math.sin(f), abs=1e-6)


def test_timestep_embedder_mlp_layout() -> None:
    te = TimestepEmbedder(48)
    keys = {k: tuple(v.shape) for k, v in te.state_dict().items()}
    assert keys == {"mlp.0.weight": (48, 256), "mlp.0.bias": (48,), "mlp.2.weight": (48, 48), "mlp.2.bias": (48,)}
    t = torch.tensor([0.25])
    feat = TimestepEmbedder.timestep_embedding(t)
    expected = te.mlp[2](torch.nn.functional.silu(te.mlp[0](feat)))
    torch.testing.assert_close(te(t), expected)


def test_connector_gelu_tanh() -> None:
    conn = MLPconnector(12, 20)
    x = torch.randn(5, 12)
    h = conn.fc1(x)
    gelu_tanh = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(conn(x), conn.fc2(gelu_tanh), rtol=1e-5, atol=1e-6)
    assert set(conn.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
