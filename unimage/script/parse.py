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

Cost: one pass, linear in time and memory (issue 14: the old parser rebuilt the shot-index list for every shot).
Entries are streamed: each is normalized, added to the structure and checked, then dropped, so only the structure
and the problems stay alive. Source positions are kept as a few linear segments per entry (a new one only where
whitespace collapsed or a tag was rewritten), not one tuple per character. A hostile text can produce millions of
identical problems; after :data:`MAX_PROBLEMS_PER_CODE` of one code the rest are counted in one
``problems-omitted`` problem instead of listed.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

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
# Whitespace runs: each becomes one space. Runs of two or more break the 1:1 offset -> column mapping.
_WS = re.compile(r"\s+")
_WS_LONG = re.compile(r"\s{2,}")
#: Problems of one code listed before the rest are only counted (a 50 MB text of ``<Frame1>: x`` lines would
#: otherwise hold 8 million problems).
MAX_PROBLEMS_PER_CODE = 1000

# Sort phases: problems at the same position keep the order of the stages that found them.
_SPLIT, _NORMALIZE, _BUILD, _BUILD_END, _TEXTS = range(5)

Pos = tuple[int, int]  # (line, column), both 1-based
_EMPTY: array[int] = array("q")  # shared by entries with no text; never appended to


class _Entry:
    """One header and the text that follows it, with a compact map from normalized offsets to source positions.

    ``seg_*`` map an offset of the joined text: offsets from ``seg_off[k]`` on are at line ``seg_line[k]``,
    column ``seg_col[k] + (offset - seg_off[k])``. ``tag_*`` (only when the text has mention tags) map an offset
    of :attr:`text` back to the joined text: from ``tag_off[k]`` on, ``tag_src[k] + tag_step[k] * (offset -
    tag_off[k])`` (step 0 inside a mention tag: all its characters point at the written tag's start).
    """

    __slots__ = (
        "index",
        "name",
        "pieces",
        "pos",
        "seg_col",
        "seg_line",
        "seg_off",
        "tag_off",
        "tag_src",
        "tag_step",
        "text",
    )

    def __init__(self, name: str, index: int | None, pos: Pos) -> None:
        self.name = name  # canonical tag name, e.g. "Frame"
        self.index = index
        self.pos = pos
        self.pieces: list[tuple[int, int, str]] = []  # (line, column of piece start, raw text); emptied once joined
        self.text = ""
        self.seg_off = self.seg_line = self.seg_col = _EMPTY
        self.tag_off: array[int] | None = None
        self.tag_src: array[int] | None = None
        self.tag_step: array[int] | None = None

    def locate(self, offset: int) -> Pos:
        """Source position of a character offset in the normalized text."""
        if not self.text:
            return self.pos
        offset = min(max(offset, 0), len(self.text) - 1)
        if self.tag_off is not None and self.tag_src is not None and self.tag_step is not None:
            k = bisect_right(self.tag_off, offset) - 1
            offset = self.tag_src[k] + self.tag_step[k] * (offset - self.tag_off[k])
        k = bisect_right(self.seg_off, offset) - 1
        return self.seg_line[k], self.seg_col[k] + (offset - self.seg_off[k])


