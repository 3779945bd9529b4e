"""The results table (DESIGN.md §3.5): its columns, their printed headers and decimals, and the evaluator's files.

One row per (sweep, arm or method, split, era), written by the evaluator as ``results_row.json``; the columns are on
the paper's scales (CSD, CIDS, OCCM ×100; Alignment 0–100 = 25 × the mean of four 0–4 sub-scores; Inception and
Aesthetics raw), plus the sub-scores and counts.
"""

from __future__ import annotations

__all__ = [
    "ALIGNMENT_SUBSCORES",
    "ALL_COLUMNS",
    "CROSS_COLUMNS",
    "DECIMALS",
    "HEADERS",
    "PER_STORY_COLUMNS",
    "PER_STORY_FILE",
    "RESULTS_ROW_FILE",
    "RESULT_COLUMNS",
    "STORY_RESULTS_FILE",
    "TABLE1_COLUMNS",
]

#: The paper's Table 1 columns, in its order.
TABLE1_COLUMNS: tuple[str, ...] = ("csd_self", "cids_self", "alignment", "occm", "inception", "aesthetics")
#: The cross columns the paper did not print.
CROSS_COLUMNS: tuple[str, ...] = ("csd_cross", "cids_cross")
#: Table 1's columns, then the cross columns (the order reports print them in).
ALL_COLUMNS: tuple[str, ...] = (*TABLE1_COLUMNS, *CROSS_COLUMNS)
#: Every column, self before cross per metric (the order of the results row and the dashboard table).
RESULT_COLUMNS: tuple[str, ...] = (
    "csd_self", "csd_cross", "cids_self", "cids_cross", "alignment", "occm", "inception", "aesthetics",
)  # fmt: skip
#: Columns that are an aggregate of per-story values (Inception is pooled over all images of the split).
PER_STORY_COLUMNS: tuple[str, ...] = tuple(c for c in RESULT_COLUMNS if c != "inception")
#: Alignment's four 0–4 sub-scores as the results row names them.
ALIGNMENT_SUBSCORES: tuple[str, ...] = ("scene", "camera", "global_action", "single_action")

#: Pretty headers as the paper prints them.
HEADERS: dict[str, str] = {
    "csd_self": "CSD-self",
    "csd_cross": "CSD-cross",
    "cids_self": "CIDS-self",
    "cids_cross": "CIDS-cross",
    "alignment": "Alignment",
    "occm": "OCCM",
    "inception": "Inception",
    "aesthetics": "Aesthetics",
}

#: Decimals the paper uses per column (Table 1 prints OCCM with 1 or 2 decimals; we use 2).
DECIMALS: dict[str, int] = {
    "csd_self": 1,
    "csd_cross": 1,
    "cids_self": 1,
    "cids_cross": 1,
    "alignment": 1,
    "occm": 2,
    "inception": 2,
    "aesthetics": 2,
}

#: The evaluator's files inside its results folder (``bench.results`` lists them all).
RESULTS_ROW_FILE = "results_row.json"
PER_STORY_FILE = "per_story.json"
#: ``metrics/<metric>/story_results.json``: story id → the unit record of that metric.
STORY_RESULTS_FILE = "story_results.json"
