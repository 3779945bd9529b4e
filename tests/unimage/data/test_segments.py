"""Samples → planned segments: layout, CE-loss placement, ID tokens, lengths (checked against the model's packer)."""

from __future__ import annotations

import pytest
import torch

from unimage.data.manifest import Manifest
from unimage.data.segments import END_OF_SCRIPT, ImageSeg, ImageSizes, SegmentBuilder, TextSeg, script_blocks
from unimage.data.transforms import PreContextSplitting, SplittingConfig
from unimage.model.config import get_config
from unimage.model.packing import pack
from unimage.script import serialize
from unimage.script.tokenizer import ByteTokenizer
from unimage.script.vocab import id_prompt_for_shot

SIZES = ImageSizes(vae_max_size=64, vae_min_size=32, vit_max_size=56, vit_min_size=28)
TOK = ByteTokenizer()


def _builder(id_prompting: bool = True) -> SegmentBuilder:
    return SegmentBuilder(get_config("tiny", id_prompting=id_prompting), TOK, SIZES)


def _latents(planned):
    return [torch.randn(16, px.shape[1] // 8, px.shape[2] // 8) for px in planned.vae_pixels]


def _first(small_set, name):
    return next(iter(Manifest(small_set / "train" / name)))


def test_script_blocks_rebuild_the_canonical_text(small_set):
    for sample in Manifest(small_set / "train" / "interleaved.jsonl"):
        blocks = script_blocks(sample.structure)
        text = ""
        for j, (kind, block) in enumerate(blocks):
            text += block
            if j < len(blocks) - 1 and not (kind == "user" and blocks[j + 1][0] == "globals"):
                text += "\n"
        assert text == serialize(sample.structure)


def test_interleaved_layout_loss_and_id_tokens(small_set):
    sample = _first(small_set, "interleaved.jsonl")
    planned = _builder().interleaved(sample, text_loss=True)
    n = len(sample.structure.shots)
    kinds = [("T" if isinstance(s, TextSeg) else s.role[0].upper()) for s in planned.segments]
    # user, globals, then (shot text, Noisy, Clean, Vit) per shot, the last shot without clean copies, then the end
    assert "".join(kinds) == "TT" + "TNCV" * (n - 1) + "TN" + "T"
    texts = [s for s in planned.segments if isinstance(s, TextSeg)]
    assert [t.loss for t in texts] == [False] + [True] * (n + 1) + [True]
    assert texts[-1] == END_OF_SCRIPT and texts[-1].token_ids == ()
    assert texts[0].droppable and not any(t.droppable for t in texts[1:])
    assert TOK.decode(texts[0].token_ids).startswith("<User>:")
    images = [s for s in planned.segments if isinstance(s, ImageSeg)]
    for seg in images:
        shot = sample.structure.shots[seg.image]
        assert seg.id_token_ids == tuple(TOK.token_id(t) for t in id_prompt_for_shot(shot).tokens(TOK.vocab))
        assert seg.id_token_ids[0] == TOK.token_id(f"<Frame{shot.index}>")
    assert len(planned.vae_pixels) == n and planned.vae_pixels[0].shape == (3, 64, 64)
    assert planned.vit_pixels[0].shape == (3, 56, 56)
    # Packed length and CE targets agree with the model's own packer.
    batch = pack([planned.to_model_segments(_latents(planned))], get_config("tiny", id_prompting=True))
    assert batch.length == planned.num_tokens(get_config("tiny", id_prompting=True))
    assert batch.ce_indexes.numel() == planned.num_ce_targets
    assert int(batch.id_token_mask.sum()) == sum(len(s.id_token_ids) for s in images)


def test_del_interleaved_has_no_text_loss_and_id_tokens_off(small_set):
    sample = _first(small_set, "interleaved.jsonl")
    planned = _builder(id_prompting=False).interleaved(sample, text_loss=False)
    texts = [s for s in planned.segments if isinstance(s, TextSeg)]
    assert not any(t.loss for t in texts) and all(t.droppable for t in texts)
    assert all(s.id_token_ids == () for s in planned.segments if isinstance(s, ImageSeg))
    cfg = get_config("tiny")
    batch = pack([planned.to_model_segments(_latents(planned))], cfg)
    assert batch.length == planned.num_tokens(cfg) and batch.ce_indexes.numel() == 0


@pytest.mark.parametrize("kind", ["full", "extension", "continuation"])
def test_text_views_put_loss_on_the_target_only(small_set, kind):
    samples = list(Manifest(small_set / "train" / "text.jsonl"))
    p = {"full": (0.0, 0.0), "extension": (1.0, 0.0), "continuation": (0.0, 1.0)}[kind]
    splitter = PreContextSplitting(SplittingConfig(p_extension=p[0], p_continuation=p[1], seed=4))
    for sample in samples:
        view = splitter(sample)
        assert view.kind == kind
        planned = _builder().text(sample, view)
        texts = [s for s in planned.segments if isinstance(s, TextSeg)]
        loss_text = "".join(TOK.decode(t.token_ids) for t in texts if t.loss)
        assert not texts[0].loss and TOK.decode(texts[0].token_ids).startswith("<User>:")
        if kind == "full":
            assert all(t.loss for t in texts[1:])
        else:
            # The loss-bearing blocks are exactly the view's target (its blocks, without blank separators).
            assert loss_text.replace("\n", "") == view.target.replace("\n", "")
            assert all(not t.loss for t in texts if t.token_ids and TOK.decode(t.token_ids) in view.context)
        # CE labels of the packed batch decode to the loss-bearing blocks, each closed by <|im_end|>.
        batch = pack([planned.to_model_segments([])], get_config("tiny"))
        labels = TOK.decode(batch.ce_labels.tolist())
        assert labels.replace("<|im_end|>", "") == loss_text
        # The script ends with an empty block: <|im_end|> is predicted right at its <|im_start|> (the last token).
        assert texts[-1] == END_OF_SCRIPT and labels.endswith("<|im_end|><|im_end|>")
        assert int(batch.ce_indexes[-1]) == batch.length - 2  # [..., <|im_start|>, <|im_end|>] of the end block


def test_pair_caption_then_noisy_target_with_frame1_ids(small_set):
    sample = _first(small_set, "pairs.jsonl")
    planned = _builder().pair(sample)
    cap, img = planned.segments
    assert isinstance(cap, TextSeg) and not cap.loss and cap.droppable
    assert isinstance(img, ImageSeg) and img.role == "noisy"
    assert sample.structure is not None
    expected = [TOK.token_id(t) for t in id_prompt_for_shot(sample.structure.shots[0]).tokens(TOK.vocab)]
    assert list(img.id_token_ids) == expected and expected[0] == TOK.token_id("<Frame1>")


def test_image_sizes_must_fit_the_model_tables():
    with pytest.raises(ValueError, match="latent table"):
        SegmentBuilder(get_config("tiny"), TOK, ImageSizes(vae_max_size=1024, vit_max_size=56))
    with pytest.raises(ValueError, match="ViT table"):
        SegmentBuilder(get_config("tiny"), TOK, ImageSizes(vae_max_size=64, vae_min_size=32, vit_max_size=980))


def test_dropped_image_keeps_its_rope_position(small_set):
    """CFG dropout removes an image's tokens but, as in BAGEL, the image still takes one RoPE id."""
    sample = _first(small_set, "interleaved.jsonl")
    planned = _builder(id_prompting=False).interleaved(sample, text_loss=True)
    first_clean = next(i for i, s in enumerate(planned.segments) if isinstance(s, ImageSeg) and s.role == "clean")
    drop = [i == first_clean for i in range(len(planned.segments))]
    dropped = planned.without(drop)
    assert dropped.segments[first_clean].role == "dropped" and not dropped.segments[first_clean].droppable
    config = get_config("tiny")
    lat = _latents(planned)
    full = pack([planned.to_model_segments(lat)], config)
    less = pack([dropped.to_model_segments(lat)], config)
    clean_tokens = full.length - less.length
    assert clean_tokens == planned.num_tokens(config) - dropped.num_tokens(config) > 2
    # Every token after the dropped block sits at the same RoPE position as without dropout.
    assert torch.equal(full.position_ids[-10:], less.position_ids[-10:])
    # Dropping a text removes it and its ids: later positions shift down by its length.
    first_text = 0
    no_user = planned.without([i == first_text for i in range(len(planned.segments))])
    shifted = pack([no_user.to_model_segments(lat)], config)
    user_len = len(planned.segments[0].token_ids) + 2
    assert torch.equal(shifted.position_ids[-10:], full.position_ids[-10:] - user_len)