class _Problems:
    """Problems with their sort keys, capped per code."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, int, Problem]] = []
        self.seq = 0
        self.counts: dict[str, int] = {}
        self.omitted: dict[str, tuple[int, Pos]] = {}  # code -> (how many, first position)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, pos: Pos, code: str, message: str, phase: int, seq: int | None = None) -> None:
        n = self.counts.get(code, 0)
        self.counts[code] = n + 1
        if n >= MAX_PROBLEMS_PER_CODE:
            count, first = self.omitted.get(code, (0, pos))
            self.omitted[code] = (count + 1, first)
            return
        key = self.next_seq() if seq is None else seq
        self.items.append((pos[0], pos[1], phase, key, Problem(pos[0], pos[1], message, code)))

    def add_fmt(self, pos: Pos, code: str, phase: int, fmt: str, *args: object) -> None:
        """`add` with the message formatted only if it will be listed (hot paths of hostile input)."""
        listed = self.counts.get(code, 0) < MAX_PROBLEMS_PER_CODE
        self.add(pos, code, fmt.format(*args) if listed else "", phase)

    def sorted(self) -> tuple[Problem, ...]:
        for code, (count, pos) in self.omitted.items():
            message = f"{count} more '{code}' problems are not listed (at most {MAX_PROBLEMS_PER_CODE} per code)"
            self.items.append((pos[0], pos[1], _TEXTS + 1, self.next_seq(), Problem(*pos, message, "problems-omitted")))
        self.items.sort(key=lambda item: item[:4])
        return tuple(item[4] for item in self.items)


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
    builder = _Builder(problems)
    pending: list[tuple[int, str, int, Pos, str]] = []  # mentions not defined when seen: (seq, kind, index, pos, msg)
    last: _Entry | None = None
    for entry in _split_entries(text, problems):
        _normalize(entry, problems)
        builder.add(entry)
        _check_text(entry, builder.defined, pending, problems)
        last = entry
    script = builder.finish(last)
    for seq, kind, index, pos, message in pending:
        if index not in builder.defined[kind]:
            problems.add(pos, "undefined-mention", message, _TEXTS, seq)
    if last is not None and last.text and last.text[-1] not in _TERMINAL:
        problems.add(
            last.locate(len(last.text) - 1),
            "possibly-truncated",
            "the text ends mid-sentence; the script may be cut off",
            _TEXTS,
        )
    result = ParseResult(script, problems.sorted())
    if strict and result.problems:
        raise ScriptError(result.problems, source)
    return result


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``enumerate(text.split("\\n"), 1)`` without holding every line at once."""
    start, ln = 0, 1
    while (end := text.find("\n", start)) >= 0:
        yield ln, text[start:end]
        start, ln = end + 1, ln + 1
    yield ln, text[start:]


def _split_entries(text: str, problems: _Problems) -> Iterator[_Entry]:
    """Cut the text into header entries, yielding each once complete; text before the first header is reported."""
    current: _Entry | None = None
    headers: dict[str, _Header] = {}
    for ln, line in _lines(text.replace("\r\n", "\n").replace("\r", "\n")):
        start = len(line) - len(line.lstrip())
        if "<" not in line:  # fast path: no header can start here
            if len(line) > start:
                current = _continue(current, ln, start, line[start:], problems)
            continue
        cuts: list[tuple[int, re.Match[str]]] = []
        m = HEADER_RE.match(line, start)
        if m and (m.group(1).lower() in _MIDLINE_NAMES or m.group(3)):
            cuts.append((start, m))
        rest = cuts[0][1].end() if cuts else start
        for m2 in HEADER_RE.finditer(line, rest) if line.find("<", rest) >= 0 else ():
            if m2.group(1).lower() in _MIDLINE_NAMES and m2.group(3):
                problems.add(
                    (ln, m2.start() + 1),
                    "missing-line-break",
                    f"{m2.group(0).rstrip(':')} is not at a line start",
                    _SPLIT,
                )
                cuts.append((m2.start(), m2))
        head_end = cuts[0][0] if cuts else len(line)
        if head_end > start:
            current = _continue(current, ln, start, line[start:head_end], problems)
        for k, (col, hm) in enumerate(cuts):
            end = cuts[k + 1][0] if k + 1 < len(cuts) else len(line)
            if current is not None:
                yield current
            current = _new_entry(hm, ln, col, problems, headers)
            current.pieces.append((ln, hm.end() + 1, line[hm.end() : end]))
    if current is not None:
        yield current


@dataclass(frozen=True, slots=True)
class _Header:
    """What a written header means, computed once per distinct spelling."""

    name: str
    index: int | None
    problems: tuple[tuple[str, str], ...]  # (code, message)


def _new_entry(m: re.Match[str], ln: int, col: int, problems: _Problems, headers: dict[str, _Header]) -> _Entry:
    written = m.group(0)
    header = headers.get(written)
    if header is None:
        name = _CANON[m.group(1).lower()]
        index = None if m.group(2) is None else int(m.group(2))
        tag = written.split(">")[0] + ">"
        canonical = f"<{name}{'' if index is None else index}>"
        found = []
        if tag != canonical:
            found.append(("noncanonical-tag", f"tag {tag} should be written {canonical}"))
        if not m.group(3):
            found.append(("missing-colon", f"{canonical} should be followed by ':'"))
        header = _Header(name, index, tuple(found))
        if len(headers) > 4096:  # hostile text with millions of distinct headers: keep the cache small
            headers.clear()
        headers[written] = header
    entry = _Entry(header.name, header.index, (ln, col + 1))
    for code, message in header.problems:
        problems.add(entry.pos, code, message, _SPLIT)
    return entry


