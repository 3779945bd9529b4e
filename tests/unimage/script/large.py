"""Large script texts for the parser's scaling test and benchmark, built from the six published samples.

Four kinds (issue 14): ``realistic`` (canonical text, the samples' shots renumbered one after another),
``repeated-tag`` (``<Frame1>: x`` lines: every line a new shot with a duplicate index and two problems),
``cr-only`` (the realistic text with ``\\r`` line ends) and ``pdf-wrapped`` (the samples' own PDF-wrapped shot lines,
renumbered).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from unimage.script.model import Entity, Script
from unimage.script.parse import parse
from unimage.script.serialize import serialize

from .samples import FIXTURE_NAMES

KINDS = ("realistic", "repeated-tag", "cr-only", "pdf-wrapped")
_SHOT_TAG = re.compile(r"<(Frame|Video)(\d+)>")


def large_text(kind: str, size: int, folder: Path) -> str:
    """A script text of about ``size`` characters (at least ``size``) of the given kind."""
    if kind == "repeated-tag":
        line = "<Frame1>: x\n"
        return line * (size // len(line) + 1)
    texts = [(folder / name).read_text(encoding="utf-8") for name in FIXTURE_NAMES]
    if kind in ("realistic", "cr-only"):
        scripts = [parse(t).script for t in texts]
        head = serialize(
            Script(
                scripts[0].user_prompt, _union(s.characters for s in scripts), _union(s.environments for s in scripts)
            )
        )
        blocks = [serialize(Script(None, (), (), s.shots)) for s in scripts]
        text = _repeat(head, blocks, size)
        return text.replace("\n", "\r") if kind == "cr-only" else text
    if kind == "pdf-wrapped":
        head = texts[0][: texts[0].index("<Frame1>")]
        blocks = [t[t.index("<Frame1>") :].rstrip() + "\n" for t in texts]
        return _repeat(head, blocks, size)
    raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")


def _union(groups: Iterable[tuple[Entity, ...]]) -> tuple[Entity, ...]:
    """Entities 1..N where N is the most any sample defines, so every mention in every sample is defined."""
    by_index: dict[int, Entity] = {}
    for group in groups:
        for entity in group:
            by_index.setdefault(entity.index, entity)
    return tuple(by_index[i] for i in sorted(by_index))


def _repeat(head: str, blocks: list[str], size: int) -> str:
    """``head`` then the shot blocks in turn, each renumbered to continue the previous one's shot indices."""
    out, length, offset, k = [head], len(head), 0, 0
    while length < size:
        block = blocks[k % len(blocks)]
        count = max(int(m.group(2)) for m in _SHOT_TAG.finditer(block))
        shifted = _SHOT_TAG.sub(lambda m, o=offset: f"<{m.group(1)}{int(m.group(2)) + o}>", block)
        out.append(shifted)
        length += len(shifted)
        offset += count
        k += 1
    return "".join(out)
