"""``token_losses`` is the training loss per token: its sums equal ``UniMAGE.forward``'s, and the text CE of the
diagnostics equals a hand computation on the plain token sequence (HF-style: logits of every position of one causal
sequence, shifted labels, ``F.cross_entropy`` at the target positions found from the target's character span)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unimage.data.manifest import InterleavedSample
from unimage.data.packer import stable_seed
from unimage.data.segments import ImageSizes, SegmentBuilder, encode_groups, script_blocks
from unimage.eval.diagnostics import text_rows
from unimage.eval.heldout import load_heldout
from unimage.eval.losses import token_losses
from unimage.eval.targets import plan_text_targets
from unimage.model.packing import pack, pack_tokens

SIZES = ImageSizes(vae_max_size=64, vae_min_size=64, vit_max_size=56, vit_min_size=56)


@pytest.fixture(scope="module")
def stories(synth):
    return load_heldout(synth)


def test_sums_equal_the_forward_loss(director, stories):
    model, vae = director.model, director.vae
    builder = SegmentBuilder(model.config, director.tokenizer, SIZES)
    story = stories[0]
    planned = builder.interleaved(InterleavedSample(story.story_id, story.text, story.script, story.keyframes), True)
    g = torch.Generator().manual_seed(0)
    latents = encode_groups(planned.vae_pixels, lambda x: vae.encode(x, generator=g), "cpu")
    batch = pack([planned.to_model_segments(latents)], model.config)
    with torch.no_grad():
        ref = model(batch, torch.Generator().manual_seed(5))
    got = token_losses(model, batch, torch.Generator().manual_seed(5))
    assert len(got.ce) == ref.num_ce_tokens and len(got.mse) == ref.num_mse_tokens > 0
    torch.testing.assert_close(got.ce.sum(), ref.ce_sum, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got.mse.sum(), ref.mse_sum, rtol=1e-5, atol=1e-5)
    # one noisy image per shot, every token of it
    assert got.mse_image.unique().numel() == len(story.script.shots)


def _hand_ce(model, tokenizer, view) -> tuple[float, int]:
    """CE of the target of ``view`` from the plain causal sequence of all its blocks (no packer, no ce_indexes)."""
    ids: list[int] = []
    target_label_positions: list[int] = []  # positions p whose label ids[p + 1] belongs to the target
    offset = 0
    blocks = script_blocks(view.structure)
    for j, (_, text) in enumerate(blocks):
        block = [tokenizer.im_start_id, *tokenizer.encode(text), tokenizer.im_end_id]
        if offset >= len(view.context):  # the block starts in the target span
            target_label_positions += range(len(ids), len(ids) + len(block) - 1)
        ids += block
        offset += len(text) + (
            0 if j == len(blocks) - 1 or (blocks[j][0] == "user" and blocks[j + 1][0] == "globals") else 1
        )
    target_label_positions.append(len(ids))  # end of script: <|im_end|> right after <|im_start|>
    ids += [tokenizer.im_start_id, tokenizer.im_end_id]
    batch = pack_tokens(ids, model.config)
    pl = model.config.patch_latent_dim
    with torch.no_grad():
        hidden, _ = model.hidden_states(batch, torch.empty(0, pl), torch.empty(0))
        logits = model.language_model.lm_head(hidden).float()  # [L, V]
    labels = torch.tensor(ids[1:])
    pos = torch.tensor(target_label_positions)
    return float(F.cross_entropy(logits[:-1][pos], labels[pos], reduction="sum")), len(pos)


def test_text_ce_equals_a_hand_computation(director, stories):
    builder = SegmentBuilder(director.model.config, director.tokenizer, SIZES)
    for story in stories:
        rows = {r.metric: r.value for r in text_rows(director, builder, story, seed=0)}
        for target in plan_text_targets(story.story_id, story.script, builder, seed=0):
            total, n = _hand_ce(director.model, director.tokenizer, target.view)
            metric = {"cont_nomarker": "cont_ce_nomarker", "ext_nomarker": "ext_ce_nomarker"}.get(
                target.name, f"{target.name}_ce"
            )
            assert rows[f"diag.{metric}"] * target.target_bytes == pytest.approx(total, rel=1e-5)
            assert rows[f"diag.{metric}_token"] * n == pytest.approx(total, rel=1e-5)
        assert rows["diag.cont_marker_delta"] == pytest.approx(rows["diag.cont_ce"] - rows["diag.cont_ce_nomarker"])


def test_fixed_timesteps_and_noise(director, stories):
    """With given timesteps the generator only supplies the noise: the same seed gives the same losses."""
    from dataclasses import replace

    from unimage.model.packing import NoisyVaeImage

    model, vae = director.model, director.vae
    builder = SegmentBuilder(model.config, director.tokenizer, SIZES)
    story = stories[1]
    planned = builder.interleaved(InterleavedSample(story.story_id, story.text, story.script, story.keyframes), True)
    latents = encode_groups(planned.vae_pixels, lambda x: vae.encode(x, sample=False), "cpu")
    segs = [replace(s, timestep=0.5) if isinstance(s, NoisyVaeImage) else s for s in planned.to_model_segments(latents)]
    batch = pack([segs], model.config)
    seed = stable_seed(0, "x")
    a = token_losses(model, batch, torch.Generator().manual_seed(seed))
    b = token_losses(model, batch, torch.Generator().manual_seed(seed))
    c = token_losses(model, batch, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(a.mse, b.mse) and torch.equal(a.ce, b.ce)
    assert not torch.equal(a.mse, c.mse)
