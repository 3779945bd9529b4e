"""Dataset-level aggregation of story values, per era (`reference/vistorybench.md` §4.4, §9).

Era A pools CIDS over every (story, character) entry of the split; Eras B/C first average characters within a
story, then average stories. Every other metric is a plain mean over stories (NaN stories are skipped, as the
official code skips stories without images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bench.functional._common import check_era


def mean_over_stories(values: Mapping[str, float] | Sequence[float]) -> float:
    """Unweighted mean over stories of finite values; NaN if none."""
    vals = list(values.values()) if isinstance(values, Mapping) else list(values)
    finite = [v for v in vals if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def aggregate_cids(per_story: Mapping[str, Sequence[float]], era: str = "A") -> float:
    """Dataset CIDS (self or cross) from per-story lists of per-character values.

    Example:
        >>> data = {"01": [1.0, 0.0, 0.5], "02": [0.2]}
        >>> aggregate_cids(data, era="A"), aggregate_cids(data, era="B")
        (0.425, 0.35)
    """
    era = check_era(era)
    if era == "A":
        pooled = [v for chars in per_story.values() for v in chars]
        return sum(pooled) / len(pooled) if pooled else float("nan")
    return mean_over_stories([sum(c) / len(c) for c in per_story.values() if c])
