"""The offline toy judge: known answers on drawn images, request validation, labelling."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from bench.judge import Judge, JudgeRequest, load_judge
from bench.judge.toy import ToyJudge


@pytest.fixture
def picture() -> Image.Image:
    im = Image.new("RGB", (100, 100), (255, 255, 255))
    ImageDraw.Draw(im).rectangle([0, 0, 49, 99], fill=(250, 0, 0))  # half red, half white
    return im


def test_known_scores(picture):
    judge = load_judge("toy")
    assert isinstance(judge, Judge) and judge.comparable is False and "NOT comparable" in judge.name
    # red and white both present → 4; red present, blue absent → round(4 * 1/2) = 2; only green → 0
    assert judge.score(JudgeRequest("scene", "A red barn on white snow.", picture)).score == 4
    assert judge.score(JudgeRequest("scene", "A red car under a blue sky", picture)).score == 2
    assert judge.score(JudgeRequest("camera", "green field", picture)).score == 0
    # no colour word → the rubric's midpoint
    answer = judge.score(JudgeRequest("character_action", "They talk.", picture))
    assert answer.score == 2 and "Score: 2" in answer.raw
    many = judge.score_many([JudgeRequest("scene", "red", picture), JudgeRequest("scene", "blue", picture)])
    assert [a.score for a in many] == [4, 0]
    assert ToyJudge().provenance()["comparable_with_published"] is False


def test_request_validation(picture):
    with pytest.raises(ValueError, match="character_name is required"):
        JudgeRequest("single_character_action", "x", picture)
    with pytest.raises(ValueError, match="character_name is required"):
        JudgeRequest("scene", "x", picture, character_name="Bob")
    with pytest.raises(ValueError, match="aspect must be one of"):
        JudgeRequest("style", "x", picture)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="judge kind"):
        load_judge("gpt")  # type: ignore[arg-type]
