"""The data plan: the planner's token count is the packer's sequence length, and CE loss sits on whole blocks.

``PlannedSample.num_tokens`` decides which samples fit a pack before any image is encoded; if it disagreed with the
length ``pack`` builds, packs would overflow ``max_num_tokens`` or be closed early. Checked on every SynthStory record
of the shared set, with ID prompting on and off, splitting on and off, and with conditioning dropout.
"""

from __future__ import annotations

import random

import pytest
import torch

from unimage.data.manifest import Manifest
from unimage.data.packer import PackerConfig, conditioning_dropout
from unimage.data.segments import ImageSizes, PlannedSample, SegmentBuilder, TextSeg, script_blocks
from unimage.data.transforms import PreContextSplitting, SplittingConfig
from unimage.model.config import get_config
from unimage.model.packing import pack
from unimage.script.tokenizer import ByteTokenizer
from unimage.script.vocab import id_prompt_for_shot

SIZES = ImageSizes(vae_max_size=64, vae_min_size=32, vit_max_size=56, vit_min_size=28)
TOK = ByteTokenizer()
DROPOUT = PackerConfig(text_cond_dropout_prob=0.5, vit_cond_dropout_prob=0.5, vae_cond_dropout_prob=0.5)


def _latents(planned: PlannedSample) -> list[torch.Tensor]:
    return [torch.zeros(16, px.shape[1] // 8, px.shape[2] // 8) for px in planned.vae_pixels]


def _plans(small_set, id_prompting: bool, splitting: bool) -> list[PlannedSample]:
    builder = SegmentBuilder(get_config("tiny", id_prompting=id_prompting), TOK, SIZES)
    plans: list[PlannedSample] = []
    for sample in Manifest(small_set / "train" / "interleaved.jsonl"):
        plans += [builder.interleaved(sample, text_loss=True), builder.interleaved(sample, text_loss=False)]
    plans += [builder.pair(sample) for sample in Manifest(small_set / "train" / "pairs.jsonl")]
    splitter = PreContextSplitting(SplittingConfig(enabled=splitting, seed=3))
    for epoch in range(3):
        plans += [builder.text(s, splitter(s, epoch=epoch)) for s in Manifest(small_set / "train" / "text.jsonl")]
    dropped = [conditioning_dropout(p, DROPOUT, random.Random(j)) for j, p in enumerate(plans)]
    return plans + dropped


@pytest.mark.parametrize("splitting", [False, True])
@pytest.mark.parametrize("id_prompting", [False, True])
def test_planned_token_counts_are_the_packed_lengths(small_set, id_prompting, splitting):
    config = get_config("tiny", id_prompting=id_prompting)
    plans = _plans(small_set, id_prompting, splitting)
    batch = pack([p.to_model_segments(_latents(p)) for p in plans], config)
    assert batch.sample_lens == [p.num_tokens(config) for p in plans]
    assert batch.ce_indexes.numel() == sum(p.num_ce_targets for p in plans)
    kinds = {p.kind for p in plans}
    assert kinds == {"interleaved", "pair", "text"}
    assert any(p.view != "full" for p in plans) == splitting
    assert bool(batch.id_token_mask.any()) == id_prompting


def test_token_count_of_a_pair_by_hand(small_set):
    """Caption block + noisy keyframe block counted from the layout rules, not from the planner's code."""
    sample = next(iter(Manifest(small_set / "train" / "pairs.jsonl")))
    assert sample.structure is not None
    for id_prompting in (False, True):
        config = get_config("tiny", id_prompting=id_prompting)
        planned = SegmentBuilder(config, TOK, SIZES).pair(sample)
        _, h, w = planned.vae_pixels[0].shape  # 96 px source, long edge capped at 64, multiples of 16
        ids = len(id_prompt_for_shot(sample.structure.shots[0]).tokens(TOK.vocab)) if id_prompting else 0
        caption = len(TOK.encode(sample.text)) + 2  # <|im_start|> caption <|im_end|>
        image = 1 + ids + (h // 16) * (w // 16) + 1  # <|vision_start|> IDs latents <|vision_end|>
        assert planned.num_tokens(config) == caption + image
        assert (h, w) == (64, 64) and image == 18 + ids


@pytest.mark.parametrize("kind", ["full", "extension", "continuation"])
def test_text_loss_is_on_whole_blocks_of_the_target(small_set, kind):
    """Every loss block of a text view is a whole block of its structure, and the loss blocks are the target."""
    p = {"full": (0.0, 0.0), "extension": (1.0, 0.0), "continuation": (0.0, 1.0)}[kind]
    splitter = PreContextSplitting(SplittingConfig(p_extension=p[0], p_continuation=p[1], seed=11))
    builder = SegmentBuilder(get_config("tiny"), TOK, SIZES)
    for sample in Manifest(small_set / "train" / "text.jsonl"):
        view = splitter(sample)
        planned = builder.text(sample, view)
        blocks = script_blocks(view.structure)
        texts = [s for s in planned.segments if isinstance(s, TextSeg)]
        assert [TOK.decode(t.token_ids) for t in texts[:-1]] == [text for _, text in blocks]
        shots = [s.index for s in view.structure.shots]
        loss_kinds = [kind for (kind, _), t in zip(blocks, texts) if t.loss]
        if kind == "full":
            assert loss_kinds == [k for k, _ in blocks if k != "user"]
        else:
            # Known answer from the structure: the cut's marker and the shots after it carry the loss, nothing else.
            marker = next(m for m in view.structure.markers if m.kind == kind)
            n_loss_shots = len(shots) - marker.position
            assert loss_kinds == ["shot"] * n_loss_shots
            assert n_loss_shots == 1 if kind == "continuation" else 1 <= n_loss_shots < len(shots)
        assert texts[-1].loss and texts[-1].token_ids == ()
