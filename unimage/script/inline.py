"""Scanner for what lives *inside* one description: tags, mentions and ``<-...->`` cues.

Used twice: by :class:`~unimage.script.model.Description` to expose mentions and cues of a (canonical) text, and by
the parser to find problems (unknown tags, broken cues) and locate them. It works on a single-line text with character
offsets, so the same offsets appear in the JSON output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A tag-shaped run: "<Name>" or "<Name12>", tolerating spaces inside the brackets and any letter case. Indices are
# capped at 9 digits so hostile input cannot hit int() limits; longer runs are not tags.
TAG_RE = re.compile(r"<\s*([A-Za-z_|]+)\s*(\d{1,9})?\s*>")
# Where :func:`scan_cues` can act: a bracket, or the start of a ``->``.
_CUE_SPECIAL = re.compile(r"[<>]|->")

# Canonical spellings, keyed by the lower-cased name.
ENTITY_TAGS = {"character": "Character", "environment": "Environment"}
ENTRY_TAGS = {
    "user": "User",
    "frame": "Frame",
    "video": "Video",
    "extension": "Extension",
    "continuation": "Continuation",
}

MentionKind = Literal["character", "environment"]


@dataclass(frozen=True)
class Mention:
    """A located ``<CharacterN>`` / ``<EnvironmentN>`` inside a text; ``start:end`` slices the tag itself."""

    kind: MentionKind
    index: int
    start: int
    end: int


@dataclass(frozen=True)
class Cue:
    """A ``<-...->`` dialogue or sound cue; ``start:end`` covers the delimiters, ``text`` is the stripped inside.

    ``complete`` is False when a delimiter was missing or malformed (``<text->``, ``<-text>``, or cut off); the text is
    kept either way. Whether a cue is speech or sound is not in the format; see :mod:`unimage.script.cues` for a guess.
    """

    start: int
    end: int
    text: str
    complete: bool = True


@dataclass(frozen=True)
class InlineIssue:
    """A problem inside a text, located by character offset (the parser maps it to line/column)."""

    offset: int
    code: str
    message: str


@dataclass(frozen=True)
class TagSpan:
    """A tag-shaped run found by :data:`TAG_RE`: its name (as written), index, and span."""

    name: str
    index: int | None
    start: int
    end: int

    @property
    def canonical(self) -> str | None:
        """Canonical spelling (``<Character2>``) for known names, else None."""
        key = self.name.lower()
        base = ENTITY_TAGS.get(key) or ENTRY_TAGS.get(key)
        if base is None:
            return None
        return f"<{base}{'' if self.index is None else self.index}>"


def find_tags(text: str) -> list[TagSpan]:
    """All tag-shaped runs in ``text``, in order."""
    return [
        TagSpan(m.group(1), None if m.group(2) is None else int(m.group(2)), m.start(), m.end())
        for m in TAG_RE.finditer(text)
    ]


def find_mentions(text: str) -> tuple[Mention, ...]:
    """Mentions of global entries: tags named Character/Environment (any case) that carry an index."""
    out = []
    for tag in find_tags(text):
        kind = tag.name.lower()
        if kind in ENTITY_TAGS and tag.index is not None:
            out.append(Mention(kind, tag.index, tag.start, tag.end))  # type: ignore[arg-type]
    return tuple(out)


def tag_issues(text: str) -> list[InlineIssue]:
    """Problems with tags inside a description: unknown names, missing indices, entry tags used inline."""
    issues = []
    for tag in find_tags(text):
        key = tag.name.lower()
        written = text[tag.start : tag.end]
        if key in ENTITY_TAGS:
            if tag.index is None:
                issues.append(InlineIssue(tag.start, "missing-index", f"tag {written} has no index"))
            elif tag.index == 0:
                issues.append(InlineIssue(tag.start, "zero-index", f"tag {written}: indices are 1-based"))
        elif key in ENTRY_TAGS:
            issues.append(
                InlineIssue(
                    tag.start, "misplaced-tag", f"entry tag {written} inside a description (not at a line start)"
                )
            )
        else:
            issues.append(InlineIssue(tag.start, "unknown-tag", f"unknown tag {written}"))
    return issues


def scan_cues(text: str) -> tuple[tuple[Cue, ...], list[InlineIssue]]:
    """Find ``<-...->`` cues, tolerating a missing ``-`` on either side and a cut-off end.

    Rules (all on the single-line text): a cue opens at ``<-`` and closes at the first ``->`` before the next ``<-``;
    failing that at a bare ``>`` that is not the end of a tag (problem ``cue-close``); failing that it runs to the next
    ``<-`` or the end (problem ``cue-unterminated``). A bare ``<`` that is not a tag opens a cue only if ``->`` follows
    before the next ``<`` (problem ``cue-open``); otherwise it is a stray bracket. A ``->`` or ``>`` outside any cue or
    tag is reported as stray.
    """
    tag_at = {t.start: t.end for t in find_tags(text)}
    in_tag = {i for s, e in tag_at.items() for i in range(s, e)}
    cues: list[Cue] = []
    issues: list[InlineIssue] = []
    i, n = 0, len(text)
    while i < n:
        if i in tag_at:
            i = tag_at[i]
            continue
        if text.startswith("<-", i):
            nxt = text.find("<-", i + 2)
            region_end = n if nxt < 0 else nxt
            close = text.find("->", i + 2, region_end)
            if close >= 0:
                cues.append(Cue(i, close + 2, text[i + 2 : close].strip()))
                i = close + 2
                continue
            bare = next((j for j in range(i + 2, region_end) if text[j] == ">" and j not in in_tag), -1)
            if bare >= 0:
                cues.append(Cue(i, bare + 1, text[i + 2 : bare].strip(), complete=False))
                issues.append(InlineIssue(bare, "cue-close", "cue closed with '>' instead of '->'"))
                i = bare + 1
                continue
            end = len(text[:region_end].rstrip())
            cues.append(Cue(i, end, text[i + 2 : end].strip(), complete=False))
            issues.append(InlineIssue(i, "cue-unterminated", "cue '<-' is never closed with '->'"))
            i = region_end
            continue
        ch = text[i]
        if ch == "<":
            nxt_lt = text.find("<", i + 1)
            region_end = n if nxt_lt < 0 else nxt_lt
            close = text.find("->", i + 1, region_end)
            if close >= 0:
                cues.append(Cue(i, close + 2, text[i + 1 : close].strip(), complete=False))
                issues.append(InlineIssue(i, "cue-open", "cue opened with '<' instead of '<-'"))
                i = close + 2
                continue
            issues.append(InlineIssue(i, "stray-bracket", "stray '<' (neither a tag nor a cue)"))
        elif text.startswith("->", i):
            issues.append(InlineIssue(i, "stray-bracket", "'->' without a matching '<-'"))
            i += 2
            continue
        elif ch == ">":
            issues.append(InlineIssue(i, "stray-bracket", "stray '>' (neither a tag nor a cue)"))
        # Skip to the next character any branch above reacts to (a per-character step made long texts slow).
        nxt_special = _CUE_SPECIAL.search(text, i + 1)
        i = n if nxt_special is None else nxt_special.start()
    return tuple(cues), issues
