"""Pre-Context Script Splitting as a dataset transform over text-only scripts."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from unimage.data.manifest import Manifest, TextSample
from unimage.data.synthspec import SynthStoryConfig, sample_story
from unimage.data.synthtext import script_text
from unimage.data.transforms import PreContextSplitting, SplittingConfig, view_seed
from unimage.script import CONTINUATION_PROMPT, parse, serialize


def _samples(n: int, shots: tuple[int, int] = (4, 8)) -> list[TextSample]:
    cfg = SynthStoryConfig(seed=21, text_shots=shots)
    out = []
    for i in range(n):
        text = script_text(sample_story(cfg, "text", i, f"text-{i:05d}"))
        out.append(TextSample(f"text-{i:05d}", text, parse(text).script))
    return out


def test_views_are_well_formed_and_lossless():
    transform = PreContextSplitting(SplittingConfig(p_extension=0.4, p_continuation=0.4, seed=1))
    kinds = Counter()
    for sample in _samples(40):
        view = transform(sample)
        kinds[view.kind] += 1
        assert view.context + view.target == serialize(view.structure)
        result = parse(view.context + view.target)
        assert result.ok, result.problems
        assert result.script == view.structure
        # removing the inserted marker gives back the original script
        assert replace(view.structure, markers=()) == sample.structure
        shots = sample.structure.shots
        if view.kind == "continuation":
            assert view.context.rstrip("\n").endswith(f"<Continuation>: {CONTINUATION_PROMPT}")
            assert parse(view.target).script.shots == shots[-1:]
        elif view.kind == "extension":
            last = view.context.rstrip("\n").splitlines()[-1]
            assert last.startswith("<Extension>: ") and len(last) > len("<Extension>: ")
            assert 1 <= len(view.structure.markers) == 1 and 1 <= view.structure.markers[0].position < len(shots)
        else:
            assert view.structure.markers == ()
    assert set(kinds) == {"full", "extension", "continuation"}


def test_views_are_deterministic_per_seed_epoch_and_id():
    samples = _samples(12)
    a = PreContextSplitting(SplittingConfig(seed=5))
    b = PreContextSplitting(SplittingConfig(seed=5))
    assert [a(s, epoch=2) for s in samples] == [b(s, epoch=2) for s in reversed(samples)][::-1]  # order-free
    epochs = [[a(s, epoch=e).kind for s in samples] for e in range(4)]
    assert len({tuple(k) for k in epochs}) > 1  # a new epoch draws new views
    assert view_seed(5, 0, "x") == view_seed(5, 0, "x") != view_seed(5, 1, "x") != view_seed(6, 0, "x")


@pytest.mark.parametrize(("p_ext", "p_cont"), [(0.5, 0.25), (0.1, 0.6)])
def test_view_frequencies_follow_the_probabilities(p_ext, p_cont):
    sample = _samples(1)[0]
    transform = PreContextSplitting(SplittingConfig(p_extension=p_ext, p_continuation=p_cont, seed=3))
    n = 1500
    counts = Counter(transform(replace(sample, id=f"copy-{i}")).kind for i in range(n))
    for kind, p in (("extension", p_ext), ("continuation", p_cont), ("full", 1 - p_ext - p_cont)):
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts[kind] - n * p) < 4.5 * sd, (kind, counts)


def test_flag_off_and_edge_probabilities():
    samples = _samples(10)
    off = PreContextSplitting(SplittingConfig(enabled=False, p_extension=1.0, p_continuation=0.0))
    assert {off(s).kind for s in samples} == {"full"}
    always_ext = PreContextSplitting(SplittingConfig(p_extension=1.0, p_continuation=0.0))
    assert {always_ext(s).kind for s in samples} == {"extension"}
    always_cont = PreContextSplitting(SplittingConfig(p_extension=0.0, p_continuation=1.0))
    assert {always_cont(s).kind for s in samples} == {"continuation"}
    one_shot = _samples(3, shots=(1, 1))
    assert {always_ext(s).kind for s in one_shot} == {"full"}  # too short to split
    with pytest.raises(ValueError, match="p_extension and p_continuation"):
        SplittingConfig(p_extension=0.7, p_continuation=0.5)


def test_transform_over_a_manifest(small_set):
    manifest = Manifest(small_set / "train/text.jsonl")
    views = list(PreContextSplitting(SplittingConfig(p_extension=0.5, p_continuation=0.5)).map(manifest, epoch=1))
    assert len(views) == len(manifest) and manifest.skips.skipped == 0
    assert {v.kind for v in views} <= {"extension", "continuation"}
    assert all(parse(v.context + v.target).ok for v in views)


def test_custom_summarizer_gives_the_extension_prompt():
    sample = _samples(1)[0]
    view = PreContextSplitting(
        SplittingConfig(p_extension=1.0, p_continuation=0.0), summarizer=lambda text: "Go on to the next place."
    )(sample)
    assert view.structure.markers[0].text == "Go on to the next place."