def _continue(current: _Entry | None, ln: int, col: int, piece: str, problems: _Problems) -> _Entry | None:
    if current is not None:
        current.pieces.append((ln, col + 1, piece))
    elif piece.strip():
        problems.add((ln, col + 1), "text-outside-entry", "text before the first tag is ignored", _SPLIT)
    return current


def _normalize(entry: _Entry, problems: _Problems) -> None:
    """Join the entry's lines into one whitespace-normalized line, then canonicalize mention tags."""
    parts: list[str] = []
    length = 0
    off, line, col = entry.seg_off, entry.seg_line, entry.seg_col = array("q"), array("q"), array("q")
    for ln, start, raw in entry.pieces:
        piece = raw.strip()
        if not piece:
            continue
        base = start + len(raw) - len(raw.lstrip())
        if length and parts[-1][-1] != "-":  # the joining space sits at the next piece's first character
            off.append(length)
            line.append(ln)
            col.append(base)
            parts.append(" ")
            length += 1
        off.append(length)
        line.append(ln)
        col.append(base)
        normalized = _WS.sub(" ", piece)
        if len(normalized) < len(piece):  # some run of two or more whitespace characters became one space
            removed = 0
            for m in _WS_LONG.finditer(piece):  # the run keeps its first character, as a space
                removed += m.end() - m.start() - 1
                off.append(length + m.end() - removed)
                line.append(ln)
                col.append(base + m.end())
        parts.append(normalized)
        length += len(normalized)
    entry.pieces = []
    text = "".join(parts)
    if "<" in text:
        text = _canonicalize_mentions(entry, text, problems)
    entry.text = text


def _append3(a: array[int], b: array[int], c: array[int], x: int, y: int, z: int) -> None:
    a.append(x)
    b.append(y)
    c.append(z)


def _canonicalize_mentions(entry: _Entry, text: str, problems: _Problems) -> str:
    out: list[str] = []
    tag_off, tag_src, tag_step = array("q", [0]), array("q", [0]), array("q", [1])
    last = length = 0
    for tag in find_tags(text):
        canonical = tag.canonical
        if tag.name.lower() not in ENTITY_TAGS or tag.index is None or canonical is None:
            continue
        written = text[tag.start : tag.end]
        if written != canonical:
            problems.add(
                _joined_pos(entry, tag.start),
                "noncanonical-tag",
                f"tag {written} should be written {canonical}",
                _NORMALIZE,
            )
        out.append(text[last : tag.start])
        length += tag.start - last
        _append3(tag_off, tag_src, tag_step, length, tag.start, 0)  # the tag: all at its start
        out.append(canonical)
        length += len(canonical)
        _append3(tag_off, tag_src, tag_step, length, tag.end, 1)  # after it: 1:1 again
        last = tag.end
    if last == 0:
        return text
    out.append(text[last:])
    entry.tag_off, entry.tag_src, entry.tag_step = tag_off, tag_src, tag_step
    return "".join(out)


def _joined_pos(entry: _Entry, offset: int) -> Pos:
    """Source position of an offset of the joined text (before mention tags were rewritten)."""
    k = bisect_right(entry.seg_off, offset) - 1
    return entry.seg_line[k], entry.seg_col[k] + (offset - entry.seg_off[k])


