"""The script beside each storyboard: load it (``script.json``, else ``script.txt``) and render it as safe HTML.

Mentions ``<CharacterN>``/``<EnvironmentN>`` are shown with the entity's name (its ``name`` field, else a short
name taken from its description), and ``<-...->`` cues are marked. The structured form comes from
`unimage.script` (pure Python, same distribution), whose parser never raises on malformed text, so the viewer shows
whatever a method wrote. All text is HTML-escaped before markup is added.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboard.runs import RunReadError, read_json
from formats.vistory import SCRIPT_JSON, SCRIPT_TXT

_STOP_WORDS = {"with", "in", "wearing", "who", "whose", "that", "holding", "and", "is", "has", "stands", "sits"}

CSS = """
<style>
.um-mention{background:#e8f0fe;color:#1a4fa0;border-radius:4px;padding:0 4px;font-weight:600;white-space:nowrap}
.um-env{background:#e6f4ea;color:#1e6b34;border-radius:4px;padding:0 4px;font-weight:600}
.um-cue{background:#fff4e5;color:#8a4b00;border-radius:4px;padding:0 4px;font-style:italic}
.um-script{font-size:0.85rem;line-height:1.35}
.um-script b{color:#555}
</style>
"""


@dataclass
class ScriptView:
    """What the viewer shows of a script: entities with display names and per-shot frame/video text."""

    user_prompt: str = ""
    characters: dict[int, str] = field(default_factory=dict)
    environments: dict[int, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    shots: dict[int, tuple[str, str]] = field(default_factory=dict)

    def display_name(self, kind: str, index: int) -> str:
        key = f"{kind}{index}"
        if key in self.names:
            return self.names[key]
        desc = (self.characters if kind == "Character" else self.environments).get(index, "")
        short = short_name(desc)
        return f"{key} · {short}" if short else key


def short_name(description: str, max_words: int = 3) -> str:
    """A few head words of a description ("A young woman with long hair" -> "young woman")."""
    words = re.split(r"[\s,.;:]+", description.strip())
    out: list[str] = []
    for w in words:
        lw = w.lower()
        if not w or (not out and lw in {"a", "an", "the"}):
            continue
        if lw in _STOP_WORDS or len(out) >= max_words:
            break
        out.append(w)
    return " ".join(out)


def load_script(story_dir: Path) -> ScriptView | None:
    """The script stored beside a story's shots, or None when there is none.

    Raises:
        RunReadError: when ``script.json`` exists but is not valid JSON (the message names the file).
    """
    j = story_dir / SCRIPT_JSON
    if j.is_file():
        return from_dict(read_json(j), source=str(j))
    t = story_dir / SCRIPT_TXT
    if t.is_file():
        return from_text(t.read_text(encoding="utf-8", errors="replace"))
    return None


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        for k in ("text", "description", "content"):
            if isinstance(v.get(k), str):
                return str(v[k])
    return "" if v is None else str(v)


def _entities(v: Any) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    items = v.items() if isinstance(v, dict) else enumerate(v or [], start=1)
    for k, e in items:
        if isinstance(e, dict):
            out[int(e.get("index") or k)] = e
        else:
            out[int(k)] = {"description": str(e)}
    return out


def from_dict(data: Any, source: str = "script") -> ScriptView:
    """Build the view from the structured JSON form (the schema of `unimage script parse --json`)."""
    if not isinstance(data, dict):
        raise RunReadError(f"{source}: expected a JSON object")
    view = ScriptView(user_prompt=_text(data.get("user_prompt", "")))
    for kind, key, target in (
        ("Character", "characters", view.characters),
        ("Environment", "environments", view.environments),
    ):
        for idx, e in _entities(data.get(key)).items():
            target[idx] = _text(e.get("description", e.get("text", "")))
            if isinstance(e.get("name"), str) and e["name"]:
                view.names[f"{kind}{idx}"] = e["name"]
    for i, s in enumerate(data.get("shots") or [], start=1):
        if isinstance(s, dict):
            view.shots[int(s.get("index", i))] = (_text(s.get("frame")), _text(s.get("video")))
    return view


def from_text(text: str) -> ScriptView:
    """Build the view from script text through `unimage.script`'s tolerant parser."""
    from unimage.script import parse, to_dict

    return from_dict(to_dict(parse(text).script))


def _spans(text: str) -> list[tuple[int, int, str, Any]]:
    """Located mentions and cues: (start, end, "mention" | "cue", (kind, index) | cue text), sorted, no overlaps."""
    from unimage.script.inline import find_mentions, scan_cues

    spans: list[tuple[int, int, str, Any]] = []
    for mm in find_mentions(text):
        spans.append((mm.start, mm.end, "mention", (mm.kind.capitalize(), mm.index)))
    for c in scan_cues(text)[0]:
        spans.append((c.start, c.end, "cue", c.text))
    spans.sort()
    out: list[tuple[int, int, str, Any]] = []
    for sp in spans:
        if not out or sp[0] >= out[-1][1]:
            out.append(sp)
    return out


def highlight(text: str, view: ScriptView) -> str:
    """HTML for one description: escaped text, mentions replaced by named chips, cues marked."""
    out: list[str] = []
    pos = 0
    for start, end, kind, payload in _spans(text):
        out.append(html.escape(text[pos:start]))
        if kind == "mention":
            ent, idx = payload
            desc = (view.characters if ent == "Character" else view.environments).get(idx, "not defined")
            cls = "um-mention" if ent == "Character" else "um-env"
            out.append(
                f'<span class="{cls}" title="{html.escape(desc, quote=True)}">'
                f"{html.escape(view.display_name(ent, idx))}</span>"
            )
        else:
            out.append(f'<span class="um-cue">“{html.escape(str(payload).strip())}”</span>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def shot_html(view: ScriptView | None, index: int) -> str:
    """Frame and video description of one shot as HTML ("" when the script has no such shot)."""
    if view is None or index not in view.shots:
        return ""
    frame, video = view.shots[index]
    parts = []
    if frame:
        parts.append(f"<b>Frame:</b> {highlight(frame, view)}")
    if video:
        parts.append(f"<b>Video:</b> {highlight(video, view)}")
    return '<div class="um-script">' + "<br/>".join(parts) + "</div>"
