"""Pre-Context Script Splitting (paper §3.4) as a dataset transform on text-only scripts.

Each text sample becomes one training view, drawn with configurable probabilities:

- ``extension``: the script is cut at a random shot boundary and ``<Extension>: new prompt`` is inserted
  before the second part (the model learns to extend a story from a new prompt);
- ``continuation``: ``<Continuation>: Based on the above script, ...`` is inserted before the last shot
  (the model learns to continue a story shot by shot);
- ``full``: no split.

The splitting itself is `unimage.script.splitting.sample_split`; this module only decides *which* random
stream each sample uses, so that views are reproducible: the seed of a view is a hash of
``(config.seed, epoch, sample id)``. It does not depend on the worker, the rank or the order in which
samples are read, so resuming a run or changing the number of workers gives the same views; and a new
epoch draws a fresh view of every script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from unimage.data.manifest import TextSample
from unimage.script import Script
from unimage.script.splitting import (
    BlockKind,
    SplitKind,
    Summarizer,
    in_context,
    sample_split,
    split_full,
    view_text,
)


@dataclass(frozen=True)
class SplittingConfig:
    """How text scripts are split.

    Attributes:
        enabled: The ``script_splitting`` flag; when False every view is ``full``.
        p_extension: Probability of a prompt-based extension view.
        p_continuation: Probability of an in-context continuation view (the rest are ``full``).
        seed: Base seed of the per-sample random streams.
    """

    enabled: bool = True
    p_extension: float = 1 / 3
    p_continuation: float = 1 / 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.p_extension < 0 or self.p_continuation < 0 or self.p_extension + self.p_continuation > 1:
            raise ValueError(
                f"p_extension and p_continuation must be >= 0 and sum to <= 1, got {self.p_extension} and {self.p_continuation}"
            )


@dataclass(frozen=True)
class TextView:
    """One training view of a text script: the structure (the script with the inserted marker) and the cut.

    Which blocks condition the model (no loss) and which it must write (the loss) is decided per block by
    ``in_context``; ``context`` / ``target`` are the same two parts as text (``context + target`` is the canonical
    text of ``structure``), for measures per target byte.
    """

    id: str
    kind: SplitKind
    structure: Script
    cut: int

    def in_context(self, block: BlockKind, position: int) -> bool:
        """Whether a block is context (``unimage.script.splitting.in_context``)."""
        return in_context(self.kind, self.cut, block, position)

    @property
    def context(self) -> str:
        """The context as canonical text."""
        return view_text(self.kind, self.structure, self.cut)[0]

    @property
    def target(self) -> str:
        """The target as canonical text."""
        return view_text(self.kind, self.structure, self.cut)[1]


def view_seed(seed: int, epoch: int, sample_id: str) -> int:
    """A 64-bit seed from ``(seed, epoch, sample_id)``; stable across processes (unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class PreContextSplitting:
    """The transform: ``view = PreContextSplitting(cfg)(sample, epoch=e)``.

    Args:
        config: Probabilities, flag and seed.
        summarizer: Maps the second part of a script to the new user prompt of an extension view;
            default: the deterministic extractive summary of `unimage.script.splitting`.
    """

    def __init__(self, config: SplittingConfig | None = None, summarizer: Summarizer | None = None) -> None:
        self.config = config or SplittingConfig()
        self.summarizer = summarizer

    def __call__(self, sample: TextSample, *, epoch: int = 0) -> TextView:
        """Draw the view of ``sample`` for ``epoch`` (scripts with one shot always give ``full``)."""
        cfg = self.config
        if not cfg.enabled:
            split = split_full(sample.structure)
        else:
            split = sample_split(
                sample.structure,
                view_seed(cfg.seed, epoch, sample.id),
                p_extension=cfg.p_extension,
                p_continuation=cfg.p_continuation,
                summarizer=self.summarizer,
            )
        return TextView(sample.id, split.kind, split.script, split.cut)

    def map(self, samples: Iterable[TextSample], *, epoch: int = 0) -> Iterator[TextView]:
        """Apply the transform to every sample of an iterable (e.g. a `Manifest` of text samples)."""
        for sample in samples:
            yield self(sample, epoch=epoch)
