"""The script grammar the Director enforces while the model writes: which entry may come next, and which text a
description may hold.

Why: the model writes descriptions; the *structure* of a script (paper §3.2, DESIGN.md §3.1) is fixed by the format,
so the Director never leaves it to chance. At every line start it lets the model choose only among the entries the
format allows there (the tags are single special tokens, so this is a mask over a handful of ids); inside a
description it accepts a token only if the text stays well-formed. A trained model almost never hits a mask; a random
one produces garbage text that still parses. This is also how a real model is driven.

The layout is the training layout of ``unimage.data.segments``: one text segment ``<|im_start|> block <|im_end|>`` per
script block (``script_blocks``), no blank lines inside a block::

    [<Character1>: ...\\n <Environment1>: ...\\n]      the globals block (``write`` only; may be absent)
    [<Frame1>: ...\\n <Video1>: ...\\n]                 one block per shot
    [<Frame2>: ...\\n <Video2>: ...\\n] ...

Training gives no loss to anything after a block's ``<|im_end|>``, so a trained model has no learned "end of script"
signal; the number of shots is the caller's (``n_shots``), or, when open, the model may end the script by writing
``<|im_end|>`` as the first token of a new block (``SCRIPT_END``), bounded by ``max_shots`` and the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from unimage.script.inline import find_mentions, scan_cues, tag_issues

__all__ = ["BLOCK_END", "SCRIPT_END", "DescriptionState", "ScriptGrammar", "description_state"]

#: Pseudo-entries besides tags: the end of the current block, and the end of the script (an empty new block).
BLOCK_END = "<block-end>"
SCRIPT_END = "<script-end>"

DescriptionState = Literal["ok", "open_cue", "pending", "bad"]


def description_state(text: str, n_characters: int, n_environments: int) -> DescriptionState:
    """Classify a partial single-line description.

    Returns:
        ``ok``: well-formed as is; ``open_cue``: well-formed once its last ``<-`` cue is closed with ``->`` (the one
        repair the Director makes); ``pending``: ends in a ``<`` run that may still become a cue; ``bad``: contains a
        problem no continuation can fix (unknown or misplaced tag, mention of an undefined entry, stray bracket, a
        line break).
    """
    if "\n" in text or "\r" in text:
        return "bad"
    state = _closed_state(text, n_characters, n_environments)
    if state != "bad":
        return state
    start = text.rfind("<")
    opens_run = start >= 0 and ">" not in text[start:] and not text.startswith("<-", start)
    if opens_run and _closed_state(text[:start], n_characters, n_environments) == "ok":
        return "pending"
    return "bad"


def _closed_state(text: str, n_characters: int, n_environments: int) -> DescriptionState:
    defined = {"character": n_characters, "environment": n_environments}
    if any(not 1 <= m.index <= defined[m.kind] for m in find_mentions(text)):
        return "bad"
    if tag_issues(text):
        return "bad"
    cues, issues = scan_cues(text)
    if not issues:
        return "ok"
    last = cues[-1] if cues else None
    only_open_cue = len(issues) == 1 and issues[0].code == "cue-unterminated"
    if only_open_cue and last is not None and not last.complete and last.end == len(text.rstrip()):
        return "open_cue"
    return "bad"


@dataclass
class ScriptGrammar:
    """Entry-level state machine of the generated blocks of one call.

    Attributes:
        mode: ``write`` (an optional globals block, then shot blocks) or ``continue`` (shot blocks only; used by
            ``continue_`` and ``extend``).
        n_characters: Characters defined so far (mentions up to this index are allowed).
        n_environments: Environments defined so far.
        next_shot: Index of the next shot.
        max_characters: Highest character index ``write`` may define.
        max_environments: Highest environment index ``write`` may define.
        min_shots: Shots that must be written before the script may end.
        max_shots: Most shots this call may write.
        shots_written: Shots completed in this call.
        block: Kind of the open block (None between blocks).
        last: Kind of the last line of the open block (None at its start).
    """

    mode: Literal["write", "continue"]
    n_characters: int
    n_environments: int
    next_shot: int
    max_characters: int
    max_environments: int
    min_shots: int
    max_shots: int
    shots_written: int = 0
    blocks_written: int = 0
    block: Literal["globals", "shot"] | None = None
    last: Literal["character", "environment", "frame", "video"] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_shots <= self.max_shots:
            raise ValueError(f"need 1 <= min_shots <= max_shots, got {self.min_shots} and {self.max_shots}")

    @property
    def done(self) -> bool:
        """No further block may start (the shot quota is reached)."""
        return self.block is None and self.shots_written >= self.max_shots

    def _next_global(self) -> list[str]:
        out = []
        if self.last != "environment" and self.n_characters < self.max_characters:
            out.append(f"<Character{self.n_characters + 1}>")
        if self.n_environments < self.max_environments:
            out.append(f"<Environment{self.n_environments + 1}>")
        return out

    def allowed(self, wind_down: bool = False) -> list[str]:
        """Entries allowed now: tags such as ``<Frame3>``, ``BLOCK_END`` or ``SCRIPT_END``.

        Args:
            wind_down: The token budget is nearly spent: close the globals, end the script as soon as allowed.
        """
        frame = f"<Frame{self.next_shot}>"
        if self.block == "shot":
            return [f"<Video{self.next_shot - 1}>"] if self.last == "frame" else [BLOCK_END]
        if self.block == "globals":
            return [BLOCK_END] if wind_down else [*self._next_global(), BLOCK_END]
        # between blocks
        can_end = self.shots_written >= self.min_shots
        more = self.shots_written < self.max_shots and not (wind_down and can_end)
        if self.mode == "write" and self.blocks_written == 0 and not wind_down:
            return [*self._next_global(), frame]
        return [*([frame] if more else []), *([SCRIPT_END] if can_end else [])]

    def take(self, entry: str, wind_down: bool = False) -> None:
        """Record the chosen entry (one of ``allowed(wind_down)``).

        Raises:
            ValueError: ``entry`` is not allowed here (an internal error of the caller).
        """
        if entry not in self.allowed(wind_down):
            raise ValueError(f"entry {entry!r} is not allowed here; allowed: {self.allowed(wind_down)}")
        if entry == SCRIPT_END:
            return
        if entry == BLOCK_END:
            if self.block == "shot":
                self.shots_written += 1
            self.block, self.last = None, None
            self.blocks_written += 1
            return
        name = entry.strip("<>").rstrip("0123456789").lower()
        if name == "character":
            self.block, self.last = "globals", "character"
            self.n_characters += 1
        elif name == "environment":
            self.block, self.last = "globals", "environment"
            self.n_environments += 1
        elif name == "frame":
            self.block, self.last = "shot", "frame"
            self.next_shot += 1
        else:
            self.last = "video"
