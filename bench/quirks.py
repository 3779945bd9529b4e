"""The official evaluator's undocumented behaviours, per era, and the ``--fix`` switches that correct them.

Table 1 is only worth reproducing if we give the number the official ViStoryBench code gives on the same images,
so every era reproduces its official code exactly by default, quirks included. Each quirk below is one named
switch: ``EvalConfig(fixes=("gpt-eval-matching", ...))`` / ``unimage bench evaluate --fix gpt-eval-matching``
turns on the corrected behaviour. A result made with any active fix is marked non-comparable (results row,
provenance, Table 1 report), because it is no longer the number the official code gives.

Sources: ``github.com/ViStoryBench/vistorybench`` at a4933ed (Era A), e67e43e (Era B), 514cc31 (Era C); see
`reference/vistorybench.md` and the README's quirk table (generated from :data:`QUIRKS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.functional._common import Era


@dataclass(frozen=True)
class Quirk:
    """One official behaviour we reproduce by default.

    Attributes:
        name: the switch (``--fix <name>``) that replaces it with the corrected behaviour.
        eras: the eras whose official code has it (the switch does nothing elsewhere).
        official: what the official code does (reproduced by default).
        fixed: what the switch does instead.
        where: the official file that has it.
    """

    name: str
    eras: tuple[Era, ...]
    official: str
    fixed: str
    where: str


QUIRKS: dict[str, Quirk] = {
    q.name: q
    for q in (
        Quirk(
            "gpt-eval-matching",
            ("A",),
            "OCCM / single-action greedy matcher checks conflicts at the position in the shrinking candidate list, "
            "not at the original box index ([[.9,.8,.1],[.95,.2,.7]] -> [None, 0])",
            "conflicts checked at the box itself ([1, 0])",
            "bench/prompt_align/gpt_eval.py",
        ),
        Quirk(
            "gpt-eval-crops",
            ("A",),
            "OCCM / single-action crops: boxes in the detector's unsorted order, not clipped to the image (PIL "
            "pads black); the reference crop is the first such box, with no full-image fallback",
            "top-scoring box, clipped crops, full reference image when nothing is detected",
            "bench/prompt_align/gpt_eval.py",
        ),
        Quirk(
            "drop-empty-boxes-first",
            ("A", "B", "C"),
            "top-k boxes picked by score first, boxes under 1 px dropped afterwards (fewer crops than k; a "
            "reference whose best box is empty gets no crop)",
            "boxes under 1 px dropped first, then the top k picked",
            "bench/content/cids.py, cids_evaluator.py",
        ),
        Quirk(
            "align-face-rows",
            ("A", "B"),
            "CIDS matching when some crops have no face: the feature list drops them, so similarity row k is the "
            "k-th crop with a face, but crop k of the full list is taken (and a matched crop without a face is "
            "left out of the character's crops)",
            "rows stay aligned with boxes; crops without a face are never matched",
            "bench/content/cids.py, cids_evaluator.py (get_char_feat)",
        ),
        Quirk(
            "arcface-threshold-reset",
            ("A",),
            "ArcFace lowers its detection threshold (0.45, 0.35, ...) while a crop has no face and never resets it "
            "within one call: after a crop with no face at all, every later crop of that call (a shot's boxes, a "
            "character's references, its matched crops) gets no face",
            "the threshold restarts at 0.45 for every crop",
            "bench/content/cids.py (get_char_feat)",
        ),
        Quirk(
            "unrounded-story-means",
            ("B", "C"),
            "per-story CIDS means (cids_self_mean, cids_cross_mean) rounded to 4 decimals before the dataset mean",
            "full precision",
            "bench/content/cids_evaluator.py",
        ),
        Quirk(
            "occm-empty-story-nan",
            ("B", "C"),
            "a story with no counted OCCM shot (Era C: no listed character) records OCCM 0.0, which enters the "
            "dataset mean",
            "NaN, left out of the dataset mean",
            "bench/content/cids_evaluator.py",
        ),
        Quirk(
            "cids-all-ref-formats",
            ("A", "B", "C"),
            "CIDS reads only '**/*.jpg' reference images (case-sensitive, recursive); .png/.jpeg refs are ignored",
            "every .jpg/.jpeg/.png reference, as the dataset loader reads them",
            "bench/content/cids.py, cids_evaluator.py",
        ),
        Quirk(
            "copy-paste-mirror-no-face",
            ("C",),
            "copy-paste: when the mirrored primary reference gives no feature, the one feature is duplicated "
            "(copy rate exactly 0.5)",
            "similarity 0 for the missing mirror feature",
            "bench/content/cids_evaluator.py",
        ),
        Quirk(
            "inception-split-only",
            ("B", "C"),
            "Inception Score under --split lite pools every story of the outputs run, not only the lite stories",
            "pool only the split's stories",
            "bench_run.py / diversity_evaluator.py",
        ),
        Quirk(
            "zero-based-shift",
            ("B", "C"),
            "file number N is paired with shot N, so 0-based names (shot_00...) are off by one",
            "0-based names shifted by one (what utils/normalize_shot_filenames.py does to the files)",
            "dataset_loader/read_outputs.py",
        ),
        Quirk(
            "latest-nested-run",
            ("A", "B", "C"),
            "timestamp folders inside a story folder are all read: Era A concatenates their images (positional), "
            "Eras B/C merge them by shot number (later folder wins)",
            "only the latest nested timestamp folder",
            "read_outputs.py (return_latest=False)",
        ),
        Quirk(
            "first-duplicate-shot",
            ("B", "C"),
            "two files with one shot number (shot_01.png + shot_01.jpg): the last in natural order wins",
            "the first wins",
            "dataset_loader/read_outputs.py",
        ),
        Quirk(
            "any-shot-folder",
            ("A",),
            "only a sub-folder named shots/ or shot/ (any case) or ending in 分镜 holds the images; otherwise the "
            "story folder itself is read",
            "any sub-folder whose name ends in shot/shots (the Era B/C rule)",
            "data_process/outputs_read/read_outputs.py",
        ),
    )
}


def check_fixes(fixes: Iterable[str]) -> tuple[str, ...]:
    """Validate switch names; returns them sorted and de-duplicated.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    names = tuple(sorted(set(fixes)))
    unknown = [n for n in names if n not in QUIRKS]
    if unknown:
        raise ValueError(f"unknown --fix {unknown}; choose from {sorted(QUIRKS)}")
    return names


def active_fixes(fixes: Iterable[str], era: Era) -> tuple[str, ...]:
    """The switches among ``fixes`` that change something in ``era``."""
    return tuple(n for n in check_fixes(fixes) if era in QUIRKS[n].eras)


def quirk_table_markdown() -> str:
    """The README table: every quirk, its eras, what the official code does, and the switch."""
    lines = [
        "| switch (`--fix`) | eras | official behaviour (default) | with the switch | official file |",
        "|---|---|---|---|---|",
    ]
    for q in QUIRKS.values():
        lines.append(f"| `{q.name}` | {', '.join(q.eras)} | {q.official} | {q.fixed} | `{q.where}` |")
    return "\n".join(lines)
