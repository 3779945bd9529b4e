"""Token-budget packing of planned samples, with BAGEL's conditioning dropout, deterministic and resumable.

BAGEL (ByteDance-Seed/Bagel @ 056b5fd, ``data/dataset_base.py``; bagel-compat §5.3–5.4) gives every rank one pack per
step: samples are appended until the pack reaches ``expected_num_tokens``; a sample that would push it past
``max_num_tokens`` goes to an overflow buffer (up to ``max_buffer_size`` samples), which is drawn from first while the
pack is still shorter than ``max_num_tokens_per_sample``; samples longer than ``max_num_tokens_per_sample`` are
skipped (and counted here). With ``packing=False`` every pack holds exactly one sample (the benchmark baseline).

Conditioning dropout (bagel-compat §5.3): a droppable text (the user prompt, captions, ``del`` interleaved text) is
dropped with ``text_cond_dropout_prob``; a keyframe's clean VAE copy with ``vae_cond_dropout_prob`` and its ViT copy
with ``vit_cond_dropout_prob``. Targets (loss-bearing text, noisy VAE images) are never dropped. As in BAGEL, a
dropped image still advances the RoPE id by one (it becomes a ``DroppedImage`` segment); a dropped text takes no ids.

Determinism: a stream's order in epoch e is a permutation seeded by (seed, name, e), sharded by ``shard`` (rank and
worker slot); the dropout of item i in epoch e is seeded by (seed, name, e, i); nothing depends on wall-clock or
on how many packs were drawn before. ``PackStream.state_dict()`` is the cursor (epoch, position, overflow buffer as
item keys), small and JSON-ready; a stream rebuilt from it yields exactly the packs the original would have yielded.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unimage.data.segments import ImageSeg, PlannedSample, TextSeg
from unimage.model.config import ModelConfig

__all__ = ["Pack", "PackStream", "PackerConfig", "conditioning_dropout", "stable_seed"]

ItemKey = tuple[int, int]  # (epoch, item index)


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts, stable across processes and Python versions."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class PackerConfig:
    """Token budgets and conditioning dropout (defaults: BAGEL's pre-training values, bagel-compat §5.3–5.4).

    Attributes:
        expected_num_tokens: A pack is closed once it has at least this many tokens.
        max_num_tokens: Hard cap of a pack.
        max_num_tokens_per_sample: Longer samples are skipped (counted as ``too_long``).
        max_buffer_size: Overflow buffer size (samples that did not fit the current pack).
        packing: False gives one sample per pack (for the packing-off baseline).
        text_cond_dropout_prob: Drop probability of a droppable text segment.
        vit_cond_dropout_prob: Drop probability of a keyframe's ViT copy.
        vae_cond_dropout_prob: Drop probability of a keyframe's clean VAE copy.
    """

    expected_num_tokens: int = 32768
    max_num_tokens: int = 36864
    max_num_tokens_per_sample: int = 16384
    max_buffer_size: int = 50
    packing: bool = True
    text_cond_dropout_prob: float = 0.1
    vit_cond_dropout_prob: float = 0.3
    vae_cond_dropout_prob: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.expected_num_tokens <= self.max_num_tokens:
            raise ValueError(
                f"PackerConfig: need 0 < expected_num_tokens ({self.expected_num_tokens}) <= max_num_tokens ({self.max_num_tokens})"
            )
        if not 0 < self.max_num_tokens_per_sample <= self.max_num_tokens:
            raise ValueError(
                f"PackerConfig: need 0 < max_num_tokens_per_sample ({self.max_num_tokens_per_sample}) <= "
                f"max_num_tokens ({self.max_num_tokens})"
            )
        if self.max_buffer_size < 0:
            raise ValueError(f"PackerConfig.max_buffer_size must be >= 0, got {self.max_buffer_size}")
        for name in ("text_cond_dropout_prob", "vit_cond_dropout_prob", "vae_cond_dropout_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PackerConfig.{name} must be in [0, 1], got {getattr(self, name)}")


def conditioning_dropout(sample: PlannedSample, config: PackerConfig, rng: random.Random) -> PlannedSample:
    """Drop droppable segments independently; one draw per segment, so the stream of draws never shifts."""
    drop: list[bool] = []
    for seg in sample.segments:
        u = rng.random()
        if isinstance(seg, TextSeg):
            p = config.text_cond_dropout_prob if seg.droppable else 0.0
        elif isinstance(seg, ImageSeg) and seg.role == "clean":
            p = config.vae_cond_dropout_prob
        elif isinstance(seg, ImageSeg) and seg.role == "vit":
            p = config.vit_cond_dropout_prob
        else:
            p = 0.0
        drop.append(u < p)
    return sample.without(drop) if any(drop) else sample


@dataclass
class Pack:
    """One pack: its samples, its length, and the stream's cursor right after it (to resume from)."""

    samples: list[PlannedSample]
    num_tokens: int
    cursor: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Record ids in pack order (logged to check the data order after a resume)."""
        return [s.id for s in self.samples]


class PackStream:
    """An endless, epoch-shuffled, sharded stream of packs from one sample source.

    Args:
        name: Stream name (part of every seed, so two streams over the same items differ).
        num_items: Items in the source (manifest records).
        load: ``load(item, epoch)`` → the planned sample, or None for a bad record (the loader counts the reason).
        model_config: For sample lengths.
        config: Budgets and dropout.
        seed: Base seed.
        shard: (index, count): this stream takes positions ``index, index + count, ...`` of each epoch's permutation.
    """

    def __init__(
        self,
        name: str,
        num_items: int,
        load: Callable[[int, int], PlannedSample | None],
        model_config: ModelConfig,
        config: PackerConfig,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"PackStream {name}: bad shard {shard}")
        if num_items <= index:
            raise ValueError(
                f"PackStream {name}: {num_items} item(s) cannot feed shard {index} of {count} "
                "(use fewer ranks / data workers, or more data)"
            )
        self.name = name
        self.num_items = num_items
        self.load = load
        self.model_config = model_config
        self.config = config
        self.seed = seed
        self.shard = shard
        self.epoch = 0
        self.position = 0
        self.buffer: list[ItemKey] = []
        self.too_long = 0
        self._order_cache: tuple[int, list[int]] | None = None
        self._loaded: dict[ItemKey, PlannedSample] = {}

    # -------------------------------------------------------------------------------------------- order and state

    def order(self, epoch: int) -> list[int]:
        """This shard's item indexes for ``epoch``."""
        if self._order_cache is None or self._order_cache[0] != epoch:
            perm = list(range(self.num_items))
            random.Random(stable_seed(self.seed, self.name, "order", epoch)).shuffle(perm)
            self._order_cache = (epoch, perm[self.shard[0] :: self.shard[1]])
        return self._order_cache[1]

    def state_dict(self) -> dict[str, Any]:
        """The cursor: JSON-ready."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "buffer": [list(k) for k in self.buffer],
            "too_long": self.too_long,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a cursor written by ``state_dict``."""
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.buffer = [(int(e), int(i)) for e, i in state["buffer"]]
        self.too_long = int(state.get("too_long", 0))
        self._loaded.clear()

    # -------------------------------------------------------------------------------------------- drawing

    def _next_key(self) -> ItemKey:
        order = self.order(self.epoch)
        if self.position >= len(order):
            self.epoch += 1
            self.position = 0
            order = self.order(self.epoch)
        key = (self.epoch, order[self.position])
        self.position += 1
        return key

    def _peek(self, key: ItemKey) -> PlannedSample | None:
        """The planned sample of ``key`` (after dropout), cached while it waits in the overflow buffer."""
        if key in self._loaded:
            return self._loaded[key]
        epoch, item = key
        sample = self.load(item, epoch)
        if sample is None:
            return None
        rng = random.Random(stable_seed(self.seed, self.name, "dropout", epoch, item))
        sample = conditioning_dropout(sample, self.config, rng)
        self._loaded[key] = sample
        return sample

    def _from_buffer(self, tokens: int) -> ItemKey | None:
        """The first buffered sample that fits, removed from the buffer (None if none fits)."""
        for j, key in enumerate(self.buffer):
            sample = self._peek(key)
            if sample is None or tokens + sample.num_tokens(self.model_config) <= self.config.max_num_tokens:
                return self.buffer.pop(j)
        return None

    def next_pack(self) -> Pack:
        """Draw the next pack.

        Raises:
            RuntimeError: A whole pass over the shard gave no usable sample (every record bad or too long).
        """
        cfg = self.config
        samples: list[PlannedSample] = []
        tokens = 0
        failures = 0
        while True:
            key = self._from_buffer(tokens) if self.buffer and tokens < cfg.max_num_tokens_per_sample else None
            if key is None:
                key = self._next_key()
            sample = self._peek(key)
            n = sample.num_tokens(self.model_config) if sample is not None else 0
            if sample is None or n > cfg.max_num_tokens_per_sample:
                self._loaded.pop(key, None)
                if sample is not None:
                    self.too_long += 1
                failures += 1
                if failures > len(self.order(self.epoch)) + len(self.buffer) + 1:
                    raise RuntimeError(
                        f"PackStream {self.name}: no usable sample in a whole pass over shard {self.shard} "
                        f"({self.too_long} too long for max_num_tokens_per_sample={cfg.max_num_tokens_per_sample}; "
                        "see the data skip counts for bad records)"
                    )
                continue
            failures = 0
            if samples and tokens + n > cfg.max_num_tokens:
                if len(self.buffer) < cfg.max_buffer_size:
                    self.buffer.append(key)
                    continue
                self.buffer.insert(0, key)  # buffer full: this sample opens the next pack
                break
            self._loaded.pop(key, None)
            samples.append(sample)
            tokens += n
            if tokens >= cfg.expected_num_tokens or not cfg.packing:
                break
        return Pack(samples, tokens, self.state_dict())
