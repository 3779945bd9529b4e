"""Prompt Alignment aggregation (`reference/vistorybench.md` §6.3).

The judge gives integer 0–4 scores per shot for scene, camera and global character action, and per matched
character for single character action. Alignment = 25 × mean of the four dataset-level sub-scores (0–100), the
scale of the paper's Table 1 (UNO full: 3.47, 3.062, 2.617, 2.121 → 70.43).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.functional._common import EPS_A, check_era


def alignment(scene: float, camera: float, global_action: float, single_action: float) -> float:
    """Alignment Score on 0–100 from the four 0–4 sub-scores.

    Example:
        >>> round(alignment(3.47, 3.062, 2.617, 2.121), 4)  # published 70.430 from the unrounded sub-scores
        70.4375
    """
    for name, v in (
        ("scene", scene),
        ("camera", camera),
        ("global_action", global_action),
        ("single_action", single_action),
    ):
        if not 0.0 <= v <= 4.0:
            raise ValueError(f"{name} must be a 0-4 score, got {v}")
    return 25.0 * (scene + camera + global_action + single_action) / 4.0


def shot_scores_mean(scores: Sequence[int | float]) -> float:
    """A story's scene / camera / global-action value: mean over shots with an image; NaN if none."""
    return sum(scores) / len(scores) if scores else float("nan")


def single_action_story(per_shot: Sequence[Sequence[int] | None], era: str = "A") -> float:
    """A story's single-character-action value from per-shot lists of the matched characters' scores.

    Args:
        per_shot: for each shot, the judge scores of its matched characters (empty if none matched); None marks a
            shot Era C excludes (no listed character, or the detector found no box).
        era: ``A`` — shot = sum / (n + e^-6) (0 when nothing matched), story = mean rounded to 4 dp;
            ``B`` — shot = round(mean) (banker's rounding, 0 if none), story = round(mean) → an integer;
            ``C`` — as B after dropping the None shots.

    Example:
        >>> single_action_story([[3, 2], [], [4]], era="B")
        2.0
    """
    era = check_era(era)
    if era == "A":
        shots = [sum(s) / (len(s) + EPS_A) for s in (p or [] for p in per_shot)]
        return round(sum(shots) / len(shots), 4) if shots else float("nan")
    kept = [p for p in per_shot if p is not None] if era == "C" else [p or [] for p in per_shot]
    if not kept:
        return float("nan")
    ints = [round(sum(s) / len(s)) if s else 0 for s in kept]
    return float(round(sum(ints) / len(ints)))
