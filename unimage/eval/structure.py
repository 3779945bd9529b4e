"""Structural checks of a script the Director wrote: does it hold together as a SynthStory script?

The Director's grammar guarantees that its output parses; it does not guarantee that the text is *right*. These
checks measure what a trained understanding expert must get right and a random one does not:

- ``parse``: the text parses with no problem (a script from any other source may not);
- ``mentions``: every ``<CharacterN>`` / ``<EnvironmentN>`` in the judged shots names a declared global entry;
- ``names``: every mention is written ``Name<CharacterN>`` (``sunny desert<EnvironmentN>``) with the name its global
  entry declares (SynthStory's convention; a bare tag or another name counts as a mismatch);
- ``frame``: every judged ``<FrameN>`` follows SynthStory's frame template ("Long shot: Pip<Character1> stands on the
  left and Bo<Character2> stands in the center in the night meadow<Environment1>, with a tall tree on the right.");
- ``cast``: the declared characters are exactly the ones the prompt names (only when the prompt names any).

Only shots from ``first_shot`` on are judged, so a continuation is scored on the shots it wrote, not on its input.
Each check gives a rate in [0, 1] (the fraction of items that pass) or None when nothing could be judged; ``valid``
is 1 when every judged check passes everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from unimage.script import Script, parse
from unimage.script.inline import find_mentions

__all__ = ["CHECKS", "StructureReport", "check_script", "declared_name"]

CHECKS = ("parse", "mentions", "names", "frame", "cast")

_SIZES = r"(?:Close-up|Medium shot|Long shot)"
_POS = r"(?:on the left|in the center|on the right)"
_PART = rf"[A-Z][\w'-]*<Character\d+> stands {_POS}"
_FRAME = re.compile(
    rf"{_SIZES}: (?:The [^<>]+<Environment\d+> lies empty|{_PART}(?:(?:, | and ){_PART})* in the [^<>]+<Environment\d+>)"
    rf", with an? [^<>]+ {_POS}\."
)
_CHAR_NAME = re.compile(r"([^,.:;<>]+?)(?:[,.]|$)")
_ENV_NAME = re.compile(r"(?:An?|The)\s+([^,.:;<>]+?):")


@dataclass(frozen=True)
class StructureReport:
    """Counts behind the rates of one script.

    Attributes:
        problems: The parser's problems, as ``line:col: [code] message``.
        mentions: (resolved, total) mentions in the judged shots.
        names: (matching, judged) mentions whose written name equals the declared one.
        frames: (matching, total) judged frame descriptions that follow the template.
        cast: (declared names, expected names) or None when the prompt names nobody.
    """

    problems: tuple[str, ...]
    mentions: tuple[int, int]
    names: tuple[int, int]
    frames: tuple[int, int]
    cast: tuple[tuple[str, ...], tuple[str, ...]] | None

    def rates(self) -> dict[str, float | None]:
        """Rate per check (``CHECKS``) plus ``valid``; None for a check with nothing to judge."""
        out: dict[str, float | None] = {"parse": 0.0 if self.problems else 1.0}
        for name, (good, total) in (("mentions", self.mentions), ("names", self.names), ("frame", self.frames)):
            out[name] = good / total if total else None
        out["cast"] = None if self.cast is None else float(set(self.cast[0]) == set(self.cast[1]))
        judged = [v for v in out.values() if v is not None]
        out["valid"] = float(all(v == 1.0 for v in judged))
        return out


def declared_name(kind: str, text: str) -> str | None:
    """The name a global entry declares: ``Pip`` of "Pip, a small figure ..." (or of "Pip."), ``night meadow`` of "A
    night meadow: a dark blue sky ..."; None when the description does not start that way (up to 4 words)."""
    m = (_CHAR_NAME if kind == "character" else _ENV_NAME).match(text.strip())
    if m is None or len(m.group(1).split()) > 4:
        return None
    return m.group(1).strip()


def check_script(text: str, *, first_shot: int = 0, prompt_names: Sequence[str] | None = None) -> StructureReport:
    """Run the checks on a script text.

    Args:
        text: The script (the Director's ``serialize`` output, or a ``script.txt``).
        first_shot: Judge shots from this 0-based position on (globals are always used as declarations).
        prompt_names: The names the cast must equal; None takes the declared names that the prompt contains (which
            catches extra characters, not missing ones: pass the story's cast names found in the prompt for that).
    """
    result = parse(text)
    script: Script = result.script
    declared = {
        "character": {e.index: declared_name("character", e.description.text) for e in script.characters},
        "environment": {e.index: declared_name("environment", e.description.text) for e in script.environments},
    }
    resolved = total = named = judged = 0
    frames_ok = frames = 0
    for shot in script.shots[first_shot:]:
        for desc in (shot.frame, shot.video):
            if desc is None:
                continue
            for m in find_mentions(desc.text):
                total += 1
                if m.index not in declared[m.kind]:
                    continue
                resolved += 1
                name = declared[m.kind][m.index]
                if name is None:
                    continue
                judged += 1
                before = desc.text[: m.start]
                if before.lower().endswith(name.lower()) and not before[: -len(name)][-1:].isalnum():
                    named += 1
        if shot.frame is not None:
            frames += 1
            frames_ok += _FRAME.fullmatch(shot.frame.text) is not None
    cast = None
    names = [n for n in declared["character"].values() if n is not None]
    if prompt_names is None and script.user_prompt is not None:
        prompt_names = [n for n in names if re.search(rf"\b{re.escape(n)}\b", script.user_prompt)]
    if prompt_names:
        cast = (tuple(sorted(names)), tuple(sorted(prompt_names)))
    return StructureReport(
        problems=tuple(str(p) for p in result.problems),
        mentions=(resolved, total),
        names=(named, judged),
        frames=(frames_ok, frames),
        cast=cast,
    )
