"""Each kind of damage real model output shows: the structure survives and the problem is located and named."""

from __future__ import annotations

from unimage.script import parse

HEAD = "<User>: A story.\n<Character1>: A man.\n<Environment1>: A room.\n"


def problems(text):
    return [(p.line, p.column, p.code) for p in parse(text).problems]


def test_line_wraps_join_with_one_space_and_hyphen_wraps_join_directly():
    text = HEAD + "<Frame1>: A man<Character1>\n   stands in a well-\nlit room<Environment1>.\n<Video1>: He waits.\n"
    result = parse(text)
    assert result.ok
    assert result.script.shots[0].frame.text == "A man<Character1> stands in a well-lit room<Environment1>."


def test_cue_cut_across_lines():
    text = HEAD + "<Frame1>: A man.\n<Video1>: He says <-Hello\nthere, friend.-> and <-\nSoft music-\n>.\n"
    result = parse(text)
    assert result.ok
    assert [c.text for c in result.script.shots[0].video.cues] == ["Hello there, friend.", "Soft music"]


def test_cue_missing_a_dash_on_either_side():
    text = HEAD + "<Frame1>: A man.\n<Video1>: He says <Hello-> and <-Bye>.\n"
    result = parse(text)
    cues = result.script.shots[0].video.cues
    assert [(c.text, c.complete) for c in cues] == [("Hello", False), ("Bye", False)]
    assert problems(text) == [(5, 19, "cue-open"), (5, 37, "cue-close")]


def test_cue_cut_off_at_the_end_of_the_text():
    text = HEAD + "<Frame1>: A man.\n<Video1>: He says <-I never fin"
    result = parse(text)
    (cue,) = result.script.shots[0].video.cues
    assert (cue.text, cue.complete) == ("I never fin", False)
    assert problems(text) == [(5, 19, "cue-unterminated"), (5, 31, "possibly-truncated")]


def test_spaces_and_case_inside_tags_are_canonicalized():
    text = "<User>: A story.\n< character 1 > : A man.\n<Frame 1>: A man< Character1 >.\n<video1>: He waits.\n"
    result = parse(text)
    assert result.script.characters[0].index == 1
    assert result.script.shots[0].frame.text == "A man<Character1>."
    assert [p.code for p in result.problems] == ["noncanonical-tag"] * 4
    assert problems(text)[2] == (3, 17, "noncanonical-tag")


def test_unknown_tags_are_kept_in_the_text_and_reported():
    text = HEAD + "<Frame1>: A man holds <Prop1>.\n<Scene2>: Night falls.\n<Video1>: He waits.\n"
    result = parse(text)
    assert result.script.shots[0].frame.text == "A man holds <Prop1>. <Scene2>: Night falls."
    assert problems(text) == [(4, 23, "unknown-tag"), (5, 1, "unknown-tag")]


def test_out_of_order_and_duplicated_indices():
    text = HEAD + "<Frame1>: a.\n<Video1>: b.\n<Frame3>: c.\n<Video3>: d.\n<Frame3>: e.\n<Video3>: f.\n"
    result = parse(text)
    assert [s.index for s in result.script.shots] == [1, 3, 3]
    assert problems(text) == [(6, 1, "index-order"), (8, 1, "duplicate-index")]


def test_duplicated_global_entries_are_kept():
    text = "<User>: s.\n<Character1>: a.\n<Character1>: b.\n<Character3>: c.\n<Frame1>: x.\n<Video1>: y.\n"
    result = parse(text)
    assert [c.description.text for c in result.script.characters] == ["a.", "b.", "c."]
    assert problems(text) == [(3, 1, "duplicate-index"), (4, 1, "index-order")]


def test_mentions_of_undefined_entries():
    text = HEAD + "<Frame1>: <Character2> in <Environment1> and <Environment4>.\n<Video1>: ok.\n"
    assert problems(text) == [(4, 11, "undefined-mention"), (4, 46, "undefined-mention")]


def test_truncated_in_the_middle_of_a_shot():
    text = HEAD + "<Frame1>: a.\n<Video1>: b.\n<Frame2>: The man turns to"
    result = parse(text)
    assert len(result.script.shots) == 2 and result.script.shots[1].video is None
    assert problems(text) == [(6, 1, "missing-video"), (6, 26, "possibly-truncated")]


def test_truncated_inside_a_tag():
    text = HEAD + "<Frame1>: a.\n<Video1>: b <Charac"
    assert problems(text) == [(5, 13, "stray-bracket"), (5, 19, "possibly-truncated")]


def test_missing_line_break_and_missing_colon():
    text = HEAD + "<Frame1>: a. <Video1>: b.\n<Frame2> c.\n<Video2>: d.\n"
    result = parse(text)
    assert [(s.frame.text, s.video.text) for s in result.script.shots] == [("a.", "b."), ("c.", "d.")]
    assert problems(text) == [(4, 14, "missing-line-break"), (5, 1, "missing-colon")]


def test_video_before_frame_and_missing_halves():
    text = HEAD + "<Video1>: b.\n<Frame1>: a.\n<Video2>: only video.\n<Frame3>: only frame.\n"
    result = parse(text)
    shots = result.script.shots
    assert [(s.index, s.frame is None, s.video is None) for s in shots] == [
        (1, False, False),
        (2, True, False),
        (3, False, True),
    ]
    assert problems(text) == [(5, 1, "entry-order"), (6, 1, "missing-frame"), (7, 1, "missing-video")]


def test_markers_and_text_outside_entries():
    text = "junk\n" + HEAD + "<Frame1>: a.\n<Video1>: b.\n<Continuation>: go on.\n<Frame2>: c.\n<Video2>: d.\n"
    result = parse(text)
    (marker,) = result.script.markers
    assert (marker.kind, marker.text, marker.position) == ("continuation", "go on.", 1)
    assert problems(text) == [(1, 1, "text-outside-entry")]


def test_missing_user_and_no_shots():
    assert problems("<Character1>: a.\n") == [(1, 1, "missing-user"), (1, 1, "no-shots")]
    assert problems("") == [(1, 1, "missing-user"), (1, 1, "no-shots")]


def test_late_definition_and_empty_description():
    text = "<User>: s.\n<Frame1>:\n<Video1>: <Character1>.\n<Character1>: late.\n"
    result = parse(text)
    assert result.script.characters[0].description.text == "late."
    assert problems(text) == [(2, 1, "empty-description"), (4, 1, "late-definition")]


def test_crlf_and_form_feeds():
    text = "<User>: s.\r\n\x0c<Frame1>: a\r\nb.\r\n<Video1>: c.\x0c\r\n"
    result = parse(text)
    assert result.ok
    assert result.script.shots[0].frame.text == "a b."


def test_huge_indices_are_not_tags():
    text = "<User>: s.\n<Frame" + "1" * 5000 + ">: x <Character" + "2" * 5000 + ">.\n"
    codes = [p.code for p in parse(text).problems]
    assert codes == ["no-shots"] + ["stray-bracket"] * 4
