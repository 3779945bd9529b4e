"""The issue's named cases, one test each: every official quirk reproduced by default, corrected by its switch."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import cli
from bench.backbones import load_backbones
from bench.backbones.base import IdentityFeatures, boxes_from_normalized_cxcywh
from bench.characters import CharacterMatcher
from bench.dataset import load_story
from bench.evaluate import EvalConfig, evaluate, non_comparable_reasons
from bench.functional import greedy_match, greedy_match_gpt_eval
from bench.judge import openai as judge_openai
from bench.judge.openai import JudgeConfig, OpenAIJudge, find_rubrics, rubrics_problem
from bench.outputs import read_story_outputs
from bench.quirks import QUIRKS, active_fixes, check_fixes, quirk_table_markdown
from bench.runners import _mirror_copy_paste
from tests.bench.world import DIM, Box, Char, Ref, Shot, Story, World, world_backbones, write_world

REPRO = [[0.9, 0.8, 0.1], [0.95, 0.2, 0.7]]
REPO = Path(__file__).resolve().parents[2]


def test_greedy_reproducer_functional():
    sim = torch.tensor(REPRO)
    assert greedy_match_gpt_eval(sim) == [None, 0]  # gpt_eval.py
    assert greedy_match(sim) == [1, 0]  # --fix gpt-eval-matching


def reproducer_world() -> World:
    """Story 01: characters A and B, one shot with three boxes whose CLIP similarities are REPRO / 2."""
    w = World()
    e = np.eye(DIM, dtype=np.float32)
    ra, rb = w.new_obj(e[0], e[0]), w.new_obj(e[1], e[1])
    refs = {}
    for key, obj in (("A", ra), ("B", rb)):
        img = w.new_image([Box(obj, (0.5, 0.5, 0.6, 0.8), 0.9)])
        refs[key] = Char("unrealistic_human", [Ref("00.jpg", img, obj)])
    boxes = []
    for j in range(3):
        a, b = REPRO[0][j] / 2, REPRO[1][j] / 2
        g = np.zeros(DIM, np.float32)
        g[0], g[1], g[2] = a, b, math.sqrt(1 - a * a - b * b)
        boxes.append(Box(w.new_obj(g, g), ((0.15 + 0.33 * j), 0.5, 0.2, 0.8), 0.5 + 0.1 * j))
    w.stories["01"] = Story("01", refs, [Shot(1, ["A", "B"], w.new_image(boxes))])
    return w


@pytest.mark.parametrize(("fixes", "expected"), [((), {"B": 0}), (("gpt-eval-matching",), {"A": 1, "B": 0})])
def test_greedy_reproducer_in_era_a_occm_path(tmp_path, fixes, expected):
    world = reproducer_world()
    dataset, outputs = write_world(world, tmp_path)
    story = load_story(dataset, "01")
    outs = read_story_outputs(story, outputs / "world/base/en/20250101_000000/01", "positional", era="A")
    matcher = CharacterMatcher(world_backbones(world), "A", fixes=fixes)
    (sm,) = matcher.match([story], [outs], "clip_all")
    # boxes are matched in the detector's order, which is the world's order here
    assert sm.shots[1].matched == expected
    cfg = EvalConfig(dataset, outputs, "world", era="A", metrics=("occm",), out=tmp_path / "r", progress=False,
                     fixes=fixes)  # fmt: skip
    row = evaluate(cfg, world_backbones(world)).row
    d = len(expected)
    assert row["occm"] == pytest.approx(100 * math.exp(-abs(d - 2) / (math.exp(-6) + 2)), abs=1e-12)
    assert row["comparable_with_published"] is False  # scripted backbones
    assert row["fixes"] == list(fixes)


def test_boxes_under_one_pixel_top_k_first():
    # scores: a 0.3-px-wide box with the best score, then two real boxes
    cxcywh = torch.tensor([[0.5, 0.5, 0.3 / 100, 0.5], [0.2, 0.5, 0.2, 0.5], [0.8, 0.5, 0.2, 0.5]])
    det = boxes_from_normalized_cxcywh(cxcywh, torch.tensor([0.99, 0.5, 0.6]), 100, 80)
    assert len(det) == 2 and det.n_raw == 3
    assert len(det.top_then_drop(2, 100, 80)) == 1  # official: top-2 = [empty, 0.6], then the empty one is dropped
    assert det.top_then_drop(2, 100, 80).scores.tolist() == pytest.approx([0.6])
    assert len(det.top(2)) == 2  # --fix drop-empty-boxes-first


def test_unclipped_raw_crops_pad_black():
    det = boxes_from_normalized_cxcywh(torch.tensor([[0.05, 0.5, 0.3, 0.5]]), torch.tensor([0.9]), 100, 80)
    im = Image.new("RGB", (100, 80), (255, 255, 255))
    (clipped,), (raw,) = det.crops(im), det.raw_crops(im)
    assert clipped.size == (20, 40) and raw.size == (30, 40)  # x from -10 to 20
    assert raw.getpixel((0, 0)) == (0, 0, 0) and clipped.getpixel((0, 0)) == (255, 255, 255)


def test_copy_paste_mirror_without_face_is_half():
    class Stub:
        """A matcher whose encoder finds a face in the primary reference but not in its mirror image."""

        def reference_images(self, story, key, profile):
            return [Image.new("RGB", (8, 8))]

        def encoder_for(self, story, key, profile):
            return None

        def encode(self, enc, images):
            f = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
            return IdentityFeatures({"f": f}, {"f": torch.tensor([True, False])})

    gen = IdentityFeatures({"f": torch.tensor([[0.6, 0.8], [1.0, 0.0]])}, {"f": torch.tensor([True, True])})
    assert _mirror_copy_paste(Stub(), None, "k", gen) == pytest.approx(0.5)  # type: ignore[arg-type]
    fixed = _mirror_copy_paste(Stub(), None, "k", gen, duplicate_lone=False)  # type: ignore[arg-type]
    expected = np.mean([1 / (1 + math.exp(-0.6 / 0.01)), 1 / (1 + math.exp(-1.0 / 0.01))])
    assert fixed == pytest.approx(expected)


def test_era_c_lite_inception_pools_the_whole_run(bench_data, tmp_path):
    dataset, outputs = bench_data
    rows = {}
    for era, fixes in (("C", ()), ("C", ("inception-split-only",)), ("A", ())):
        cfg = EvalConfig(dataset, outputs, "toy-method", era=era, split="lite", metrics=("diversity",),
                         out=tmp_path / f"{era}{fixes}", progress=False, fixes=fixes)  # fmt: skip
        rows[(era, fixes)] = evaluate(cfg, load_backbones("toy", era=era)).row
    # lite = stories 01 and 08 (4 + 3 readable images); story 02 adds 2 more officially in Eras B/C
    assert rows[("C", ())]["n_inception_images"] == 9 and rows[("C", ())]["n_stories"] == 2
    assert rows[("C", ("inception-split-only",))]["n_inception_images"] == 7
    assert rows[("A", ())]["n_inception_images"] == 7
    assert rows[("C", ())]["inception"] != rows[("C", ("inception-split-only",))]["inception"]


def test_fix_names_validated_and_listed_everywhere():
    with pytest.raises(ValueError, match="unknown --fix"):
        check_fixes(["gpt-eval-matchin"])
    assert active_fixes(["zero-based-shift", "gpt-eval-matching"], "C") == ("zero-based-shift",)
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    fix = next(a for a in evaluate._actions if "--fix" in a.option_strings)
    assert tuple(fix.choices) == tuple(QUIRKS)  # --fix offers every quirk (choices taken from bench.quirks)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert quirk_table_markdown() in readme, "README quirk table out of date: paste bench.quirks.quirk_table_markdown()"
    assert re.search(r"unimage bench evaluate[^\n`]*(\\\n[^\n`]*)*--rubrics", readme), "README: Table 1 command"


##### rubrics


def _rubric_dir(root: Path, text: str = "rubric") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in judge_openai.OFFICIAL_RUBRIC_FILES.values():
        (root / name).write_text(f"{text} {name}\nScore: 0-4\n", encoding="utf-8")
    return root


def test_alignment_without_official_rubrics_is_not_comparable(bench_data, tmp_path):
    judge = OpenAIJudge(JudgeConfig(api_key="k"))  # our own rubric texts
    assert judge.comparable is False and "--rubrics" in (judge.non_comparable_reason or "")
    dataset, outputs = bench_data
    cfg = EvalConfig(dataset, outputs, "toy-method", metrics=("prompt_align",))
    reasons = non_comparable_reasons(cfg, load_backbones("toy"), judge)
    assert any(r.startswith("Alignment: judge prompts are this project's own") for r in reasons)
    other = OpenAIJudge(JudgeConfig(api_key="k", rubrics_dir=_rubric_dir(tmp_path / "r")))
    assert other.comparable is False and "SHA-256 mismatch" in (other.non_comparable_reason or "")


def test_official_rubrics_comparable_and_hashed(tmp_path, monkeypatch):
    folder = _rubric_dir(tmp_path / "checkout" / "vistorybench" / "bench" / "prompt_align" / "user_prompts")
    import hashlib

    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(judge_openai, "OFFICIAL_RUBRIC_SHA256", hashes)  # stand-in for the official bytes
    weights = tmp_path / "checkout" / "data" / "pretrain"
    weights.mkdir(parents=True)
    assert find_rubrics(weights) == folder.resolve()
    assert rubrics_problem(folder) is None
    judge = OpenAIJudge(JudgeConfig(api_key="k", rubrics_dir=folder))
    assert judge.comparable and judge.provenance()["rubrics_sha256"] == hashes


def test_cli_marks_alignment_non_comparable_with_a_message(bench_data, tmp_path, capsys):
    dataset, outputs = bench_data
    parser = __import__("argparse").ArgumentParser()
    cli.configure(parser)
    args = parser.parse_args(
        ["evaluate", "--dataset", str(dataset), "--outputs", str(outputs), "--method", "toy-method",
         "--metrics", "occm", "--out", str(tmp_path / "o"), "--no-progress", "--fix", "occm-empty-story-nan"]
    )  # fmt: skip
    assert cli.run_evaluate(args) == 0
    err = capsys.readouterr().err
    assert "NOT comparable" in err and "toy backbones" in err
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["fixes"] == [] and prov["fixes_requested"] == ["occm-empty-story-nan"]  # a B/C switch in Era A
    assert "gpt-eval-matching" in prov["quirks_reproduced"]


def test_cids_and_gpt_eval_references_are_cached_apart(tmp_path):
    """A reference whose best-scoring box is not the detector's first: CIDS takes the best, gpt_eval.py the first."""
    w = World()
    e = np.eye(DIM, dtype=np.float32)
    main, other = w.new_obj(e[0], e[0]), w.new_obj(e[1], e[1])
    ref = w.new_image([Box(other, (0.2, 0.5, 0.2, 0.6), 0.3), Box(main, (0.7, 0.5, 0.4, 0.8), 0.9)])
    shot = w.new_image([Box(w.new_obj(e[0], e[0]), (0.5, 0.5, 0.4, 0.8), 0.8)])
    w.stories["01"] = Story("01", {"A": Char("unrealistic_human", [Ref("00.jpg", ref, main)])}, [Shot(1, ["A"], shot)])
    dataset, _ = write_world(w, tmp_path)
    story = load_story(dataset, "01")
    matcher = CharacterMatcher(world_backbones(w), "A")
    cids_ref = matcher.references(story, "A", "cids")  # computed first, as in an evaluation
    gpt_ref = matcher.references(story, "A", "clip_all")
    assert torch.equal(cids_ref.features["world-clip"][0], torch.from_numpy(e[0]))
    assert torch.equal(gpt_ref.features["world-clip"][0], torch.from_numpy(e[1]))
