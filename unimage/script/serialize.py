"""Canonical text and JSON forms of a :class:`~unimage.script.model.Script`.

Canonical text: ``<User>``, then characters, then environments, one entry per line; a blank line; then each shot as
``<FrameN>`` and ``<VideoN>`` lines followed by a blank line, with markers on their own line (blank-line separated)
before the shot they precede. ``parse(serialize(s)).script == s`` for every well-formed script.

JSON (``to_dict``): the keys documented in the README (``user_prompt``, ``characters``, ``environments``, ``shots``,
``markers``, ``problems``). Mentions and cues are included for readers; ``from_dict`` rebuilds the structure from the
texts alone (mentions and cues are views of the text), so ``from_dict(to_dict(s)).script == s``.
"""

from __future__ import annotations

from typing import Any

from unimage.script.cues import guess_cue_kind
from unimage.script.inline import Cue, Mention
from unimage.script.model import Description, Entity, Marker, ParseResult, Problem, Script, Shot


def entry_line(tag: str, text: str) -> str:
    """One ``<Tag>: text`` line (no trailing space for an empty text)."""
    return f"<{tag}>: {text}" if text else f"<{tag}>:"


def shot_text(shot: Shot) -> str:
    """The canonical lines of one shot, newline-terminated."""
    lines = []
    if shot.frame is not None:
        lines.append(entry_line(f"Frame{shot.index}", shot.frame.text))
    if shot.video is not None:
        lines.append(entry_line(f"Video{shot.index}", shot.video.text))
    return "".join(line + "\n" for line in lines)


def marker_text(marker: Marker) -> str:
    """The canonical line of one marker, newline-terminated."""
    return entry_line(marker.tag, marker.text) + "\n"


def header_text(script: Script) -> str:
    """User prompt and global entries, newline-terminated (empty string when there are none)."""
    lines = []
    if script.user_prompt is not None:
        lines.append(entry_line("User", script.user_prompt))
    lines += [entry_line(f"Character{c.index}", c.description.text) for c in script.characters]
    lines += [entry_line(f"Environment{e.index}", e.description.text) for e in script.environments]
    return "".join(line + "\n" for line in lines)


def serialize_blocks(script: Script) -> list[str]:
    """The canonical text as blocks (header, markers, shots) that concatenate, with blank lines, to the whole.

    Splitting code cuts the text at block boundaries, so exposing them keeps one definition of the layout.
    """
    blocks = (
        [header_text(script)] if (script.user_prompt is not None or script.characters or script.environments) else []
    )
    for position in range(len(script.shots) + 1):
        blocks += [marker_text(m) for m in script.markers if m.position == position]
        if position < len(script.shots):
            blocks.append(shot_text(script.shots[position]))
    return [b for b in blocks if b]


def serialize(script: Script) -> str:
    """The canonical text of a script (blocks separated by one blank line, ending with a newline)."""
    return "\n".join(serialize_blocks(script))


# --------------------------------------------------------------------------- JSON


def _mention_dict(m: Mention, field: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"field": field} if field else {}
    return d | {"kind": m.kind, "index": m.index, "start": m.start, "end": m.end}


def _cue_dict(c: Cue, field: str) -> dict[str, Any]:
    return {
        "field": field,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "complete": c.complete,
        "kind_guess": guess_cue_kind(c.text),
    }


def _entity_dict(e: Entity) -> dict[str, Any]:
    return {
        "index": e.index,
        "description": e.description.text,
        "mentions": [_mention_dict(m) for m in e.description.mentions],
    }


def _shot_dict(s: Shot) -> dict[str, Any]:
    fields = {"frame": s.frame, "video": s.video}
    return {
        "index": s.index,
        "frame": None if s.frame is None else s.frame.text,
        "video": None if s.video is None else s.video.text,
        "mentions": [_mention_dict(m, f) for f, d in fields.items() if d is not None for m in d.mentions],
        "cues": [_cue_dict(c, f) for f, d in fields.items() if d is not None for c in d.cues],
    }


def to_dict(script: Script, problems: tuple[Problem, ...] | list[Problem] = ()) -> dict[str, Any]:
    """The JSON-ready dict of a script (schema in the README); ``kind_guess`` on cues is a heuristic, not data."""
    return {
        "user_prompt": script.user_prompt,
        "characters": [_entity_dict(c) for c in script.characters],
        "environments": [_entity_dict(e) for e in script.environments],
        "shots": [_shot_dict(s) for s in script.shots],
        "markers": [
            {"kind": m.kind, "tag": m.tag, "text": m.text, "position": m.position, "before_shot": script.before_shot(m)}
            for m in script.markers
        ],
        "problems": [{"line": p.line, "column": p.column, "code": p.code, "message": p.message} for p in problems],
    }


def from_dict(data: dict[str, Any]) -> ParseResult:
    """Rebuild a script and its problems from :func:`to_dict` output.

    Raises:
        ValueError: naming the first missing or mistyped field.
    """
    try:

        def desc(value: Any) -> Description | None:
            return None if value is None else Description(str(value))

        def entities(key: str) -> tuple[Entity, ...]:
            return tuple(Entity(int(e["index"]), Description(str(e["description"]))) for e in data[key])

        script = Script(
            user_prompt=data["user_prompt"],
            characters=entities("characters"),
            environments=entities("environments"),
            shots=tuple(Shot(int(s["index"]), desc(s["frame"]), desc(s["video"])) for s in data["shots"]),
            markers=tuple(
                Marker(m["kind"], str(m["text"]), int(m["position"]), str(m["tag"])) for m in data["markers"]
            ),
        )
        problems = tuple(
            Problem(int(p["line"]), int(p["column"]), str(p["message"]), str(p["code"]))
            for p in data.get("problems", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a UniMAGE script dict: bad or missing field {exc}") from exc
    if script.user_prompt is not None and not isinstance(script.user_prompt, str):
        raise ValueError("not a UniMAGE script dict: field 'user_prompt' must be a string or null")
    for m in script.markers:
        if m.kind not in ("extension", "continuation"):
            raise ValueError(f"not a UniMAGE script dict: marker kind {m.kind!r} is not 'extension' or 'continuation'")
    return ParseResult(script, problems)
