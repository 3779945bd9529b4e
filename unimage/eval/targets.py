"""The teacher-forced text targets of the diagnostics, built with the training code's own splitting and segments.

For one held-out script, five views (``unimage.data.transforms.TextView``), each planned by
``SegmentBuilder.text`` exactly as the ``und`` stream plans a pure-text training script, so the CE positions are the
ones training optimises:

===================  ===============================================================  ==============================
name                 context (no loss)                                                target (CE)
===================  ===============================================================  ==============================
``full``             the ``<User>`` line                                              globals + every shot
``cont``             the script before its last shot, then ``<Continuation>: ...``    the last shot
``cont_nomarker``    the script before its last shot, no marker                       the last shot
``ext``              the script before a seeded cut, then ``<Extension>: summary``    the shots after the cut
``ext_nomarker``     the script before the same cut, no marker                        the shots after the cut
===================  ===============================================================  ==============================

Every target also ends with the empty end-of-script block (``segments.END_OF_SCRIPT``), as in training. A marker
view and its no-marker twin have the same target text and the same CE positions relative to it; only the context
differs by the marker line. That contrast is what Pre-Context Script Splitting changes (issue 11: without it,
continuation CE is worse with no effect on the same shots without the marker).

The extension cut is drawn by ``split_for_extension`` from a seed derived from (seed, story id), and its prompt is the
training default summariser's, so two runs over the same checkpoint see the same views.
"""

from __future__ import annotations

from dataclasses import dataclass

from unimage.data.manifest import TextSample
from unimage.data.packer import stable_seed
from unimage.data.segments import PlannedSample, SegmentBuilder
from unimage.data.transforms import TextView
from unimage.script import Script, serialize
from unimage.script.splitting import (
    SplitSample,
    Summarizer,
    split_for_continuation,
    split_for_extension,
    split_full,
)

__all__ = ["TARGET_NAMES", "TextTarget", "plan_text_targets", "text_views"]

TARGET_NAMES = ("full", "cont", "cont_nomarker", "ext", "ext_nomarker")


@dataclass(frozen=True)
class TextTarget:
    """One planned view.

    Attributes:
        story_id: The held-out story.
        name: One of ``TARGET_NAMES``.
        view: The view (``context + target`` is the canonical text of ``view.structure``).
        planned: ``SegmentBuilder.text`` of the view: CE on the target blocks and the end-of-script block only.
    """

    story_id: str
    name: str
    view: TextView
    planned: PlannedSample

    @property
    def target_bytes(self) -> int:
        """UTF-8 bytes of the target text (the denominator of nats per byte)."""
        return len(self.view.target.encode("utf-8"))

    @property
    def target_span(self) -> tuple[int, int]:
        """Character span of the target in the canonical text of ``view.structure``."""
        start = len(self.view.context)
        return start, start + len(self.view.target)


def _view(story_id: str, split: SplitSample) -> TextView:
    return TextView(story_id, split.kind, split.script, split.cut)


def _no_marker(story_id: str, marked: SplitSample, script: Script) -> TextView:
    """The same cut as ``marked`` in the unmarked ``script``: the same shots as a plain continuation of the text."""
    return TextView(story_id, marked.kind, script, marked.cut)


def text_views(story_id: str, script: Script, seed: int = 0, summarizer: Summarizer | None = None) -> list[TextView]:
    """The views of ``TARGET_NAMES`` (only ``full`` for a one-shot script), in that order.

    Args:
        story_id: Names the story (part of the extension seed).
        script: The held-out script.
        seed: Base seed of the extension cut.
        summarizer: The extension prompt writer; None is the training default (``extractive_summary``).
    """
    views = [_view(story_id, split_full(script))]
    if len(script.shots) < 2:
        return views
    cont = split_for_continuation(script)
    ext = split_for_extension(script, stable_seed(seed, "diag-extension", story_id), summarizer)
    views += [_view(story_id, cont), _no_marker(story_id, cont, script)]
    views += [_view(story_id, ext), _no_marker(story_id, ext, script)]
    return views


def plan_text_targets(
    story_id: str,
    script: Script,
    builder: SegmentBuilder,
    seed: int = 0,
    summarizer: Summarizer | None = None,
) -> list[TextTarget]:
    """``text_views`` planned by the training segment builder (``SegmentBuilder.text``)."""
    sample = TextSample(story_id, serialize(script), script)
    views = text_views(story_id, script, seed, summarizer)
    names = TARGET_NAMES[: len(views)]
    return [TextTarget(story_id, name, v, builder.text(sample, v)) for name, v in zip(names, views)]