class _Indices:
    """Indices seen so far of one kind: membership and the last one, without rebuilding a list per entry."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.last: int | None = None

    def check(self, e: _Entry, index: int, problems: _Problems, what: str = "") -> None:
        label = what or e.name.lower()
        expected = 1 if self.last is None else self.last + 1
        if index in self.seen:
            problems.add_fmt(e.pos, "duplicate-index", _BUILD, "{} index {} appears more than once", label, index)
        elif index != expected:
            problems.add_fmt(e.pos, "index-order", _BUILD, "{} index {} where {} was expected", label, index, expected)
        self.seen.add(index)
        self.last = index


class _Builder:
    """Turns entries, one at a time, into the structure, reporting order, index and pairing problems."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.user: str | None = None
        self.globals: dict[str, list[Entity]] = {"Character": [], "Environment": []}
        self.global_indices = {"Character": _Indices(), "Environment": _Indices()}
        self.defined: dict[str, set[int]] = {"character": set(), "environment": set()}
        self.shots: list[Shot] = []
        self.shot_indices = _Indices()
        self.shot_pos: Pos = (1, 1)  # header position of the last shot, for its missing-frame/video problems
        self.markers: list[Marker] = []
        self.pairing_open = False

    def add(self, e: _Entry) -> None:
        problems, shots = self.problems, self.shots
        desc = Description(e.text)
        if not e.text:
            problems.add_fmt(e.pos, "empty-description", _BUILD, "<{}{}> has no text", e.name, e.index or "")
        if e.name in ("User", "Extension", "Continuation"):
            if e.index is not None:
                problems.add(e.pos, "unexpected-index", f"<{e.name}> takes no index (found {e.index})", _BUILD)
            if e.name == "User" and self.user is None and not shots and not self.markers:
                self.user = e.text
                return
            kind = e.name.lower()
            if e.name == "User":
                kind = "continuation" if e.text.strip() == CONTINUATION_PROMPT else "extension"
                problems.add(
                    e.pos,
                    "user-as-marker",
                    f"a second <User> inside the script; read as a {kind} marker (expected <{kind.capitalize()}>)",
                    _BUILD,
                )
            self.markers.append(Marker(kind, e.text, len(shots), e.name))  # type: ignore[arg-type]
            self.pairing_open = False
        elif e.name in self.globals:
            items = self.globals[e.name]
            index = e.index
            if index is None:
                index = len(items) + 1
                problems.add_fmt(e.pos, "missing-index", _BUILD, "<{}> has no index; assumed {}", e.name, index)
            self.global_indices[e.name].check(e, index, problems)
            if shots:
                problems.add(e.pos, "late-definition", f"<{e.name}{index}> is defined after the shots began", _BUILD)
            items.append(Entity(index, desc))
            self.defined[e.name.lower()].add(index)
        else:  # Frame / Video
            slot = e.name.lower()
            cur = shots[-1] if shots and self.pairing_open else None
            index = e.index
            if index is None:
                if cur is not None and getattr(cur, slot) is None:
                    index = cur.index
                else:
                    index = (shots[-1].index + 1) if shots else 1
                problems.add_fmt(e.pos, "missing-index", _BUILD, "<{}> has no index; assumed {}", e.name, index)
            if cur is not None and cur.index == index and getattr(cur, slot) is None:
                if slot == "frame":
                    problems.add(e.pos, "entry-order", f"<Frame{index}> comes after <Video{index}>", _BUILD)
                shots[-1] = Shot(
                    cur.index, desc if slot == "frame" else cur.frame, desc if slot == "video" else cur.video
                )
                return
            self.shot_indices.check(e, index, problems, what="shot")
            self._close_shot()
            shots.append(Shot(index, desc if slot == "frame" else None, desc if slot == "video" else None))
            self.shot_pos = e.pos
            self.pairing_open = True

    def _close_shot(self) -> None:
        """Report the last shot's missing half: no later entry can fill it once another shot has begun."""
        if not self.shots:
            return
        shot, pos = self.shots[-1], self.shot_pos
        if shot.frame is None:
            self.problems.add_fmt(pos, "missing-frame", _BUILD_END, "shot {0} has no <Frame{0}>", shot.index)
        if shot.video is None:
            self.problems.add_fmt(pos, "missing-video", _BUILD_END, "shot {0} has no <Video{0}>", shot.index)

    def finish(self, last: _Entry | None) -> Script:
        self._close_shot()
        if self.user is None:
            self.problems.add((1, 1), "missing-user", "the script has no <User> prompt", _BUILD_END)
        if not self.shots:
            self.problems.add(last.pos if last else (1, 1), "no-shots", "the script has no shots", _BUILD_END)
        g = self.globals
        return Script(self.user, tuple(g["Character"]), tuple(g["Environment"]), tuple(self.shots), tuple(self.markers))


def _check_text(
    e: _Entry, defined: dict[str, set[int]], pending: list[tuple[int, str, int, Pos, str]], problems: _Problems
) -> None:
    """Inline problems (tags, cues) of one entry; mentions not yet defined wait in ``pending`` for the end."""
    text = e.text
    if "<" not in text and ">" not in text:  # no tag, cue or bracket: nothing to report
        return
    issues: list[InlineIssue] = tag_issues(text) + scan_cues(text)[1]
    mentions = []
    for tag in find_tags(text):
        kind = tag.name.lower()
        if kind in ENTITY_TAGS and tag.index and tag.index not in defined[kind]:
            mentions.append(
                (kind, tag.index, tag.start, f"<{ENTITY_TAGS[kind]}{tag.index}> is mentioned but never defined")
            )
    for issue in issues:
        problems.add(e.locate(issue.offset), issue.code, issue.message, _TEXTS)
    for kind, index, offset, message in mentions:
        pending.append((problems.next_seq(), kind, index, e.locate(offset), message))
