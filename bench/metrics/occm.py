"""OCCM as a torchmetrics class (formula in :mod:`bench.functional.occm`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torchmetrics import Metric

from bench.functional._common import check_era
from bench.functional.occm import occm
from bench.metrics._base import add_mean_state, add_value, mean_of


class OCCM(Metric):
    r"""Onstage character count matching on the ×100 scale: per shot ``100 exp(-|D-E|/(eps+E))``, mean over shots,
    then mean over stories.

    ``update(expected, detected)`` takes ONE story's per-shot counts.

    Example:
        >>> m = OCCM(era="B")
        >>> m.update([2, 1], [2, 0])
        >>> round(float(m.compute()), 2)
        68.39
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, era: str = "A", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.era = check_era(era)
        add_mean_state(self, "story")

    def update(self, expected: Sequence[int], detected: Sequence[int]) -> None:
        """Add one story."""
        add_value(self, "story", occm(expected, detected, era=self.era))

    def compute(self) -> Tensor:
        """Mean over stories."""
        return mean_of(self, "story")
