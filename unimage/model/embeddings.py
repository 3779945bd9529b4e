"""Small embedding modules of BAGEL: fixed 2-D sin-cos tables, timestep embedder, ViT→LLM connector.

Reference: ByteDance-Seed/Bagel @ 056b5fd, ``modeling/bagel/modeling_utils.py`` (itself from DiT / MAE).

- 2-D sin-cos table for an S×S grid and width D: ω_k = 10000^(−k/(D/4)), k < D/4. Row ``r·S + c`` of the table is
  [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)] — the COLUMN is encoded first (the reference builds its grid w-first).
  Computed in float64, stored as float32.
- Timestep embedding: t ∈ [0, 1] is used as is (not ×1000); f_k = exp(−ln(10000)·k/128), k < 128;
  emb = [cos(t·f) | sin(t·f)] (cos first, float32), then Linear(256→D), SiLU, Linear(D→D).
- Connector: fc1 (D_vit→D), GELU-tanh, fc2 (D→D).

Shape letters: N tokens, D LLM hidden size, S positions per side.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from unimage.model.cpu_gemm import linear

__all__ = ["MLPconnector", "PositionEmbedding", "TimestepEmbedder", "sincos_2d_table", "timestep_frequencies"]


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[M] float64 positions → [M, dim] as [sin(pos·ω) | cos(pos·ω)], ω_k = 10000^(−k/(dim/2))."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    out = pos[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d_table(dim: int, side: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table [side², dim] (float32), row r·side + c encodes (column c, row r).

    Raises:
        ValueError: ``dim`` is not a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"sin-cos table width must be a multiple of 4, got {dim}")
    rows, cols = torch.meshgrid(
        torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing="ij"
    )  # [S, S] each
    emb_col = _sincos_1d(dim // 2, cols.reshape(-1))  # [S², D/2]
    emb_row = _sincos_1d(dim // 2, rows.reshape(-1))  # [S², D/2]
    return torch.cat([emb_col, emb_row], dim=1).float()


class PositionEmbedding(nn.Module):
    """Frozen 2-D sin-cos table ``pos_embed`` [S², D], looked up by flattened ids row·S + col.

    ``pos_embed`` is an ``nn.Parameter`` with ``requires_grad=False`` (as in BAGEL) so it appears in the state dict
    under the checkpoint's key. ``reset_table`` recomputes it, e.g. after building on the meta device.
    """

    def __init__(self, max_num_patch_per_side: int, hidden_size: int) -> None:
        super().__init__()
        self.max_num_patch_per_side = max_num_patch_per_side
        self.hidden_size = hidden_size
        self.pos_embed = nn.Parameter(torch.empty(max_num_patch_per_side**2, hidden_size), requires_grad=False)
        if self.pos_embed.device.type != "meta":
            self.reset_table()

    @torch.no_grad()
    def reset_table(self) -> None:
        """Fill ``pos_embed`` with the exact sin-cos table (in place, keeping dtype and device)."""
        table = sincos_2d_table(self.hidden_size, self.max_num_patch_per_side)
        self.pos_embed.copy_(table.to(self.pos_embed.dtype))

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """[N] ids → [N, D]."""
        return self.pos_embed[position_ids]


def timestep_frequencies(dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """f_k = exp(−ln(max_period)·k/(dim/2)) for k < dim/2, float32."""
    half = dim // 2
    return torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)


class TimestepEmbedder(nn.Module):
    """Flow time t ∈ [0, 1] → [N, D] via [cos | sin] features and a 2-layer SiLU MLP (``mlp.0``, ``mlp.2``)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        if frequency_embedding_size % 2:
            raise ValueError(f"frequency_embedding_size must be even, got {frequency_embedding_size}")
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
        """[N] times → [N, dim] float32 features [cos(t·f) | sin(t·f)]."""
        freqs = timestep_frequencies(dim).to(t.device)  # [dim/2]
        args = t.float()[:, None] * freqs[None]  # [N, dim/2]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """[N] times (already shifted, not ×1000) → [N, D]."""
        features = self.timestep_embedding(t, self.frequency_embedding_size)  # [N, 256]
        fc1, act, fc2 = cast(nn.Linear, self.mlp[0]), self.mlp[1], cast(nn.Linear, self.mlp[2])
        h = act(linear(features.to(fc1.weight.dtype), fc1.weight, fc1.bias))
        return linear(h, fc2.weight, fc2.bias)


class MLPconnector(nn.Module):
    """ViT features → LLM space: fc2(act(fc1(x))), act GELU-tanh for BAGEL."""

    def __init__(self, in_dim: int, out_dim: int, hidden_act: str = "gelu_pytorch_tanh") -> None:
        super().__init__()
        from transformers.activations import ACT2FN

        self.activation_fn = ACT2FN[hidden_act]
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """[N, D_vit] → [N, D]."""
        h = self.activation_fn(linear(hidden_states, self.fc1.weight, self.fc1.bias))
        return linear(h, self.fc2.weight, self.fc2.bias)
