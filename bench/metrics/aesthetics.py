"""Aesthetics as a torchmetrics class (aggregation in :mod:`bench.functional.aesthetics`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import Metric

from bench.functional.aesthetics import aesthetics
from bench.metrics._base import add_mean_state, add_value, mean_of


class Aesthetics(Metric):
    r"""Mean aesthetic-predictor score per story, then mean over stories (raw, ≈1–10).

    ``update(scores)`` takes ONE story's [N] scores.

    Example:
        >>> import torch
        >>> m = Aesthetics()
        >>> m.update(torch.tensor([5.0, 6.0]))
        >>> m.update(torch.tensor([4.0]))
        >>> float(m.compute())
        4.75
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        add_mean_state(self, "story")

    def update(self, scores: Tensor) -> None:
        """Add one story's scores."""
        add_value(self, "story", aesthetics(scores))

    def compute(self) -> Tensor:
        """Mean over stories."""
        return mean_of(self, "story")
