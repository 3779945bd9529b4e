"""The inline scanner (known answers) and the cue-kind heuristic (agreement with hand labels)."""

from __future__ import annotations

from unimage.script.cues import guess_cue_kind
from unimage.script.inline import Cue, Mention, find_mentions, scan_cues, tag_issues
from unimage.script.model import Description


def test_mentions_and_cues_offsets():
    text = "A man<Character1> says <-Hi, <Character2>!-> in <Environment1>."
    d = Description(text)
    assert d.mentions == (
        Mention("character", 1, 5, 17),
        Mention("character", 2, 29, 41),
        Mention("environment", 1, 48, 62),
    )
    assert d.cues == (Cue(23, 44, "Hi, <Character2>!"),)


def test_scanner_issues():
    cues, issues = scan_cues("a -> b <-c> d < e")
    assert cues == (Cue(7, 11, "c", complete=False),)
    assert [(i.offset, i.code) for i in issues] == [(2, "stray-bracket"), (10, "cue-close"), (14, "stray-bracket")]
    assert [i.code for i in tag_issues("<Frame2> <Foo> <Character> <Environment0>")] == [
        "misplaced-tag",
        "unknown-tag",
        "missing-index",
        "zero-index",
    ]
    assert find_mentions("<character 3>") == (Mention("character", 3, 0, 13),)


# Hand labels for every cue of unimage_result_1.txt and unimage_result_9.txt (read by us; D dialogue, S sound).
LABELLED = {
    "Soft, melodic piano music begins": "S",
    "Good morning, I'm Mr. Henderson from the city's health department.": "D",
    "Health department? Oh, right.": "D",
    "The jazz music abruptly stops, replaced by a low, suspenseful hum": "S",
    "Unsanitary? But... everything is clean!": "D",
    "A sharp, dissonant chord plays": "S",
    "This can't be happening.": "D",
    "I won't give up.": "D",
    "I can't believe it, Maria! We found it!": "D",
    "A lost civilization, right here!": "D",
    "Mysterious, awe-inspiring orchestral music": "S",
    "The implications for understanding ancient cultures are immense,": "D",
    "You were brilliant today, Maria,": "D",
    "Light, celebratory jazz music": "S",
    "What's happening?": "D",
    "Mysterious, low-frequency hum building in intensity": "S",
}


def test_cue_heuristic_agrees_with_hand_labels():
    guesses = {t: "D" if guess_cue_kind(t) == "dialogue" else "S" for t in LABELLED}
    assert guesses == LABELLED
