"""Packed sequences: token layout, position ids, routing, CE targets, the generalized causal mask, ID prompting."""

from __future__ import annotations

import pytest
import torch

from unimage.model.config import get_config
from unimage.model.packing import (
    CleanVaeImage,
    DroppedImage,
    NoisyVaeImage,
    Text,
    VitImage,
    image_block_length,
    latent_grid,
    pack,
    pack_tokens,
)

CFG = get_config("tiny")
CFG_ID = get_config("tiny", id_prompting=True)
T = CFG.tokens
IDS_A, IDS_B = (300, 301), (302,)


def _sample(ids_a=(), ids_b=()):
    # ViT 28x42 px -> 2x3 patches; clean VAE 16ch 4x6 latents -> 2x3 tokens; noisy 2x2 latents -> 1x1 token.
    return [
        Text([1, 2, 3]),
        VitImage(torch.randn(3, 28, 42), id_token_ids=ids_a),
        CleanVaeImage(torch.randn(16, 4, 6), id_token_ids=ids_b),
        Text([4, 5], loss=True),
        NoisyVaeImage(torch.randn(16, 2, 2), id_token_ids=ids_b, timestep=0.5),
        Text([6], loss=True),
    ]


def _bagel_mask(split_lens, modes):
    """BAGEL's prepare_attention_mask_per_sample, restated (bagel-compat §2.4): rows see earlier splits, causal or full
    inside their split; then every noise split's columns are cleared for all rows and its diagonal block restored."""
    n = sum(split_lens)
    m = torch.zeros(n, n, dtype=torch.bool)
    start = 0
    for length, mode in zip(split_lens, modes):
        end = start + length
        m[start:end, :start] = True
        m[start:end, start:end] = torch.ones(length, length).tril().bool() if mode == "causal" else True
        start = end
    start = 0
    for length, mode in zip(split_lens, modes):
        end = start + length
        if mode == "noise":
            m[:, start:end] = False
            m[start:end, start:end] = True
        start = end
    return m


def test_layout_positions_and_routing_flag_off():
    b = pack([_sample()], CFG)
    # text 5 | vit 1+6+1 | vae 1+6+1 | text 4 | noisy 1+1+1 | text 3
    assert b.length == 5 + 8 + 8 + 4 + 3 + 3
    expected_pos = [0, 1, 2, 3, 4] + [5] * 8 + [6] * 8 + [7, 8, 9, 10] + [11] * 3 + [11, 12, 13]
    assert b.position_ids.tolist() == expected_pos
    assert b.next_positions == [14]
    tokens = dict(zip(b.text_indexes.tolist(), b.text_ids.tolist()))
    assert [tokens[i] for i in range(5)] == [T.im_start, 1, 2, 3, T.im_end]
    assert tokens[5] == T.vision_start and tokens[12] == T.vision_end and 6 not in tokens
    assert b.vit_indexes.tolist() == list(range(6, 12))
    assert b.vae_indexes.tolist() == [*range(14, 20), 26]
    assert b.is_gen.nonzero().flatten().tolist() == [*range(14, 20), 26]  # only latents use the generation expert
    assert b.vit_position_ids.tolist() == [0, 1, 2, 8, 9, 10]  # row·S + col, S = 8
    assert b.vae_position_ids.tolist() == [0, 1, 2, 8, 9, 10, 0]  # S = max_latent_size = 8
    assert b.vit_cu_seqlens.tolist() == [0, 6]
    assert b.vae_image_noisy.tolist() == [False, True]
    assert b.vae_image_timestep.tolist() == [0.0, 0.5]
    assert b.mse_indexes.tolist() == [26]
    assert not b.id_token_mask.any()


def test_ce_targets_are_next_tokens_of_loss_text():
    b = pack([_sample()], CFG)
    # Text([4, 5]) occupies 21..24 = [im_start, 4, 5, im_end]; Text([6]) occupies 28..30.
    assert b.ce_indexes.tolist() == [21, 22, 23, 28, 29]
    assert b.ce_labels.tolist() == [4, 5, T.im_end, 6, T.im_end]


def test_mask_equals_bagel_construction_and_samples_are_block_diagonal():
    s2 = [Text([9, 9], loss=True), NoisyVaeImage(torch.randn(16, 2, 4))]
    b = pack([_sample(), s2], CFG)
    m0 = _bagel_mask([5, 8, 8, 4, 3, 3], ["causal", "full", "full", "causal", "noise", "causal"])
    m1 = _bagel_mask([4, 4], ["causal", "noise"])
    expected = torch.block_diag(m0.float(), m1.float()).bool()
    assert torch.equal(b.dense_mask(), expected)
    assert b.sample_lens == [31, 8] and b.next_positions == [14, 4]
    assert b.position_ids[31:].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_noisy_block_is_invisible_to_every_other_token():
    b = pack([_sample()], CFG)
    mask = b.dense_mask()
    noisy = b.split_noise
    assert not mask[~noisy][:, noisy].any()
    assert mask[noisy][:, noisy].all()
    assert mask[noisy][:, :24].all()  # and it sees everything before it


