"""Aesthetics aggregation (`reference/vistorybench.md` §7): story = mean of the predictor's scores over every
shot image found; dataset = mean over stories. Scores are raw (≈1–10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def aesthetics(scores: Tensor | Sequence[float]) -> float:
    """A story's aesthetic value: the mean score of its images; NaN for no image.

    Example:
        >>> aesthetics([5.0, 6.0, 4.0])
        5.0
    """
    t = torch.as_tensor(scores, dtype=torch.float64).flatten()
    return float(t.mean()) if t.numel() else float("nan")
