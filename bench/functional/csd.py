"""CSD style similarity, self and cross (`reference/vistorybench.md` §3).

Inputs are CSD style embeddings, already L2-normalised, so cosine = dot product. Values are raw cosines in
[-1, 1]; paper tables show them ×100.
"""

from __future__ import annotations

import torch
from torch import Tensor


def csd_self(embeddings: Tensor) -> float:
    """Self-CSD of one story: mean over unordered pairs i<j of ``cos(e_i, e_j)``.

    Args:
        embeddings: [N, D] unit-norm style embeddings of every generated image of the story.

    Returns:
        The mean pairwise cosine; 0.0 with fewer than two images (the official value, which still enters the mean).

    Example:
        >>> import torch
        >>> csd_self(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
        0.3333333333333333
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    if n < 2:
        return 0.0
    e = embeddings.double()
    sim = e @ e.T  # [N, N]
    iu = torch.triu_indices(n, n, offset=1)
    return float(sim[iu[0], iu[1]].mean())


def csd_cross(ref: Tensor, gen: Tensor) -> float:
    """Cross-CSD of one story: mean over shots of ``<ref_i, gen_i>``.

    Args:
        ref: [N, D] reference embedding per shot (Eras A/B: the first reference image of the first listed
            character; Era C: the MEAN of the first-reference embeddings of all listed characters, which by
            linearity gives the mean of their cosines).
        gen: [N, D] unit-norm embedding of each shot's generated image.

    Returns:
        The mean; NaN for a story with no shot image.

    Example:
        >>> import torch
        >>> round(csd_cross(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.6, 0.8]])), 6)
        0.8
    """
    if ref.shape != gen.shape or ref.ndim != 2:
        raise ValueError(f"ref and gen must both be [N, D], got {tuple(ref.shape)} and {tuple(gen.shape)}")
    if ref.shape[0] == 0:
        return float("nan")
    return float((ref.double() * gen.double()).sum(dim=1).mean())
