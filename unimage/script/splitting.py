"""Pre-Context Script Splitting (paper §3.4) as pure, seeded functions on scripts.

Two training views of one complete script:

(a) prompt-based extension: cut at a random shot boundary and insert ``<Extension>: new prompt`` before the second
    part; the new prompt summarizes the second part (the paper uses Qwen2.5; here any ``str -> str`` callable, by
    default :func:`event_summary`, a deterministic summary of the second part's events: "Then Pip waves at Bo in
    the night meadow. Bo jumps.").
(b) in-context continuation: insert ``<Continuation>: Based on the above script, continue to write the subsequent shot
    content.`` before the last shot.

Each returns a ``SplitSample``: the structure (the script with the inserted marker) and the *cut* (the shots in the
context). Which blocks are context (no loss) and which are the target (what the model must write) is decided per block
by ``in_context``; ``view_text`` gives the two parts as text (``context + target`` is exactly the canonical text of
the script with the marker), for measures per target byte.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from unimage.script.model import CONTINUATION_PROMPT, Marker, Script
from unimage.script.serialize import entry_line, header_text, marker_text, serialize, shot_text

Summarizer = Callable[[str], str]
SplitKind = Literal["full", "extension", "continuation"]
BlockKind = Literal["user", "globals", "marker", "shot"]


def in_context(kind: SplitKind, cut: int, block: BlockKind, position: int) -> bool:
    """Whether a block of a view's script is context (conditioning, no loss) rather than target.

    Args:
        kind: The view's kind; ``full`` has only the ``<User>`` line as context (the model writes the globals too).
        cut: Shots in the context (``SplitSample.cut``).
        block: The block's kind (``unimage.data.segments.script_blocks`` order: user, globals, then markers and shots).
        position: A shot's index in ``script.shots``; a marker's ``position`` (the shots before it); else unused.
    """
    if block == "user":
        return True
    if kind == "full":
        return False
    if block == "globals":
        return True
    return position <= cut if block == "marker" else position < cut


@dataclass(frozen=True)
class SplitSample:
    """One training view: the script (with the inserted marker; the input for ``full``) and its cut.

    Attributes:
        kind: ``full``, ``extension`` or ``continuation``.
        script: The script with the inserted marker (equal to the input for ``full``).
        cut: Shots in the context (0 for ``full``); the marker at ``cut`` stays in the context.
    """

    kind: SplitKind
    script: Script
    cut: int

    def in_context(self, block: BlockKind, position: int) -> bool:
        """See the module function ``in_context``."""
        return in_context(self.kind, self.cut, block, position)

    @property
    def context(self) -> str:
        """The context as canonical text (``view_text``)."""
        return view_text(self.kind, self.script, self.cut)[0]

    @property
    def target(self) -> str:
        """The target as canonical text (``view_text``)."""
        return view_text(self.kind, self.script, self.cut)[1]


def render_split(script: Script, cut: int) -> tuple[str, str]:
    """Cut the canonical text of ``script`` before shot ``cut`` (markers at ``cut`` stay in the context)."""
    before: list[str] = []
    after: list[str] = []
    header = header_text(script)
    if header:
        before.append(header)
    for position in range(len(script.shots) + 1):
        for m in script.markers:
            if m.position == position:
                (before if position <= cut else after).append(marker_text(m))
        if position < len(script.shots):
            (before if position < cut else after).append(shot_text(script.shots[position]))
    context = "\n".join(before) + ("\n" if before and after else "")
    return context, "\n".join(after)


def view_text(kind: SplitKind, script: Script, cut: int) -> tuple[str, str]:
    """(context, target) of a view as text; ``context + target == serialize(script)``.

    The same partition as ``in_context``, block by block (``tests/unimage/data`` checks it): ``full`` puts only the
    ``<User>`` line in the context, the others cut before shot ``cut`` (``render_split``).
    """
    if kind != "full":
        return render_split(script, cut)
    text = serialize(script)
    context = entry_line("User", script.user_prompt) + "\n" if script.user_prompt is not None else ""
    if not text.startswith(context):  # pragma: no cover - serialize always writes the user line first
        raise AssertionError("canonical text does not start with the <User> line")
    return context, text[len(context) :]


def split_full(script: Script) -> SplitSample:
    """No splitting: the context is the ``<User>`` line, the target is everything the model writes from it.

    The target includes the global Character/Environment entries, because ``Director.write(prompt)`` must produce them
    from the prompt alone; with the globals in the context the understanding expert would never learn to write them.
    """
    _require_shots(script, 1, "full")
    return SplitSample("full", script, cut=0)


def split_for_extension(script: Script, seed: int, summarizer: Summarizer | None = None) -> SplitSample:
    """Prompt-based extension: insert ``<Extension>: summary`` at a seeded random shot boundary.

    Args:
        script: a complete script with at least two shots.
        seed: picks the cut uniformly among the ``len(shots) - 1`` inner boundaries.
        summarizer: maps the second part's canonical text to the new user prompt; default :func:`event_summary`.

    Raises:
        ValueError: fewer than two shots, or the summarizer returned an empty prompt.
    """
    _require_shots(script, 2, "extension")
    cut = random.Random(seed).randint(1, len(script.shots) - 1)
    second_part = "".join(shot_text(s) for s in script.shots[cut:])
    prompt = " ".join((summarizer or event_summary)(second_part).split())
    if not prompt:
        raise ValueError("split_for_extension: the summarizer returned an empty prompt")
    return _insert(script, Marker("extension", prompt, cut), "extension")


def split_for_continuation(script: Script) -> SplitSample:
    """In-context continuation: insert ``<Continuation>: <system prompt>`` before the last shot."""
    _require_shots(script, 2, "continuation")
    return _insert(script, Marker("continuation", CONTINUATION_PROMPT, len(script.shots) - 1), "continuation")


def sample_split(
    script: Script,
    seed: int,
    *,
    p_extension: float = 1 / 3,
    p_continuation: float = 1 / 3,
    summarizer: Summarizer | None = None,
) -> SplitSample:
    """Draw one view of ``script``: extension, continuation, or full, with the given probabilities (seeded).

    Scripts too short for a split fall back to "full", so a data pipeline can call this on every script.
    """
    if p_extension < 0 or p_continuation < 0 or p_extension + p_continuation > 1:
        raise ValueError(f"bad split probabilities: extension={p_extension}, continuation={p_continuation}")
    rng = random.Random(seed)
    u = rng.random()
    if len(script.shots) >= 2 and u < p_extension:
        return split_for_extension(script, rng.randrange(2**32), summarizer)
    if len(script.shots) >= 2 and u < p_extension + p_continuation:
        return split_for_continuation(script)
    return split_full(script)


def _insert(script: Script, marker: Marker, kind: SplitKind) -> SplitSample:
    markers = sorted((*script.markers, marker), key=lambda m: m.position)  # stable: ours follows existing ones
    return SplitSample(kind, replace(script, markers=tuple(markers)), marker.position)


def _require_shots(script: Script, n: int, what: str) -> None:
    if len(script.shots) < n:
        raise ValueError(f"{what} split needs at least {n} shot(s), the script has {len(script.shots)}")


# --------------------------------------------------------------------------- default summarizer

_PLACE = re.compile(r"\bin the ((?:(?!\bin the )[^<>,.;:])+?)\s*<Environment\d+>")
_FIRST_SENTENCE = re.compile(r"^(.*?[.!?])(?:\s|$)")


def event_summary(text: str, *, max_shots: int = 2, max_words: int = 40) -> str:
    """The new user prompt of an extension: what happens next, as a user would ask for it.

    The first sentence of each ``<VideoN>`` (its action; cues and tags removed) for the first ``max_shots`` shots,
    after "Then", with the place of the first shot ("in the night meadow", read from ``in the X<EnvironmentN>`` in
    its ``<FrameN>``) woven into the first sentence: "Then Pip waves at Bo in the night meadow. Bo jumps." Why not
    the frequency-scored :func:`extractive_summary`: on scripts whose videos repeat "X says: <-line->" it picks
    exactly those sentences, and with the cues removed the prompt degenerates to "X says:. X says:.", which tells
    the model nothing about the events it must write. Falls back to :func:`extractive_summary` when ``text`` has
    no ``<VideoN>`` entry.
    """
    entries = _ENTRY.findall(text)
    videos = [body for kind, body in entries if kind == "Video"]
    if not videos:
        return extractive_summary(text, max_words=max_words)
    frames = [body for kind, body in entries if kind == "Frame"]
    place = _PLACE.search(frames[0]) if frames else None
    actions = []
    for body in videos[:max_shots]:
        clean = " ".join(_TAG.sub("", body).split())
        first = _FIRST_SENTENCE.match(clean)
        sentence = (first.group(1) if first else clean).strip()
        if sentence and any(c.isalnum() for c in sentence):
            actions.append(sentence)
    if not actions:
        return extractive_summary(text, max_words=max_words)
    if place is not None and place.group(1).strip() not in actions[0]:
        head = actions[0].rstrip(".!?")
        actions[0] = f"{head} in the {' '.join(place.group(1).split())}{actions[0][len(head) :] or '.'}"
    words = f"Then {' '.join(actions)}".split()
    return " ".join(words[:max_words])


_TAG = re.compile(r"<-.*?->|<[^<>]*>")
_ENTRY = re.compile(r"^<(Frame|Video)\d+>:\s?(.*)$", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]+")
# Function words and film grammar: frequent in every shot, they say nothing about the plot.
_STOP_WORDS = (
    "the a an and or but of to in on at by for with from into onto as is are was were be been his her their its "
    "he she they them him it this that these those then than while who which what there here over under through "
    "camera shot close-up medium long wide frame scene pans pan cuts cut zooms zoom pulls back holds opens focuses "
    "shows slowly slightly now still"
)
_STOP = frozenset(_STOP_WORDS.split())


def extractive_summary(text: str, *, max_sentences: int = 2, max_words: int = 40) -> str:
    """A deterministic extractive summary of shot descriptions, used as the default new user prompt.

    Sentences of the video descriptions (frame descriptions when there are none) are scored by the mean corpus
    frequency of their content words (Luhn-style); the best ``max_sentences`` are returned in story order, with tags
    and ``<-...->`` cues removed and the result cut to ``max_words`` words.

    Args:
        text: canonical shot lines (``<FrameN>: ...`` / ``<VideoN>: ...``) or any plain text.
        max_sentences: how many sentences to keep.
        max_words: hard cap on the summary length.

    Returns:
        The summary; empty only when ``text`` has no non-space character.
    """
    entries = _ENTRY.findall(text)
    bodies = [b for kind, b in entries if kind == "Video"] or [b for _, b in entries] or [text]
    sentences = []
    for body in bodies:
        clean = " ".join(_TAG.sub(" ", body).split())
        clean = re.sub(r"\s+([,.;:!?'’])", r"\1", clean)
        sentences += [s for s in re.split(r"(?<=[.!?])\s+", clean) if any(c.isalnum() for c in s)]
    if not sentences:  # nothing but tags and cues: fall back to the first non-empty body as written
        return " ".join(next((b for b in bodies if b.strip()), "").split()[:max_words])
    words = [[w.lower() for w in _WORD.findall(s) if w.lower() not in _STOP] for s in sentences]
    freq = Counter(w for ws in words for w in ws)
    scores = [sum(freq[w] for w in ws) / max(len(ws), 1) for ws in words]
    best = sorted(sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:max_sentences])
    summary = " ".join(sentences[i] for i in best).split()
    return " ".join(summary[:max_words])
