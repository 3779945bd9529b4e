"""Prompt Alignment as a torchmetrics class (formulas in :mod:`bench.functional.alignment`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from bench.functional._common import check_era
from bench.functional.alignment import shot_scores_mean, single_action_story
from bench.metrics._base import add_mean_state, add_value, mean_of

SUB_SCORES: tuple[str, ...] = ("scene", "camera", "global_action", "single_action")


class PromptAlignment(Metric):
    r"""The four judge sub-scores (0–4, story mean then dataset mean) and Alignment = 25 × their mean (0–100).

    ``update(scene, camera, global_action, single_action)`` takes ONE story: integer judge scores per shot with
    an image for the first three, and per shot the list of matched characters' scores for the last (None marks a
    shot Era C excludes).

    Example:
        >>> m = PromptAlignment(era="A")
        >>> m.update([4, 3], [3, 3], [2, 2], [[2], [2]])
        >>> out = m.compute()
        >>> round(float(out["scene"]), 3), round(float(out["alignment"]), 2)
        (3.5, 65.59)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, era: str = "A", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.era = check_era(era)
        for name in SUB_SCORES:
            add_mean_state(self, name)

    def update(
        self,
        scene: Sequence[int],
        camera: Sequence[int],
        global_action: Sequence[int],
        single_action: Sequence[Sequence[int] | None],
    ) -> None:
        """Add one story's judge scores."""
        add_value(self, "scene", shot_scores_mean(scene))
        add_value(self, "camera", shot_scores_mean(camera))
        add_value(self, "global_action", shot_scores_mean(global_action))
        add_value(self, "single_action", single_action_story(single_action, era=self.era))

    def compute(self) -> dict[str, Tensor]:
        """Sub-scores (0–4) and ``alignment`` (0–100)."""
        out = {name: mean_of(self, name) for name in SUB_SCORES}
        out["alignment"] = 25.0 * torch.stack([out[n] for n in SUB_SCORES]).mean()
        return out
