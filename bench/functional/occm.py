"""OCCM, onstage character count matching (`reference/vistorybench.md` §5).

Per shot ``exp(-|D - E| / (eps + E))`` with ``E`` the number of characters listed in the shot and ``D`` the
detected count. Story value = mean over shots, on the published ×100 scale.

| era | eps   | D (what the caller passes)                  | shots with E = 0 |
|-----|-------|---------------------------------------------|------------------|
| A   | e^-6  | listed characters the greedy matcher found  | score 1 (×100), included |
| B   | 1e-6  | listed characters the greedy matcher found  | score 100, included; story rounded to 4 dp |

Eras B and C skip shots that have no image entry; Era A has an image for every shot (positional pairing).
| C   | 1e-6  | all detector boxes in the image             | skipped; story rounded to 4 dp |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.functional._common import EPS_A, EPS_BC, check_era


def occm_shot(expected: int, detected: int, era: str = "A") -> float:
    """One shot's OCCM on the ×100 scale; NaN for an Era C shot with no listed character (it is skipped)."""
    era = check_era(era)
    if expected < 0 or detected < 0:
        raise ValueError(f"counts must be >= 0, got expected={expected}, detected={detected}")
    if expected == 0:
        # Eras A/B: D counts matched LISTED characters, so E = 0 means a perfect shot; Era C skips the shot.
        return float("nan") if era == "C" else 100.0
    eps = EPS_A if era == "A" else EPS_BC
    return 100.0 * math.exp(-abs(detected - expected) / (eps + expected))


def occm(expected: Sequence[int], detected: Sequence[int], era: str = "A") -> float:
    """A story's OCCM on the published ×100 scale.

    Args:
        expected: per shot, the number of characters listed in ``Characters Appearing``.
        detected: per shot, the detected count (matched listed characters for Eras A/B, all boxes for Era C;
            a shot whose image is missing has 0).
        era: ``"A"``, ``"B"`` or ``"C"``.

    Returns:
        Mean over the counted shots ×100; NaN if no shot counts (Era C story without listed characters).

    Example:
        >>> round(occm([1, 2, 3], [0, 1, 2], era="B"), 2)
        56.36
    """
    era = check_era(era)
    if len(expected) != len(detected):
        raise ValueError(f"expected and detected must have one entry per shot, got {len(expected)} and {len(detected)}")
    scores = [s for e, d in zip(expected, detected) if not math.isnan(s := occm_shot(e, d, era))]
    if not scores:
        return float("nan")
    value = sum(scores) / len(scores)
    return round(value, 4) if era in ("B", "C") else value
