"""CSD self and cross style similarity as torchmetrics classes (formulas in :mod:`bench.functional.csd`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import Metric

from bench.functional.csd import csd_cross, csd_self
from bench.metrics._base import add_mean_state, add_value, mean_of


class CSDSelf(Metric):
    r"""Self-CSD: per story the mean pairwise cosine of its images' style embeddings, then the mean over stories.

    .. math:: \mathrm{CSD_{self}} = \frac{1}{S}\sum_s \frac{2}{n_s(n_s-1)}\sum_{i<j} e_{s,i}^\top e_{s,j}

    ``update(embeddings)`` takes ONE story's [N, D] unit-norm embeddings (a story with N < 2 scores 0.0).

    Example:
        >>> import torch
        >>> m = CSDSelf()
        >>> m.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> m.update(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        >>> float(m.compute())
        0.5
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        add_mean_state(self, "story")

    def update(self, embeddings: Tensor) -> None:
        """Add one story ([N, D] embeddings)."""
        add_value(self, "story", csd_self(embeddings))

    def compute(self) -> Tensor:
        """Mean over stories (raw cosine; ×100 in paper tables)."""
        return mean_of(self, "story")


class CSDCross(Metric):
    r"""Cross-CSD: per story the mean over shots of ``<ref_i, gen_i>``, then the mean over stories.

    ``update(ref, gen)`` takes ONE story's [N, D] per-shot reference and generated embeddings.

    Example:
        >>> import torch
        >>> m = CSDCross()
        >>> m.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]]))
        >>> round(float(m.compute()), 6)
        0.6
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        add_mean_state(self, "story")

    def update(self, ref: Tensor, gen: Tensor) -> None:
        """Add one story."""
        add_value(self, "story", csd_cross(ref, gen))

    def compute(self) -> Tensor:
        """Mean over stories with at least one shot image."""
        return mean_of(self, "story")
