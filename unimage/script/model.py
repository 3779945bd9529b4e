"""The typed structure of a UniMAGE script (DESIGN.md §3.1, paper §3.2).

A script is a user prompt, global character and environment descriptions, and shots (a frame description of the
keyframe's static layout, and a video description of action, camera and ``<-...->`` cues), with optional
``<Extension>`` / ``<Continuation>`` markers between shots (paper §3.4).

Descriptions keep their text exactly (mention tags and cue delimiters included), and expose mentions and cues as
located views of that text, so the text is the single source of truth and equality is plain dataclass equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from unimage.script.inline import Cue, Mention, find_mentions, scan_cues

MarkerKind = Literal["extension", "continuation"]

#: The system prompt that follows ``<Continuation>`` (paper §3.4, Figure 4).
CONTINUATION_PROMPT = "Based on the above script, continue to write the subsequent shot content."


@dataclass(frozen=True, slots=True)  # slots: a long script holds millions of these
class Description:
    """One description text (single line, whitespace-normalized) with its mentions and cues."""

    text: str

    @property
    def mentions(self) -> tuple[Mention, ...]:
        """Located ``<CharacterN>``/``<EnvironmentN>`` tags, offsets into :attr:`text`."""
        return find_mentions(self.text)

    @property
    def cues(self) -> tuple[Cue, ...]:
        """Located ``<-...->`` cues, offsets into :attr:`text`."""
        return scan_cues(self.text)[0]


@dataclass(frozen=True, slots=True)
class Entity:
    """A global ``<CharacterN>`` or ``<EnvironmentN>`` entry."""

    index: int
    description: Description


@dataclass(frozen=True, slots=True)
class Shot:
    """One shot; ``frame`` or ``video`` is None only in malformed input (the parser reports it)."""

    index: int
    frame: Description | None
    video: Description | None


@dataclass(frozen=True)
class Marker:
    """An ``<Extension>`` (new user prompt) or ``<Continuation>`` (system prompt) placed between shots.

    Attributes:
        kind: "extension" or "continuation".
        text: the prompt after the tag.
        position: how many shots precede the marker, i.e. the list position of the shot it precedes
            (``len(shots)`` when nothing follows).
        tag: the tag as written without brackets: "Extension", "Continuation", or "User" for the published samples
            that put a second ``<User>`` mid-script (the parser reports that as a problem).
    """

    kind: MarkerKind
    text: str
    position: int
    tag: str = ""

    def __post_init__(self) -> None:
        if not self.tag:
            object.__setattr__(self, "tag", self.kind.capitalize())


@dataclass(frozen=True)
class Script:
    """A whole script. Global entries and shots keep source order (duplicates included, nothing dropped)."""

    user_prompt: str | None
    characters: tuple[Entity, ...] = ()
    environments: tuple[Entity, ...] = ()
    shots: tuple[Shot, ...] = ()
    markers: tuple[Marker, ...] = ()

    def before_shot(self, marker: Marker) -> int | None:
        """The index (as written) of the shot a marker precedes, or None at the end."""
        return self.shots[marker.position].index if marker.position < len(self.shots) else None


@dataclass(frozen=True, slots=True)
class Problem:
    """A located problem: 1-based line and column in the source text, a stable code, and a message."""

    line: int
    column: int
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class ParseResult:
    """What :func:`unimage.script.parse.parse` returns: the structure and every problem found."""

    script: Script
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the text is well-formed (no problems)."""
        return not self.problems


class ScriptError(ValueError):
    """Raised by ``parse(..., strict=True)``; lists every problem, not just the first."""

    def __init__(self, problems: tuple[Problem, ...], source: str = "<script>") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {source}:{p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{lines}")
