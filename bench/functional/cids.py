"""CIDS character identification similarity, self and cross, for one character (`reference/vistorybench.md` §4.4).

``cross_c = mean over (g in G_c, r in R_c) of sim(g, r)`` (the full G×R mean, not a max);
``self_c = mean over i<j of sim(g_i, g_j)``, 1.0 if ``|G_c| = 1``; a character never matched gets 0.0 for both
(and still counts in the average). Values are rounded to 4 dp per character, as the official code does.

Features are either one tensor [K, D] of unit-norm rows (similarity = dot product, CLIP or ArcFace) or, for the
Era B/C face ensemble, a list of per-model dicts (see :func:`ensemble_similarity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

FaceFeatures = Mapping[str, Tensor]  # model name -> [D] unit-norm feature; models that found no face are absent


def ensemble_similarity(a: Sequence[FaceFeatures], b: Sequence[FaceFeatures]) -> Tensor:
    """Era B/C "face_mix" similarity matrix [len(a), len(b)].

    Each entry is the mean over the models present in BOTH items of the cosine of their features; 0.0 if no
    model is common.
    """
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, fa in enumerate(a):
        for j, fb in enumerate(b):
            common = [m for m in fa if m in fb]
            if common:
                out[i, j] = sum(float(torch.dot(fa[m].double(), fb[m].double())) for m in common) / len(common)
    return out


def cids_from_similarity(gen_gen: Tensor, gen_ref: Tensor, decimals: int | None = 4) -> tuple[float, float]:
    """Self and cross CIDS of one character from its similarity matrices.

    Args:
        gen_gen: [G, G] similarities between the character's matched crops.
        gen_ref: [G, R] similarities between matched crops and reference features.
        decimals: round each value to this many places (the official 4); None keeps full precision.

    Returns:
        ``(self, cross)``.
    """
    G = gen_ref.shape[0]
    if gen_gen.shape != (G, G):
        raise ValueError(f"gen_gen must be [{G}, {G}], got {tuple(gen_gen.shape)}")
    if G == 0:
        return 0.0, 0.0
    cross = float(gen_ref.double().mean()) if gen_ref.numel() else 0.0
    if G == 1:
        self_ = 1.0
    else:
        iu = torch.triu_indices(G, G, offset=1)
        self_ = float(gen_gen.double()[iu[0], iu[1]].mean())
    if decimals is not None:
        self_, cross = round(self_, decimals), round(cross, decimals)
    return self_, cross


def cids(
    gen: Tensor | Sequence[FaceFeatures], ref: Tensor | Sequence[FaceFeatures], decimals: int | None = 4
) -> tuple[float, float]:
    """Self and cross CIDS of one character.

    Args:
        gen: the character's matched-crop features across the story's shots: [G, D] unit-norm rows, or a list of
            face-ensemble dicts.
        ref: its reference features: [R, D], or a list of face-ensemble dicts.
        decimals: per-character rounding (official: 4).

    Returns:
        ``(self, cross)`` raw (×100 in paper tables).

    Example:
        >>> import torch
        >>> cids(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), torch.tensor([[1.0, 0.0]]))
        (0.6, 0.8)
    """
    if isinstance(gen, Tensor) and isinstance(ref, Tensor):
        g, r = gen.double(), ref.double()
        if g.ndim != 2 or r.ndim != 2 or (g.shape[0] and r.shape[0] and g.shape[1] != r.shape[1]):
            raise ValueError(f"gen and ref must be [G, D] and [R, D], got {tuple(gen.shape)} and {tuple(ref.shape)}")
        return cids_from_similarity(g @ g.T, g @ r.T, decimals)
    if isinstance(gen, Tensor) or isinstance(ref, Tensor):
        raise TypeError("gen and ref must both be tensors or both be sequences of face-feature dicts")
    return cids_from_similarity(ensemble_similarity(gen, gen), ensemble_similarity(gen, ref), decimals)
