"""Tolerant parser for UniMAGE script text: real model output in, structure plus located problems out.

It never raises on any input (unless ``strict=True`` is asked for). How it reads the text:

1. Lines (split on ``\\n``/``\\r\\n`` only; PDF form feeds are whitespace) are cut into *entries* at headers: a tag
   ``<User>``, ``<CharacterN>``, ``<EnvironmentN>``, ``<FrameN>``, ``<VideoN>``, ``<Extension>``, ``<Continuation>``
   at the start of a line, followed by ``:``. Character/Environment headers need the colon (a wrapped line may start
   with a mention such as ``<Character1>'s eyes``); the others are accepted without it (problem ``missing-colon``),
   and also in mid-line when followed by a colon (problem ``missing-line-break``).
2. Every other line continues the current entry (line wrapping). Lines are joined with one space, except after a
   trailing ``-``, where PDF wrapping broke a hyphenated word or a ``<-``/``->`` delimiter: there they join directly.
   Whitespace runs become one space; tags are rewritten to their canonical spelling (``< character 2>`` ->
   ``<Character2>``, problem ``noncanonical-tag``).
3. Entries become the :class:`~unimage.script.model.Script`; frame and video pair into a shot when they carry the
   same index; every deviation becomes a :class:`~unimage.script.model.Problem` with the source line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unimage.script.inline import ENTITY_TAGS, ENTRY_TAGS, InlineIssue, find_tags, scan_cues, tag_issues
from unimage.script.model import (
    CONTINUATION_PROMPT,
    Description,
    Entity,
    Marker,
    ParseResult,
    Problem,
    Script,
    ScriptError,
    Shot,
)

_NAMES = "user|character|environment|frame|video|extension|continuation"
HEADER_RE = re.compile(rf"<\s*({_NAMES})\s*(\d{{1,9}})?\s*>(\s*:)?", re.IGNORECASE)
# Headers that may appear mid-line (a lost line break); never Character/Environment, which read as dialogue labels.
_MIDLINE_NAMES = {"user", "frame", "video", "extension", "continuation"}
_CANON = {**ENTITY_TAGS, **ENTRY_TAGS}
# Characters a complete description ends with; anything else at the very end of the text suggests a cut-off.
_TERMINAL = set(".!?\"'’”)>…*")

Pos = tuple[int, int]  # (line, column), both 1-based


@dataclass
class _Entry:
    """One header and the text that follows it, with a source position for every normalized character."""

    name: str  # canonical tag name, e.g. "Frame"
    index: int | None
    pos: Pos
    written: str
    has_colon: bool
    pieces: list[tuple[int, int, str]] = field(default_factory=list)  # (line, column of piece start, raw text)
    text: str = ""
    char_pos: list[Pos] = field(default_factory=list)

    def locate(self, offset: int) -> Pos:
        """Source position of a character offset in the normalized text."""
        if not self.char_pos:
            return self.pos
        return self.char_pos[min(max(offset, 0), len(self.char_pos) - 1)]


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, pos: Pos, code: str, message: str) -> None:
        self.items.append(Problem(pos[0], pos[1], message, code))


def parse(text: str, *, strict: bool = False, source: str = "<script>") -> ParseResult:
    """Parse script text into a :class:`~unimage.script.model.Script` and a list of located problems.

    Args:
        text: the script text (model output, a published sample, or canonical text).
        strict: raise :class:`~unimage.script.model.ScriptError` listing every problem instead of returning them.
        source: a name for the text (file name) used in the strict-mode message.

    Returns:
        The structure and the problems, sorted by position; ``result.ok`` is True for a well-formed script.
    """
    problems = _Problems()
    entries = _split_entries(text, problems)
    for entry in entries:
        _normalize(entry, problems)
    script = _build(entries, problems)
    _check_texts(entries, script, problems)
    result = ParseResult(script, tuple(sorted(problems.items, key=lambda p: (p.line, p.column))))
    if strict and result.problems:
        raise ScriptError(result.problems, source)
    return result


def _split_entries(text: str, problems: _Problems) -> list[_Entry]:
    """Cut the text into header entries; text before the first header is reported and dropped."""
    entries: list[_Entry] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for ln, line in enumerate(lines, start=1):
        start = len(line) - len(line.lstrip())
        cuts: list[tuple[int, re.Match[str]]] = []
        m = HEADER_RE.match(line, start)
        if m and (m.group(1).lower() in _MIDLINE_NAMES or m.group(3)):
            cuts.append((start, m))
        for m2 in HEADER_RE.finditer(line, cuts[0][1].end() if cuts else start):
            if m2.group(1).lower() in _MIDLINE_NAMES and m2.group(3):
                problems.add(
                    (ln, m2.start() + 1), "missing-line-break", f"{m2.group(0).rstrip(':')} is not at a line start"
                )
                cuts.append((m2.start(), m2))
        head_end = cuts[0][0] if cuts else len(line)
        if head_end > start:
            _continue(entries, ln, start, line[start:head_end], problems)
        for k, (col, hm) in enumerate(cuts):
            end = cuts[k + 1][0] if k + 1 < len(cuts) else len(line)
            entries.append(_new_entry(hm, ln, col, problems))
            entries[-1].pieces.append((ln, hm.end() + 1, line[hm.end() : end]))
    return entries


def _new_entry(m: re.Match[str], ln: int, col: int, problems: _Problems) -> _Entry:
    name = _CANON[m.group(1).lower()]
    index = None if m.group(2) is None else int(m.group(2))
    written = m.group(0)
    entry = _Entry(name, index, (ln, col + 1), written, bool(m.group(3)))
    tag = written.split(">")[0] + ">"
    canonical = f"<{name}{'' if index is None else index}>"
    if tag != canonical:
        problems.add(entry.pos, "noncanonical-tag", f"tag {tag} should be written {canonical}")
    if not entry.has_colon:
        problems.add(entry.pos, "missing-colon", f"{canonical} should be followed by ':'")
    return entry


def _continue(entries: list[_Entry], ln: int, col: int, piece: str, problems: _Problems) -> None:
    if entries:
        entries[-1].pieces.append((ln, col + 1, piece))
    elif piece.strip():
        problems.add((ln, col + 1), "text-outside-entry", "text before the first tag is ignored")


def _normalize(entry: _Entry, problems: _Problems) -> None:
    """Join the entry's lines into one whitespace-normalized line, then canonicalize mention tags."""
    chars: list[str] = []
    pos: list[Pos] = []
    for ln, col, raw in entry.pieces:
        lead = len(raw) - len(raw.lstrip())
        piece = raw.strip()
        if not piece:
            continue
        if chars and chars[-1] != "-":
            chars.append(" ")
            pos.append((ln, col + lead))
        for k, ch in enumerate(piece):
            if ch.isspace():
                if chars[-1] == " ":
                    continue
                ch = " "
            chars.append(ch)
            pos.append((ln, col + lead + k))
    text = "".join(chars)
    out: list[str] = []
    out_pos: list[Pos] = []
    last = 0
    for tag in find_tags(text):
        canonical = tag.canonical
        if tag.name.lower() not in ENTITY_TAGS or tag.index is None or canonical is None:
            continue
        written = text[tag.start : tag.end]
        if written != canonical:
            problems.add(pos[tag.start], "noncanonical-tag", f"tag {written} should be written {canonical}")
        out.append(text[last : tag.start] + canonical)
        out_pos.extend(pos[last : tag.start] + [pos[tag.start]] * len(canonical))
        last = tag.end
    out.append(text[last:])
    out_pos.extend(pos[last:])
    entry.text = "".join(out)
    entry.char_pos = out_pos


