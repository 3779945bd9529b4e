"""Pure metric functions on features and scores (no networks), one file per metric; see each module's docstring."""

from bench.functional._common import ERAS, Era, check_era
from bench.functional.aesthetics import aesthetics
from bench.functional.aggregate import aggregate_cids, mean_over_stories
from bench.functional.alignment import alignment, shot_scores_mean, single_action_story
from bench.functional.cids import cids, cids_from_similarity, ensemble_similarity
from bench.functional.copy_paste import copy_paste, copy_paste_mirror
from bench.functional.csd import csd_cross, csd_self
from bench.functional.inception import inception_score, inception_score_from_probs
from bench.functional.matching import greedy_match, greedy_match_gpt_eval, hungarian_match, top_boxes
from bench.functional.occm import occm, occm_shot

__all__ = [
    "ERAS",
    "Era",
    "aesthetics",
    "aggregate_cids",
    "alignment",
    "check_era",
    "cids",
    "cids_from_similarity",
    "copy_paste",
    "copy_paste_mirror",
    "csd_cross",
    "csd_self",
    "ensemble_similarity",
    "greedy_match",
    "greedy_match_gpt_eval",
    "hungarian_match",
    "inception_score",
    "inception_score_from_probs",
    "mean_over_stories",
    "occm",
    "occm_shot",
    "shot_scores_mean",
    "single_action_story",
    "top_boxes",
]
