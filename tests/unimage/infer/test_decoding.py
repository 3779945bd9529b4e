"""KV-cache decoding equals full recomputation; the constrained choice rule on hand-made logits."""

from __future__ import annotations

import torch

from unimage.infer.decoding import TokenStream, choose
from unimage.script import serialize


def _prefix(director, text="<User>: a fox and a crow.\n"):
    tok = director.tokenizer
    return [tok.im_start_id, *tok.encode(text), tok.im_end_id, tok.im_start_id]


def test_cached_stream_equals_recomputation_token_by_token(director):
    """Greedy free decoding of 40 tokens: same ids, and logits equal to float tolerance at every step."""
    model, prefix = director.model, _prefix(director)
    cached, full = TokenStream(model, prefix, use_cache=True), TokenStream(model, prefix, use_cache=False)
    for _ in range(40):
        torch.testing.assert_close(cached.logits, full.logits, atol=1e-4, rtol=1e-4)
        token = int(cached.logits.argmax())
        assert token == int(full.logits.argmax())
        cached.feed([token])
        full.feed([token])
    assert cached.ids == full.ids and len(cached.ids) == 40
    # The cache touches each token once; recomputation touches the whole prefix again at every step.
    assert cached.num_forward_tokens == len(prefix) + 40
    assert full.num_forward_tokens == sum(len(prefix) + k for k in range(41))


def test_multi_token_feed_equals_one_by_one(director):
    model, prefix = director.model, _prefix(director)
    a, b = TokenStream(model, prefix), TokenStream(model, prefix)
    ids = director.tokenizer.encode(" a long line of text")
    a.feed(ids)
    for i in ids:
        b.feed([i])
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)


def test_snapshot_restore(director):
    stream = TokenStream(director.model, _prefix(director))
    state = stream.snapshot()
    before = stream.logits.clone()
    stream.feed([10, 11, 12])
    stream.restore(state)
    assert stream.ids == []
    torch.testing.assert_close(stream.logits, before)
    stream.feed([10])
    fresh = TokenStream(director.model, _prefix(director))
    fresh.feed([10])
    torch.testing.assert_close(stream.logits, fresh.logits, atol=1e-5, rtol=1e-5)


def test_choose_greedy_skips_rejected_in_logit_order():
    logits = torch.tensor([0.0, 5.0, 3.0, 4.0, 1.0])
    assert choose(logits, lambda t: "x" if t != 1 else None) == (3, "x")
    assert choose(logits, lambda t: "x" if t in (0, 4) else None) == (4, "x")
    assert choose(logits, lambda t: "x", candidates=[0, 2]) == (2, "x")
    assert choose(logits, lambda t: None) is None


def test_choose_sampling_respects_nucleus_and_rejections():
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p = 0.7 keeps {0, 1} (0.5 < 0.7, 0.8 >= 0.7)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    gen = torch.Generator().manual_seed(0)
    picks = [choose(logits, lambda t: t, do_sample=True, top_p=0.7, generator=gen)[0] for _ in range(400)]
    assert set(picks) == {0, 1}
    share = picks.count(0) / len(picks)
    assert abs(share - 0.5 / 0.8) < 0.08  # renormalised within the nucleus
    picks = [choose(logits, lambda t: t if t != 0 else None, do_sample=True, generator=gen)[0] for _ in range(200)]
    assert 0 not in picks and set(picks) <= {1, 2, 3}


def test_write_with_and_without_cache_is_identical(director):
    a = director.with_config(use_cache=True).write_generation("A fox and a crow.", n_shots=1)
    b = director.with_config(use_cache=False).write_generation("A fox and a crow.", n_shots=1)
    assert serialize(a.script) == serialize(b.script)
    assert a.num_tokens == b.num_tokens