def _build(entries: list[_Entry], problems: _Problems) -> Script:
    """Turn entries into the structure, reporting order, index and pairing problems."""
    user: str | None = None
    globals_: dict[str, list[Entity]] = {"Character": [], "Environment": []}
    shots: list[Shot] = []
    shot_pos: list[Pos] = []
    markers: list[Marker] = []
    pairing_open = False
    for e in entries:
        desc = Description(e.text)
        if not e.text:
            problems.add(e.pos, "empty-description", f"<{e.name}{e.index or ''}> has no text")
        if e.name in ("User", "Extension", "Continuation"):
            if e.index is not None:
                problems.add(e.pos, "unexpected-index", f"<{e.name}> takes no index (found {e.index})")
            if e.name == "User" and user is None and not shots and not markers:
                user = e.text
                continue
            kind = e.name.lower()
            if e.name == "User":
                kind = "continuation" if e.text.strip() == CONTINUATION_PROMPT else "extension"
                problems.add(
                    e.pos,
                    "user-as-marker",
                    f"a second <User> inside the script; read as a {kind} marker (expected <{kind.capitalize()}>)",
                )
            markers.append(Marker(kind, e.text, len(shots), e.name))  # type: ignore[arg-type]
            pairing_open = False
        elif e.name in globals_:
            items = globals_[e.name]
            index = e.index
            if index is None:
                index = len(items) + 1
                problems.add(e.pos, "missing-index", f"<{e.name}> has no index; assumed {index}")
            _check_index(e, index, [x.index for x in items], problems)
            if shots:
                problems.add(e.pos, "late-definition", f"<{e.name}{index}> is defined after the shots began")
            items.append(Entity(index, desc))
        else:  # Frame / Video
            slot = e.name.lower()
            cur = shots[-1] if shots and pairing_open else None
            index = e.index
            if index is None:
                if cur is not None and getattr(cur, slot) is None:
                    index = cur.index
                else:
                    index = (shots[-1].index + 1) if shots else 1
                problems.add(e.pos, "missing-index", f"<{e.name}> has no index; assumed {index}")
            if cur is not None and cur.index == index and getattr(cur, slot) is None:
                if slot == "frame":
                    problems.add(e.pos, "entry-order", f"<Frame{index}> comes after <Video{index}>")
                shots[-1] = Shot(
                    cur.index, desc if slot == "frame" else cur.frame, desc if slot == "video" else cur.video
                )
                continue
            _check_index(e, index, [s.index for s in shots], problems, what="shot")
            shots.append(Shot(index, desc if slot == "frame" else None, desc if slot == "video" else None))
            shot_pos.append(e.pos)
            pairing_open = True
    for shot, pos in zip(shots, shot_pos):
        if shot.frame is None:
            problems.add(pos, "missing-frame", f"shot {shot.index} has no <Frame{shot.index}>")
        if shot.video is None:
            problems.add(pos, "missing-video", f"shot {shot.index} has no <Video{shot.index}>")
    if user is None:
        problems.add((1, 1), "missing-user", "the script has no <User> prompt")
    if not shots:
        problems.add(entries[-1].pos if entries else (1, 1), "no-shots", "the script has no shots")
    return Script(user, tuple(globals_["Character"]), tuple(globals_["Environment"]), tuple(shots), tuple(markers))


