"""A HEURISTIC guess whether a ``<-...->`` cue is spoken dialogue or sound/music.

The script format does not mark the difference (paper §3.2 uses the same ``-...-`` delimiters for both), so nothing
here is ground truth: it is a keyword rule tuned by reading the six published samples, good enough to colour a viewer
or route a cue to a TTS or sound model by default, and always labelled ``kind_guess`` in output.
"""

from __future__ import annotations

import re
from typing import Literal

CueGuess = Literal["dialogue", "sound"]

# Words that describe audio rather than say something. Matched as whole words, case-insensitively.
_SOUND_WORDS = (
    "music|melody|melodic|piano|guitar|strings?|cello|violin|flute|synth|choir|orchestral|orchestra|chord|note|"
    "hum|humming|thrumming|rhythm|tempo|crescendo|percussion|drums?|jazz|theme|soundtrack|score|"
    "sound|sounds|noise|silence|applause|cheers|chatter|murmurs?|footsteps|creaking|clattering|chime|gasp|"
    "ticking|echo|thunder|wind|rain|birds?|bell|gavel|singing|playing|swells?|fades?|begins|plays|intensifies"
)
_SOUND_RE = re.compile(rf"\b({_SOUND_WORDS})\b", re.IGNORECASE)
# Spoken lines usually read as a sentence addressed to someone: first/second person words or a question.
_SPEECH_RE = re.compile(r"\b(I|I'm|I've|we|we're|you|you're|your|my|me|us|our|let's)\b|\?", re.IGNORECASE)


def guess_cue_kind(text: str) -> CueGuess:
    """Guess "dialogue" or "sound" for a cue text (heuristic; see the module docstring).

    A cue counts as sound when it uses audio vocabulary (music, hum, applause, ...) and no first/second-person
    words or question mark; everything else is taken as dialogue.

    Args:
        text: the cue text without delimiters.

    Returns:
        "dialogue" or "sound".
    """
    sound = len(_SOUND_RE.findall(text))
    speech = len(_SPEECH_RE.findall(text))
    return "sound" if sound > speech else "dialogue"
