"""SynthStory: determinism, resume, ground truth against pixels, and consistency of its texts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unimage.data.synthstory as synthstory
from tests._helpers.data import SMALL
from unimage.data.synthdraw import reference_box, render_reference, render_shot
from unimage.data.synthspec import SynthStoryConfig, sample_story
from unimage.data.synthstory import GT_OUTPUT_RUN, generate, story_specs
from unimage.data.synthtext import script_text
from unimage.data.synthvocab import (
    ACCESSORY_COLORS,
    BODY_COLORS,
    EYE_COLOR,
    GROUNDS,
    HEAD_COLORS,
    LANDMARKS,
    REF_BACKGROUND,
    SKIES,
)
from unimage.script import parse, serialize


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _char_colors() -> set[tuple[int, int, int]]:
    return {c.rgb for c in BODY_COLORS + HEAD_COLORS + ACCESSORY_COLORS} | {EYE_COLOR}


def _env_colors() -> set[tuple[int, int, int]]:
    out = set()
    for s in SKIES:
        out |= {s.color.rgb, s.pattern_rgb}
    out |= {g.color.rgb for g in GROUNDS}
    for lm in LANDMARKS:
        out |= {lm.main_rgb, lm.detail_rgb}
    return out


# ------------------------------------------------------------------------------------------ palettes
def test_palettes_are_disjoint():
    body = [c.rgb for c in BODY_COLORS]
    assert len(set(body)) == len(body)
    others = {c.rgb for c in HEAD_COLORS + ACCESSORY_COLORS} | {EYE_COLOR}
    assert not set(body) & others
    assert not _char_colors() & _env_colors()
    assert REF_BACKGROUND not in _char_colors() | _env_colors()


# --------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes(tmp_path, small_set):
    generate(tmp_path / "again", SMALL)
    first, second = _tree(small_set), _tree(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    # the set has every part the brief asks for
    assert {"synthstory.json", "train/interleaved.jsonl", "train/text.jsonl", "train/pairs.jsonl"} <= first.keys()
    assert len([k for k in first if k.startswith("eval/ViStory/") and k.endswith("story.json")]) == SMALL.eval_stories


def test_different_seed_gives_different_stories(tmp_path, small_set):
    other = SynthStoryConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    generate(tmp_path / "other", other)
    a, b = _tree(small_set), _tree(tmp_path / "other")
    for name in ("train/interleaved.jsonl", "train/text.jsonl", "train/pairs.jsonl"):
        assert a[name] != b[name]
    shared_pngs = [k for k in a.keys() & b.keys() if k.endswith(".png")]
    assert sum(a[k] != b[k] for k in shared_pngs) > 0.8 * len(shared_pngs)


def test_story_does_not_depend_on_set_size():
    big = SynthStoryConfig(**{**SMALL.__dict__, "train_stories": 40, "eval_stories": 80})
    assert sample_story(big, "train", 3, "x") == sample_story(SMALL, "train", 3, "x")


def test_rerun_skips_complete_files_and_rewrites_missing_ones(tmp_path):
    out = tmp_path / "set"
    cfg = SynthStoryConfig(seed=1, train_stories=3, eval_stories=2, image_size=64)
    first = generate(out, cfg)
    before = _tree(out)
    again = generate(out, cfg)
    assert again.files_written == 0 and again.files_skipped == first.files_written
    assert _tree(out) == before
    (out / "train/images/interleaved/train-00001/shot_02.png").unlink()
    (out / "eval/ViStory/02/story.json").unlink()
    third = generate(out, cfg)
    assert third.files_written == 2
    assert _tree(out) == before


def test_killed_run_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    cfg = SynthStoryConfig(seed=2, train_stories=4, eval_stories=2, image_size=64)
    generate(tmp_path / "clean", cfg)
    calls = {"n": 0}

    def dying_render(story, shot):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt("killed")
        return render_shot(story, shot)

    monkeypatch.setattr(synthstory, "render_shot", dying_render)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "killed", cfg)
    partial = _tree(tmp_path / "killed")
    assert json.loads(partial["synthstory.json"])["complete"] is False
    assert not any(Path(k).name.startswith(".") for k in partial)  # no temporary file left behind
    for name in partial:  # whatever exists is complete
        if name.endswith(".png"):
            Image.open(tmp_path / "killed" / name).load()
    monkeypatch.setattr(synthstory, "render_shot", render_shot)
    report = generate(tmp_path / "killed", cfg)
    assert report.files_skipped >= 7
    assert _tree(tmp_path / "killed") == _tree(tmp_path / "clean")
    assert json.loads((tmp_path / "clean/synthstory.json").read_text())["complete"] is True


def test_other_config_into_same_folder_is_refused(tmp_path):
    cfg = SynthStoryConfig(seed=1, train_stories=1, eval_stories=1, image_size=64)
    generate(tmp_path, cfg)
    with pytest.raises(FileExistsError, match="refusing to mix"):
        generate(tmp_path, SynthStoryConfig(seed=2, train_stories=1, eval_stories=1, image_size=64))


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 16}, {"max_characters": 11}, {"train_shots": (3, 2)}, {"empty_shot_prob": 1.0}, {"pairs": -2}],
)
def test_bad_config_names_the_field(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SynthStoryConfig(**kwargs)


# ------------------------------------------------------------------------------ ground truth vs pixels
def _pack(rgb) -> int:
    return (int(rgb[0]) << 16) | (int(rgb[1]) << 8) | int(rgb[2])


def _check_shot_pixels(image: np.ndarray, gt_shot: dict, gt_chars: dict, width: int) -> None:
    code = (image[..., 0].astype(np.int32) << 16) | (image[..., 1].astype(np.int32) << 8) | image[..., 2]
    body = {key: _pack(c["body_color"]) for key, c in gt_chars.items()}
    allowed = {_pack(c) for c in _env_colors() | _char_colors()}
    colors = {int(v) for v in np.unique(code)}
    assert colors <= allowed, f"unexpected colours {colors - allowed}"  # no anti-aliasing, no stray colour
    present = {key for key, packed in body.items() if packed in colors}
    assert present == {c["key"] for c in gt_shot["characters"]}
    assert gt_shot["count"] == len(gt_shot["characters"]) == len(present)
    for c in gt_shot["characters"]:
        x0, y0, x1, y1 = c["box_xyxy"]
        mask = code == body[c["key"]]
        inside = mask[y0:y1, x0:x1]
        assert inside.sum() == mask.sum(), "a character's body colour appears outside its box"
        assert inside.mean() > 0.15, f"body colour covers only {inside.mean():.2f} of the box"
        # the box is tight: the figure's own colours touch all four edges
        own = [body[c["key"]], _pack(gt_chars[c["key"]]["head_color"])]
        if gt_chars[c["key"]]["accessory_color"] is not None:
            own.append(_pack(gt_chars[c["key"]]["accessory_color"]))
        fig = np.isin(code[y0:y1, x0:x1], own)
        assert fig[0].any() and fig[-1].any() and fig[:, 0].any() and fig[:, -1].any()
        cx = (x0 + x1) / 2
        assert c["position"] == ("left" if cx < width / 3 else "right" if cx > 2 * width / 3 else "center")


def test_ground_truth_matches_rendered_keyframes(small_set):
    gt_run = small_set / "eval" / "outputs" / Path(*GT_OUTPUT_RUN)
    n_shots = 0
    for gt_file in sorted((small_set / "eval/ground_truth").glob("*.json")):
        gt = json.loads(gt_file.read_text())
        for shot in gt["shots"]:
            image = np.asarray(Image.open(gt_run / gt["story_id"] / "shots" / f"shot_{shot['index']:02d}.png"))
            assert image.shape == (gt["image_size"][1], gt["image_size"][0], 3)
            _check_shot_pixels(image, shot, gt["characters"], gt["image_size"][0])
            n_shots += 1
    assert n_shots >= SMALL.eval_stories * SMALL.eval_shots[0]


def test_ground_truth_holds_over_many_stories_and_sizes():
    """Boxes, counts and colours for 150 sampled stories at three keyframe sizes (rendered in memory)."""
    from unimage.data.synthtext import ground_truth

    for i, size in enumerate((48, 128, 200) * 50):
        story = sample_story(SynthStoryConfig(seed=11, image_size=size, max_characters=4), "train", i, f"s{i}")
        gt = ground_truth(story)
        for shot, gt_shot in zip(story.shots, gt["shots"]):
            _check_shot_pixels(np.asarray(render_shot(story, shot)), gt_shot, gt["characters"], size)
            boxes = [c["box_xyxy"] for c in gt_shot["characters"]]
            for a in range(len(boxes)):  # boxes of one shot never overlap
                for b in range(a + 1, len(boxes)):
                    assert boxes[a][2] <= boxes[b][0] or boxes[b][2] <= boxes[a][0]


@pytest.mark.parametrize("shift", [(1, 0), (0, -1), (2, 2)])
def test_pixel_check_rejects_a_wrong_box(shift):
    """The checker above is sharp: a box off by one pixel, or a wrong count, fails it."""
    from unimage.data.synthtext import ground_truth

    story = sample_story(SynthStoryConfig(seed=4), "pair", 0, "p")
    gt = ground_truth(story)
    shot = gt["shots"][0]
    image = np.asarray(render_shot(story, story.shots[0]))
    _check_shot_pixels(image, shot, gt["characters"], story.width)
    dx, dy = shift
    moved = json.loads(json.dumps(shot))
    x0, y0, x1, y1 = moved["characters"][0]["box_xyxy"]
    moved["characters"][0]["box_xyxy"] = [x0 + dx, y0 + dy, x1 + dx, y1 + dy]
    with pytest.raises(AssertionError):
        _check_shot_pixels(image, moved, gt["characters"], story.width)
    fewer = json.loads(json.dumps(shot))
    fewer["count"] += 1
    with pytest.raises(AssertionError):
        _check_shot_pixels(image, fewer, gt["characters"], story.width)


def test_shot_sizes_scale_the_figures():
    heights: dict[str, list[float]] = {"close-up": [], "medium": [], "long": []}
    for i in range(200):
        story = sample_story(SynthStoryConfig(seed=3), "eval", i, "x")
        for shot in story.shots:
            for p in shot.placements:
                heights[shot.size].append((p.box[3] - p.box[1]) / story.height)
    assert min(heights["close-up"]) > max(heights["medium"]) > max(heights["long"])
    assert min(heights["medium"]) > max(heights["long"])


def test_reference_images_show_the_character(tmp_path):
    cfg = dataclasses.replace(SMALL, train_stories=0, text_stories=0, pairs=0, ref_format="png")  # lossless pixels
    generate(tmp_path, cfg)
    story = story_specs(cfg)["eval"][0]
    for char in story.characters:
        for v in range(SMALL.refs_per_character):
            path = tmp_path / "eval/ViStory" / story.story_id / "image" / char.key / f"{v:02d}.png"
            image = np.asarray(Image.open(path))
            assert (image == np.asarray(render_reference(char, SMALL.ref_side, v))).all()
            x0, y0, x1, y1 = reference_box(SMALL.ref_side, v)
            mask = (image == char.body_color.rgb).all(-1)
            assert mask[y0:y1, x0:x1].sum() == mask.sum() > 0.15 * (x1 - x0) * (y1 - y0)


# --------------------------------------------------------------------------------------------- texts
def test_scripts_parse_cleanly_and_match_the_ground_truth(small_set):
    for gt_file in sorted((small_set / "eval/ground_truth").glob("*.json")):
        gt = json.loads(gt_file.read_text())
        text = (small_set / "eval/scripts" / f"{gt['story_id']}.txt").read_text()
        result = parse(text)
        assert result.ok, result.problems
        assert serialize(result.script) == text  # our text is already canonical
        script = result.script
        assert len(script.characters) == len(gt["characters"]) and len(script.environments) == len(gt["environments"])
        assert [s.index for s in script.shots] == [s["index"] for s in gt["shots"]]
        for shot, gt_shot in zip(script.shots, gt["shots"]):
            assert shot.frame is not None
            chars = [m.index for m in shot.frame.mentions if m.kind == "character"]
            envs = {m.index for m in shot.frame.mentions if m.kind == "environment"}
            assert chars == [c["id"] for c in gt_shot["characters"]]  # left to right, as in the ground truth
            assert envs == {gt_shot["environment"]}
            size_prefix = {"close-up": "Close-up:", "medium": "Medium shot:", "long": "Long shot:"}[
                gt_shot["shot_size"]
            ]
            assert shot.frame.text.startswith(size_prefix)


def test_training_manifests_are_consistent(small_set):
    rows = [json.loads(x) for x in (small_set / "train/interleaved.jsonl").read_text().splitlines()]
    assert len(rows) == SMALL.train_stories
    for row in rows:
        result = parse(row["script"])
        assert result.ok, result.problems
        assert len(row["images"]) == len(result.script.shots)
        assert all((small_set / "train" / p).is_file() for p in row["images"])
    texts = [json.loads(x) for x in (small_set / "train/text.jsonl").read_text().splitlines()]
    assert len(texts) == SMALL.text_stories and all(parse(t["script"]).ok for t in texts)
    pairs = [json.loads(x) for x in (small_set / "train/pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == SMALL.pairs
    for pair in pairs:
        codes = {p.code for p in parse(pair["text"]).problems}
        assert codes == {"missing-user", "missing-video"}  # a caption: globals + <Frame1>, nothing else wrong
        assert Image.open(small_set / "train" / pair["image"]).size == (SMALL.image_size, SMALL.image_size)


def test_every_character_appears_and_text_scripts_are_longer():
    specs = story_specs(SynthStoryConfig(seed=5, train_stories=30, eval_stories=30, max_characters=5))
    for story in specs["train"] + specs["eval"] + specs["text"]:
        seen = {p.character for s in story.shots for p in s.placements}
        assert seen == {c.index for c in story.characters}
        assert all(len(s.placements) <= 3 for s in story.shots)
    assert all(len(s.shots) == 1 for s in specs["pair"])
    assert min(len(s.shots) for s in specs["text"]) >= 4


def test_script_text_is_a_pure_function_of_the_spec():
    a = sample_story(SMALL, "text", 2, "t")
    assert script_text(a) == script_text(sample_story(SMALL, "text", 2, "t"))
    assert "<-" in script_text(a) and "->" in script_text(a)


def test_appearance_none_names_characters_without_their_look():
    """``appearance="none"``: the same stories and shots, but no global entry says how a character looks, so only
    keyframes can carry the look (the strict ID-P test); ``global``: the look is in the global entry only."""
    from unimage.data.synthvocab import HEAD_SHAPES

    full, bare = SynthStoryConfig(seed=2), SynthStoryConfig(seed=2, appearance="none")
    colours = {c.en for c in BODY_COLORS + HEAD_COLORS}
    for i in range(20):
        a, b = sample_story(full, "train", i, "x"), sample_story(bare, "train", i, "x")
        assert a.shots == b.shots and a.characters == b.characters
        text_a, text_b = script_text(a).splitlines(), script_text(b).splitlines()
        for line_a, line_b in zip(text_a, text_b):
            if line_a.startswith("<Character"):
                assert any(c in line_a for c in colours)
                name = line_b.split(": ", 1)[1]
                assert name.endswith(", a small figure.") and not any(c in name for c in colours)
            else:
                assert line_a == line_b
                if line_a.startswith(("<Frame", "<Video")):  # shot texts never repeat a look
                    assert not any(f" {c} " in line_a for c in colours | set(HEAD_SHAPES))


def test_appearance_frame_repeats_the_body_colour_in_every_frame_and_nothing_else():
    """``appearance="frame"``: the same stories, global entries and videos as ``global``; each ``<FrameN>`` names
    every placed character's body colour right after its name (never a head colour or shape), in both languages
    and in the ViStoryBench shot texts."""
    from unimage.data.synthtext import frame_text
    from unimage.data.synthvocab import HEAD_SHAPES

    full, framed = SynthStoryConfig(seed=2), SynthStoryConfig(seed=2, appearance="frame")
    heads = {c.en for c in HEAD_COLORS} - {c.en for c in BODY_COLORS}
    checked = 0
    for i in range(20):
        a, b = sample_story(full, "train", i, "x"), sample_story(framed, "train", i, "x")
        assert a.shots == b.shots and a.characters == b.characters
        for line_a, line_b in zip(script_text(a).splitlines(), script_text(b).splitlines()):
            if not line_a.startswith("<Frame"):
                assert line_a == line_b
        for shot in b.shots:
            line = frame_text(b, shot)
            for p in shot.placements:
                ch = b.character(p.character)
                assert f"{ch.name.en}{ch.token}, in {ch.body_color.en}, stands" in line
                assert f"{ch.name.ch}（{ch.body_color.ch}）站" in frame_text(b, shot, "ch", False)
                checked += 1
            assert not any(f" {c} " in line for c in heads | set(HEAD_SHAPES))
            if not shot.placements:
                assert line == frame_text(a, shot)
    assert checked > 20
    with pytest.raises(ValueError, match="appearance must be"):
        SynthStoryConfig(appearance="shot")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_vocab_writes_a_bpe_tokenizer_of_whole_words(tmp_path):
    """``tokenizer_vocab`` trains a Qwen2-style BPE on the training texts: whole SynthStory words become one token,
    every script token stays one id, a script is several times shorter than in bytes, and the folder is
    deterministic (a second set drawn into an empty folder has the same tokenizer bytes)."""
    from unimage.script.tokenizer import load_tokenizer

    cfg = SynthStoryConfig(seed=3, train_stories=40, eval_stories=1, image_size=64, tokenizer_vocab=600)
    generate(tmp_path / "a", cfg)
    tok = load_tokenizer(str(tmp_path / "a" / "tokenizer"))
    script = json.loads((tmp_path / "a" / "train" / "interleaved.jsonl").read_text().splitlines()[0])["script"]
    ids = tok.encode(script)
    assert tok.decode(ids) == script
    pieces = [tok.decode([i]) for i in ids]
    for word in (" figure", " head", " body", " stands", "<Character1>", "<Frame1>", "<Environment1>"):
        assert word in pieces, word
    assert len(load_tokenizer(None).encode(script)) > 2.5 * len(ids)
    generate(tmp_path / "b", cfg)
    assert _tree(tmp_path / "a" / "tokenizer") == _tree(tmp_path / "b" / "tokenizer")
    assert not list((tmp_path / "a").glob(".tokenizer.tmp-*"))
    # without it: no folder, and the metadata of older sets (no such field) still matches, so they resume
    generate(tmp_path / "c", dataclasses.replace(cfg, tokenizer_vocab=0))
    assert not (tmp_path / "c" / "tokenizer").exists()
    assert "tokenizer_vocab" not in json.loads((tmp_path / "c" / "synthstory.json").read_text())["config"]
    with pytest.raises(ValueError, match="tokenizer_vocab"):
        SynthStoryConfig(tokenizer_vocab=100)
