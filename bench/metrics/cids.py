"""CIDS self and cross character similarity as a torchmetrics class (formulas in :mod:`bench.functional.cids`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torchmetrics import Metric

from bench.functional._common import check_era
from bench.functional.cids import cids
from bench.metrics._base import add_mean_state, add_value, mean_of


class CIDS(Metric):
    r"""CIDS self and cross, with the era's aggregation.

    Per character ``c``: ``cross_c`` = mean of the G×R similarity matrix, ``self_c`` = mean over crop pairs i<j
    (1.0 for one crop, 0.0 for none). Era A pools every (story, character) of the split; Eras B/C average
    characters within a story, then stories.

    ``update(gen, ref)`` takes ONE story: per character, its matched-crop features [G_c, D] and its reference
    features [R_c, D] (unit-norm rows).

    Example:
        >>> import torch
        >>> m = CIDS(era="A")
        >>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> m.update([torch.cat([a, a]), torch.zeros(0, 2)], [a, b])
        >>> {k: float(v) for k, v in m.compute().items()}
        {'self': 0.5, 'cross': 0.5}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, era: str = "A", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.era = check_era(era)
        add_mean_state(self, "self")
        add_mean_state(self, "cross")

    def update(self, gen: Sequence[Tensor], ref: Sequence[Tensor]) -> None:
        """Add one story's characters (``gen[c]`` [G_c, D], ``ref[c]`` [R_c, D])."""
        if len(gen) != len(ref):
            raise ValueError(f"gen and ref must list the same characters, got {len(gen)} and {len(ref)}")
        values = [cids(g, r) for g, r in zip(gen, ref)]
        if not values:
            return
        if self.era == "A":
            for s, c in values:
                add_value(self, "self", s)
                add_value(self, "cross", c)
        else:
            add_value(self, "self", sum(s for s, _ in values) / len(values))
            add_value(self, "cross", sum(c for _, c in values) / len(values))

    def compute(self) -> dict[str, Tensor]:
        """``{"self": ..., "cross": ...}`` raw (×100 in paper tables)."""
        return {"self": mean_of(self, "self"), "cross": mean_of(self, "cross")}
