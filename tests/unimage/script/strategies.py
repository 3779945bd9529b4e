"""Hypothesis strategies: well-formed scripts (for round trips) and hostile text (for never-raises)."""

from __future__ import annotations

from hypothesis import strategies as st

from unimage.script.model import CONTINUATION_PROMPT, Description, Entity, Marker, Script, Shot

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',;:!?.-éü’…\"()"
words = st.text(alphabet=_ALPHABET, min_size=1, max_size=7)


@st.composite
def plain_text(draw, max_words: int = 6) -> str:
    """Single-spaced words ending with a full stop."""
    return " ".join(draw(st.lists(words, min_size=1, max_size=max_words))) + "."


@st.composite
def description(draw, n_chars: int, n_envs: int) -> Description:
    """Words, glued or spaced mentions of defined entries, and complete cues, ending with a full stop."""
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        options = ["word", "cue"] + (["char"] if n_chars else []) + (["env"] if n_envs else [])
        kind = draw(st.sampled_from(options))
        if kind == "word":
            part = draw(words)
        elif kind == "cue":
            part = "<-" + " ".join(draw(st.lists(words, min_size=1, max_size=4))) + "->"
        elif kind == "char":
            part = f"<Character{draw(st.integers(1, n_chars))}>"
        else:
            part = f"<Environment{draw(st.integers(1, n_envs))}>"
        glue = "" if parts and kind in ("char", "env") and draw(st.booleans()) else " "
        parts.append((glue if parts else "") + part)
    return Description("".join(parts) + ".")


@st.composite
def well_formed_scripts(draw) -> Script:
    """Scripts that the parser must accept without problems and rebuild exactly from their canonical text."""
    n_chars, n_envs, n_shots = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(1, 4))
    chars = tuple(Entity(i, draw(description(0, 0))) for i in range(1, n_chars + 1))
    envs = tuple(Entity(i, draw(description(n_chars, 0))) for i in range(1, n_envs + 1))
    shots = tuple(
        Shot(i, draw(description(n_chars, n_envs)), draw(description(n_chars, n_envs))) for i in range(1, n_shots + 1)
    )
    markers = []
    for _ in range(draw(st.integers(0, 2))):
        position = draw(st.integers(0, n_shots))
        if draw(st.booleans()):
            markers.append(Marker("continuation", CONTINUATION_PROMPT, position))
        else:
            markers.append(Marker("extension", draw(plain_text()), position))
    markers.sort(key=lambda m: m.position)
    return Script(draw(plain_text()), chars, envs, shots, tuple(markers))


FRAGMENTS = (
    "<User>:",
    "<Character1>:",
    "<Character2>",
    "<Environment1>",
    "< frame 2 >",
    "<Frame1>:",
    "<Video1>:",
    "<Video2>",
    "<Extension>:",
    "<Continuation>:",
    "<-",
    "->",
    "<",
    ">",
    "-",
    ":",
    "\n",
    "\r\n",
    "\f",
    " ",
    "\t",
    "word",
    "Hello.",
    "<Foo>",
    "<Character0>",
    "<Frame99999999999999999999>:",
    "<Character" + "7" * 5000 + ">",
    "é",
    "\x00",
)
hostile_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=5), max_size=40).map("".join)
