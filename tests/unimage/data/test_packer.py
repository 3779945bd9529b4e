"""Token-budget packing: budgets, overflow buffer, too-long skips, determinism, resuming, conditioning dropout."""

from __future__ import annotations

import itertools
import random

import pytest

from unimage.data.datamodule import TrainDataConfig, UniMAGEDataModule
from unimage.data.packer import PackerConfig, PackStream, conditioning_dropout
from unimage.data.segments import ImageSeg, ImageSizes, PlannedSample, TextSeg
from unimage.model.config import get_config

CFG = get_config("tiny")
_RNG = random.Random(1)
LENGTHS = [_RNG.randint(10, 400) for _ in range(97)] + [900]  # item 97 is too long


def _load(item: int, epoch: int) -> PlannedSample | None:
    if item == 13:
        return None  # a bad record (the manifest reader would have counted it)
    n = LENGTHS[item]
    return PlannedSample(f"s{item}", "text", [TextSeg(tuple(range(n - 2)), loss=True)])  # n tokens with delimiters


def _stream(config: PackerConfig, shard=(0, 1), seed=0) -> PackStream:
    return PackStream("t", len(LENGTHS), _load, CFG, config, seed=seed, shard=shard)


BUDGET = PackerConfig(expected_num_tokens=600, max_num_tokens=800, max_num_tokens_per_sample=500, max_buffer_size=3)


def test_budgets_buffer_and_skips():
    stream = _stream(BUDGET)
    packs = [stream.next_pack() for _ in range(60)]  # several epochs
    for p in packs:
        assert p.num_tokens == sum(LENGTHS[int(s.id[1:])] for s in p.samples)
        assert p.num_tokens <= BUDGET.max_num_tokens
        assert all(s.id not in ("s13", "s97") for s in p.samples)
    # A pack closes once it reaches the expected size, or when the buffer is full and the next sample does not fit.
    assert sum(p.num_tokens >= BUDGET.expected_num_tokens for p in packs) > len(packs) // 2
    assert stream.too_long >= 1 and len(stream.buffer) <= BUDGET.max_buffer_size + 1
    # Every usable sample of epoch 0 is used exactly once by the time epoch 1 starts (the buffer loses nothing).
    seen = [s.id for p in packs for s in p.samples]
    assert set(seen[:95]) <= {f"s{i}" for i in range(97) if i != 13}


def test_packing_off_gives_one_sample_per_pack():
    stream = _stream(PackerConfig(**{**BUDGET.__dict__, "packing": False}))
    packs = [stream.next_pack() for _ in range(20)]
    assert all(len(p.samples) == 1 for p in packs)


def test_deterministic_and_sharded():
    a = [p.ids for p in itertools.islice(iter(_stream(BUDGET).next_pack, None), 15)]
    b = [p.ids for p in itertools.islice(iter(_stream(BUDGET).next_pack, None), 15)]
    assert a == b
    c = [p.ids for p in itertools.islice(iter(_stream(BUDGET, seed=1).next_pack, None), 15)]
    assert a != c
    s0 = _stream(BUDGET, shard=(0, 2)).order(0)
    s1 = _stream(BUDGET, shard=(1, 2)).order(0)
    assert not set(s0) & set(s1) and sorted(s0 + s1) == list(range(len(LENGTHS)))


def test_resume_from_state_continues_identically():
    ref = _stream(BUDGET)
    for _ in range(40):  # stop where something waits in the overflow buffer (the hard case)
        state = ref.next_pack().cursor
        if state["buffer"]:
            break
    assert state == ref.state_dict() and state["buffer"]
    rest = [ref.next_pack() for _ in range(30)]
    resumed = _stream(BUDGET)
    resumed.load_state_dict(state)
    again = [resumed.next_pack() for _ in range(30)]
    assert [p.ids for p in again] == [p.ids for p in rest]
    assert [p.num_tokens for p in again] == [p.num_tokens for p in rest]


def test_conditioning_dropout_rates_and_targets():
    cfg = PackerConfig(text_cond_dropout_prob=0.1, vit_cond_dropout_prob=0.3, vae_cond_dropout_prob=0.5)
    segs = [
        TextSeg((1,), loss=False, droppable=True),
        TextSeg((2,), loss=True),
        ImageSeg("noisy", 0),
        ImageSeg("clean", 0),
        ImageSeg("vit", 0),
    ]
    sample = PlannedSample("x", "interleaved", segs)
    rng = random.Random(0)
    n = 4000
    kept = dict.fromkeys(range(len(segs)), 0)
    for _ in range(n):
        out = conditioning_dropout(sample, cfg, rng)
        for i, s in enumerate(segs):
            kept[i] += any(o is s for o in out.segments)
    assert kept[1] == n and kept[2] == n  # loss text and the noisy target are never dropped
    for i, p in ((0, 0.1), (3, 0.5), (4, 0.3)):
        assert abs((1 - kept[i] / n) - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-9


def test_all_bad_records_raise_a_clear_error():
    stream = PackStream("bad", 5, lambda i, e: None, CFG, BUDGET)
    with pytest.raises(RuntimeError, match="no usable sample"):
        stream.next_pack()


def test_packer_config_is_validated():
    with pytest.raises(ValueError, match="expected_num_tokens"):
        PackerConfig(expected_num_tokens=10, max_num_tokens=5)
    with pytest.raises(ValueError, match="dropout_prob"):
        PackerConfig(text_cond_dropout_prob=1.5)


def test_datamodule_resume_with_two_workers_keeps_the_order(small_set):
    """Worker slots rotate on resume so batch n comes next, as in an uninterrupted run."""

    def dm():
        m = UniMAGEDataModule(
            synthstory=str(small_set),
            packer=PackerConfig(2048, 4096, 4096, 2),
            images=ImageSizes(64, 32, 56, 28),
            num_workers=2,
        )
        m.bind(TrainDataConfig(model=get_config("tiny"), icl_steps=3, num_workers=2))
        m.setup("fit")
        return m

    ref = dm()
    batches = list(itertools.islice(iter(ref.train_dataloader()), 8))
    assert [b.index for b in batches] == list(range(8))
    assert [b.slot for b in batches] == [0, 1] * 4
    assert [b.stage for b in batches] == ["icl"] * 3 + ["del"] * 5
    for b in batches[:5]:
        ref.on_batch_consumed(b)
    state = ref.state_dict()
    resumed = dm()
    resumed.load_state_dict(state)
    again = list(itertools.islice(iter(resumed.train_dataloader()), 3))
    assert [b.index for b in again] == [5, 6, 7]
    assert [{k: p.ids for k, p in b.packs.items()} for b in again] == [
        {k: p.ids for k, p in b.packs.items()} for b in batches[5:]
    ]