def _check_index(e: _Entry, index: int, seen: list[int], problems: _Problems, what: str = "") -> None:
    label = what or e.name.lower()
    if index in seen:
        problems.add(e.pos, "duplicate-index", f"{label} index {index} appears more than once")
    elif index != (seen[-1] + 1 if seen else 1):
        expected = seen[-1] + 1 if seen else 1
        problems.add(e.pos, "index-order", f"{label} index {index} where {expected} was expected")


def _check_texts(entries: list[_Entry], script: Script, problems: _Problems) -> None:
    """Inline problems (tags, cues), mentions of undefined entries, and a cut-off end."""
    defined = {
        "character": {c.index for c in script.characters},
        "environment": {e.index for e in script.environments},
    }
    for e in entries:
        issues: list[InlineIssue] = tag_issues(e.text) + scan_cues(e.text)[1]
        for tag in find_tags(e.text):
            kind = tag.name.lower()
            if kind in ENTITY_TAGS and tag.index and tag.index not in defined[kind]:
                label = f"<{ENTITY_TAGS[kind]}{tag.index}>"
                issues.append(InlineIssue(tag.start, "undefined-mention", f"{label} is mentioned but never defined"))
        for issue in issues:
            problems.add(e.locate(issue.offset), issue.code, issue.message)
    if entries and entries[-1].text and entries[-1].text[-1] not in _TERMINAL:
        last = entries[-1]
        problems.add(
            last.locate(len(last.text) - 1),
            "possibly-truncated",
            "the text ends mid-sentence; the script may be cut off",
        )