def test_id_prompting_layout_mask_and_routing():
    b = pack([_sample(IDS_A, IDS_B)], CFG_ID)
    tokens = dict(zip(b.text_indexes.tolist(), b.text_ids.tolist()))
    # vit block: vision_start, 300, 301, 6 patches, vision_end
    assert [tokens.get(i) for i in range(5, 8)] == [T.vision_start, 300, 301]
    assert b.vit_indexes.tolist() == list(range(8, 14))
    assert tokens[14] == T.vision_end
    id_pos = b.id_token_mask.nonzero().flatten().tolist()
    assert id_pos == [6, 7, 16, 29]  # two in the ViT block, one in the clean VAE block, one in the noisy block
    assert not b.is_gen[id_pos].any()  # understanding expert
    assert b.position_ids[id_pos].tolist() == [5, 5, 6, 11]  # the block's RoPE id
    mask = b.dense_mask()
    for ids, img in ((torch.tensor([6, 7]), b.vit_indexes), (torch.tensor([16]), b.vae_indexes[:6])):
        assert mask[ids][:, img].all() and mask[img][:, ids].all()  # full attention both ways
    # the ID tokens of the noisy block are hidden like its latents
    later = torch.arange(b.length) > 31
    assert not mask[later][:, 29:31].any()


def test_the_packer_lays_out_what_segments_carry_without_reading_the_flag():
    """``id_prompting`` is gated where ID tokens are made (``SequenceLayout.image_id_tokens``), not here: the same
    segments pack the same under both configs, and segments without ID tokens are BAGEL's layout exactly."""
    torch.manual_seed(1)
    off = pack([_sample(IDS_A, IDS_B)], CFG)
    torch.manual_seed(1)
    on = pack([_sample(IDS_A, IDS_B)], CFG_ID)
    torch.manual_seed(1)
    bagel = pack([_sample()], CFG_ID)
    names = ("position_ids", "text_ids", "text_indexes", "vit_patches", "vae_latents", "split_ids", "id_token_mask")
    for name in names:
        assert torch.equal(getattr(off, name), getattr(on, name)), name
    assert on.length == bagel.length + len(IDS_A) + 2 * len(IDS_B) and not bagel.id_token_mask.any()


def test_block_lengths_are_the_packed_lengths():
    for ids in ((), IDS_A):
        sample = [CleanVaeImage(torch.randn(16, 4, 6), id_token_ids=ids)]
        assert pack([sample], CFG).length == image_block_length(CFG, latent_grid(CFG, 4, 6), ids) == 6 + 2 + len(ids)


def test_patch_order_is_row_col_channel():
    px = torch.arange(3 * 14 * 28, dtype=torch.float32).reshape(3, 14, 28)
    b = pack([[VitImage(px)]], CFG)
    # first patch, first vector entries: pixel (0,0) channels 0,1,2 then pixel (0,1)
    assert b.vit_patches[0, :4].tolist() == [px[0, 0, 0], px[1, 0, 0], px[2, 0, 0], px[0, 0, 1]]
    assert b.vit_patches[1, 0] == px[0, 0, 14]


def test_bad_input_names_sample_and_segment():
    with pytest.raises(ValueError, match=r"sample 0, segment 1: VAE latents have 4 channels"):
        pack([[Text([1]), CleanVaeImage(torch.randn(4, 2, 2))]], CFG)
    with pytest.raises(ValueError, match="not a multiple of patch size"):
        pack([[VitImage(torch.randn(3, 20, 28))]], CFG)
    with pytest.raises(ValueError, match="timestep"):
        pack([[NoisyVaeImage(torch.randn(16, 2, 2), timestep=1.5)]], CFG)
    with pytest.raises(ValueError, match="at least one sample"):
        pack([], CFG)
    with pytest.raises(ValueError, match="does not fit"):
        pack([[CleanVaeImage(torch.randn(16, 2, 18))]], CFG)  # 9 tokens wide > max_latent_size 8


def test_pack_tokens_is_raw_causal_text():
    b = pack_tokens([5, 6, 7], CFG, start_position=10)
    assert b.text_ids.tolist() == [5, 6, 7] and b.position_ids.tolist() == [10, 11, 12]
    assert torch.equal(b.dense_mask(), torch.ones(3, 3).tril().bool())


def test_dropped_image_advances_position_only():
    b = pack([[Text([1]), DroppedImage(), Text([2])]], CFG)
    assert b.length == 6
    assert b.position_ids.tolist() == [0, 1, 2, 4, 5, 6]
