"""Shared bits of the functional metrics: the era switch and small helpers."""

from __future__ import annotations

import math
from typing import Literal, cast

Era = Literal["A", "B", "C"]
ERAS: tuple[str, ...] = ("A", "B", "C")

# Era A's epsilon in OCCM and in the single-character-action mean is e^-6 (`gpt_eval.py`, `single_char_action_avg.py`).
EPS_A = math.exp(-6)
EPS_BC = 1e-6


def check_era(era: str) -> Era:
    """Return ``era`` if it is one of ``A``, ``B``, ``C``; raise ``ValueError`` naming the value otherwise."""
    if era not in ERAS:
        raise ValueError(f"era must be one of {ERAS}, got {era!r}")
    return cast(Era, era)


def mean(values: list[float]) -> float:
    """Arithmetic mean; NaN for an empty list (callers decide whether an empty story counts)."""
    return sum(values) / len(values) if values else float("nan")
