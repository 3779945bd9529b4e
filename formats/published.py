"""Published numbers that our measured rows are printed beside.

Sources (values copied from the papers' tables, not computed):
- UniMAGE paper, Table 1 (ViStoryBench, full split, Era A conventions): `../shared/seed/` §4.2.
- ViStoryBench Era A full-split table (arXiv v3 / site 7f32450), `reference/vistorybench.md` §10.1, which UniMAGE's
  baseline rows equal after rounding; it also carries the cross columns and the sub-scores UniMAGE did not print.

Scales are the paper's: CSD, CIDS and OCCM ×100; Alignment 0–100 (25 × mean of four 0–4 sub-scores);
Inception and Aesthetics raw.
Column names, headers and decimals: `formats.results`. A leaf module (``reports`` and ``dashboard`` both print these rows).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "UNIMAGE_TABLE1",
    "VISTORYBENCH_ERA_A_FULL",
    "PublishedRow",
    "published_row",
]


@dataclass(frozen=True)
class PublishedRow:
    """One published row. `values` holds only the columns the source printed."""

    method: str
    values: dict[str, float]
    source: str
    split: str = "full"
    era: str = "A"


_T1 = "UniMAGE Table 1"

#: UniMAGE Table 1, in the paper's row order.
UNIMAGE_TABLE1: tuple[PublishedRow, ...] = (
    PublishedRow(
        "TheaterGen",
        {"csd_self": 40.4, "cids_self": 53.3, "alignment": 37.9, "occm": 84.4, "inception": 14.88, "aesthetics": 4.90},
        _T1,
    ),
    PublishedRow(
        "Story-Adapter",
        {"csd_self": 73.7, "cids_self": 56.4, "alignment": 58.9, "occm": 84.9, "inception": 13.73, "aesthetics": 4.89},
        _T1,
    ),
    PublishedRow(
        "Story2Board",
        {"csd_self": 55.2, "cids_self": 51.4, "alignment": 56.7, "occm": 85.5, "inception": 15.26, "aesthetics": 5.11},
        _T1,
    ),
    PublishedRow(
        "StoryDiffusion",
        {"csd_self": 63.5, "cids_self": 57.0, "alignment": 59.7, "occm": 85.3, "inception": 15.71, "aesthetics": 5.76},
        _T1,
    ),
    PublishedRow(
        "SEED-Story",
        {"csd_self": 74.9, "cids_self": 48.7, "alignment": 29.5, "occm": 85.9, "inception": 6.33, "aesthetics": 3.84},
        _T1,
    ),
    PublishedRow(
        "UniMAGE w/o ID-P",
        {"csd_self": 52.6, "cids_self": 55.6, "alignment": 62.5, "occm": 87.00, "inception": 12.06, "aesthetics": 4.44},
        _T1,
    ),
    PublishedRow(
        "UniMAGE",
        {"csd_self": 59.0, "cids_self": 59.2, "alignment": 80.8, "occm": 88.07, "inception": 12.97, "aesthetics": 4.55},
        _T1,
    ),
)

_VA = "ViStoryBench Era A (site 7f32450)"


def _va(
    method: str, cx: float, cs: float, ix: float, is_: float, al: float, oc: float, inc: float, ae: float
) -> PublishedRow:
    values = {
        "csd_cross": cx,
        "csd_self": cs,
        "cids_cross": ix,
        "cids_self": is_,
        "alignment": al,
        "occm": oc,
        "inception": inc,
        "aesthetics": ae,
    }
    return PublishedRow(method, values, _VA)


#: ViStoryBench's own Era A full-split rows for the baselines of Table 1 (with cross columns).
VISTORYBENCH_ERA_A_FULL: tuple[PublishedRow, ...] = (
    _va("StoryDiffusion", 28.62, 63.49, 33.29, 56.96, 59.724, 85.3, 15.713, 5.763),
    _va("Story-Adapter", 33.33, 73.72, 33.39, 56.37, 58.892, 84.9, 13.725, 4.886),
    _va("TheaterGen", 19.89, 40.37, 28.79, 53.29, 37.923, 84.4, 14.882, 4.897),
    _va("SEED-Story", 23.34, 74.86, 22.08, 48.69, 29.499, 85.9, 6.325, 3.836),
    _va("UNO", 40.80, 61.03, 44.56, 59.91, 70.430, 89.8, 12.398, 5.232),
)


def published_row(method: str, table: tuple[PublishedRow, ...] = UNIMAGE_TABLE1) -> PublishedRow | None:
    """The published row whose method name matches `method` (case- and punctuation-insensitive), if any."""
    key = _norm(method)
    for row in table:
        if _norm(row.method) == key:
            return row
    return None


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())
