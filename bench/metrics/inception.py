"""Inception Score (one split, pooled) as a torchmetrics class (formula in :mod:`bench.functional.inception`).

Not torchmetrics' own ``InceptionScore``: that one bundles its feature extractor and shuffles into 10 splits,
while ViStoryBench uses torchvision's Inception-v3 logits and one split over the pooled run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from bench.functional.inception import inception_score_from_probs


class InceptionScore(Metric):
    r"""``IS = exp(mean_i KL(p(y|x_i) || p̄(y)))`` over every image added, one split.

    ``update(logits)`` takes [N, C] classifier logits of any batch of images (across stories).

    Example:
        >>> import torch
        >>> m = InceptionScore()
        >>> m.update(torch.tensor([[10.0, 0.0]]))
        >>> m.update(torch.tensor([[0.0, 10.0]]))
        >>> round(float(m.compute()), 3)
        1.999
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    probs: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("probs", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor) -> None:
        """Add a batch of logits [N, C]."""
        if logits.ndim != 2:
            raise ValueError(f"logits must be [N, C], got shape {tuple(logits.shape)}")
        self.probs.append(torch.softmax(logits.double(), dim=1))

    def compute(self) -> Tensor:
        """The pooled IS."""
        return torch.tensor(inception_score_from_probs(dim_zero_cat(self.probs)), dtype=torch.float64)
