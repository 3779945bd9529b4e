"""The training data of both stages as a ``LightningDataModule`` over the three manifests.

Every training batch is a ``TrainBatch``: the stage of the step it feeds and one pack per role:

- ``icl`` (Interleaved Concept Learning): ``joint`` — interleaved scripts, CE on the script text + MSE on keyframes;
- ``del`` (Disentangled Expert Learning): ``und`` — pure-text scripts (Pre-Context Script Splitting), CE only, for the
  understanding expert; ``gen`` — interleaved scripts (text without loss) and text–image pairs, MSE only, for the
  generation expert under the stop-gradient.

The stage of batch b is fixed in advance (``stage_of_batch``): the first ``icl_steps`` optimiser steps are ``icl``,
the rest ``del``; data workers therefore prepare the right packs ahead of time.

Determinism and resuming. With W data workers (W = 1 without workers) there are W *slots*; slot s serves the batch
indexes b ≡ s (mod W), each from its own ``PackStream`` s over a disjoint shard (rank · W + s of world · W) of each
epoch's permutation. The DataLoader hands batches out round-robin by worker, so the global order is b = 0, 1, 2, ...
Each batch carries its slot's cursors; the training step reports the batch as consumed (``on_batch_consumed``), and
``state_dict`` (saved by Lightning inside every checkpoint, gathered from all ranks) holds the consumed count n and
every slot's cursor. On resume, worker w takes slot (w + n) mod W, so worker 0 serves batch n and the order goes
on exactly as before. Changing the number of workers or ranks between a save and a resume is refused.

Bad records are skipped by the manifest reader (``unimage.data.manifest``) with a reason; each batch also carries
its slot's running counts, which the training module logs (``data/skipped_<reason>``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from unimage.data.manifest import InterleavedSample, Manifest, PairSample, SkipCounter, TextSample
from unimage.data.packer import Pack, PackerConfig, PackStream
from unimage.data.segments import ImageSizes, PlannedSample, SegmentBuilder
from unimage.data.transforms import PreContextSplitting, SplittingConfig
from unimage.model.config import ModelConfig
from unimage.script.tokenizer import ScriptTokenizer, load_tokenizer

__all__ = [
    "DataBinding",
    "PackedTrainData",
    "Stage",
    "TrainBatch",
    "TrainDataConfig",
    "UniMAGEDataModule",
    "stage_of_batch",
]

logger = logging.getLogger(__name__)

Stage = Literal["icl", "del"]


def stage_of_batch(batch_index: int, icl_steps: int, batches_per_step: int = 1) -> Stage:
    """The stage of a batch: ``icl`` for the first ``icl_steps`` optimiser steps, ``del`` after."""
    return "icl" if batch_index // max(batches_per_step, 1) < icl_steps else "del"


@dataclass
class TrainBatch:
    """What the DataLoader yields for one training step (or one accumulation micro-step).

    Attributes:
        index: Global batch index on this rank (0, 1, 2, ...).
        slot: The slot (data worker stream) that produced it.
        stage: ``icl`` or ``del``.
        packs: ``joint`` (icl) or ``und`` / ``gen`` (del), each present only when its source exists.
        state: The slot's cursors and skip counts right after this batch (for resuming).
    """

    index: int
    slot: int
    stage: Stage
    packs: dict[str, Pack]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Samples in all packs."""
        return sum(len(p.samples) for p in self.packs.values())

    @property
    def num_tokens(self) -> int:
        """Packed tokens in all packs."""
        return sum(p.num_tokens for p in self.packs.values())


@dataclass(frozen=True)
class DataBinding:
    """What the data stream takes from the model side, defined there once (``UniMAGETrainModule.data_binding``).

    ``unimage fit`` hands it over with LightningCLI's ``link_arguments`` (``model`` → ``data.binding``, applied when
    the module is built, so it is not a YAML key); in Python pass ``binding=module.data_binding()``.

    Attributes:
        model: The model config (token counts, ``layout.id_prompting``, image tables).
        tokenizer_dir: A Hugging Face tokenizer directory, or None for the offline byte tokenizer (tiny configs).
        icl_steps: Optimiser steps of the ``icl`` stage.
        del_steps: Optimiser steps of the ``del`` stage (0: no ``und`` / ``gen`` streams).
        seed: Base seed of orders, splits and dropout.
    """

    model: ModelConfig
    tokenizer_dir: str | None
    icl_steps: int
    del_steps: int
    seed: int


@dataclass(frozen=True)
class TrainDataConfig:
    """Everything that decides the data stream (besides the manifests).

    Attributes:
        model: The model config (token counts, ``layout.id_prompting``, image tables).
        tokenizer_dir: A Hugging Face tokenizer directory, or None for the offline byte tokenizer (tiny configs).
        icl_steps: Optimiser steps of the ``icl`` stage (``del`` follows).
        batches_per_step: Gradient-accumulation factor.
        seed: Base seed of orders, splits and dropout.
        rank: This process's rank.
        world_size: Number of ranks.
        num_workers: DataLoader workers (0: the main process; counts as one slot).
    """

    model: ModelConfig
    tokenizer_dir: str | None = None
    icl_steps: int = 0
    batches_per_step: int = 1
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0


class _Slot:
    """One slot's readers and streams (built inside the worker process that serves it)."""

    def __init__(self, data: PackedTrainData, slot: int) -> None:
        cfg = data.config
        self.skips = SkipCounter()
        tokenizer: ScriptTokenizer = load_tokenizer(cfg.tokenizer_dir)
        self.builder = SegmentBuilder(cfg.model, tokenizer, data.images)
        self.splitter = PreContextSplitting(data.splitting)
        self.manifests = {
            kind: Manifest(path, kind=kind, counter=self.skips)  # type: ignore[arg-type]
            for kind, path in data.manifests.items()
        }
        shard = (cfg.rank * data.num_slots + slot, cfg.world_size * data.num_slots)
        self.streams: dict[str, PackStream] = {}

        def stream(name: str, n: int, load: Any) -> None:
            self.streams[name] = PackStream(name, n, load, cfg.model, data.packer, cfg.seed, shard)

        # An empty manifest contributes no stream (a stage left without any stream fails when it is reached).
        inter = self.manifests.get("interleaved") or None
        pairs = self.manifests.get("pair") or None
        text = self.manifests.get("text") or None
        if cfg.icl_steps > 0 and inter is not None:
            stream("icl", len(inter), lambda i, e: self._interleaved(i, text_loss=True))
        if data.del_stage:
            if text is not None:
                stream("und", len(text), self._text)
            n_inter = len(inter) if inter is not None else 0
            n_gen = n_inter + (len(pairs) if pairs is not None else 0)
            if n_gen:
                stream("gen", n_gen, lambda i, e: self._gen(i, n_inter))

    def _guard(self, manifest: Manifest, item: int, build: Any) -> PlannedSample | None:
        sample = manifest.load(item)
        if sample is None:
            return None
        try:
            planned: PlannedSample = build(sample)
        except ValueError as err:  # e.g. an entity index beyond the tokenizer's script vocabulary
            self.skips.skip("malformed_script", manifest.records[item].where, str(err))
            self.skips.kept -= 1
            return None
        return planned

    def _interleaved(self, item: int, text_loss: bool) -> PlannedSample | None:
        def build(s: Any) -> PlannedSample:
            if not isinstance(s, InterleavedSample):
                raise ValueError(f"expected an interleaved record, got kind {s.kind!r}")
            return self.builder.interleaved(s, text_loss=text_loss)

        return self._guard(self.manifests["interleaved"], item, build)

    def _text(self, item: int, epoch: int) -> PlannedSample | None:
        def build(s: Any) -> PlannedSample:
            if not isinstance(s, TextSample):
                raise ValueError(f"expected a text record, got kind {s.kind!r}")
            return self.builder.text(s, self.splitter(s, epoch=epoch))

        return self._guard(self.manifests["text"], item, build)

    def _gen(self, item: int, n_inter: int) -> PlannedSample | None:
        if item < n_inter:
            return self._interleaved(item, text_loss=False)

        def build(s: Any) -> PlannedSample:
            if not isinstance(s, PairSample):
                raise ValueError(f"expected a pair record, got kind {s.kind!r}")
            return self.builder.pair(s)

        return self._guard(self.manifests["pair"], item - n_inter, build)

    def state(self) -> dict[str, Any]:
        return {
            "streams": {name: s.state_dict() for name, s in self.streams.items()},
            "skips": dict(self.skips.counts) | {"too_long": sum(s.too_long for s in self.streams.values())},
            "kept": self.skips.kept,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for name, cursor in state.get("streams", {}).items():
            if name in self.streams:
                self.streams[name].load_state_dict(cursor)
        self.skips.counts.update({k: v for k, v in state.get("skips", {}).items() if k != "too_long"})
        self.skips.kept = int(state.get("kept", 0))


class PackedTrainData(IterableDataset[TrainBatch]):
    """Endless stream of ``TrainBatch`` es for one rank (see the module docstring for slots and resuming).

    Args:
        manifests: kind (``interleaved`` / ``text`` / ``pair``) → manifest path.
        config: Stream settings.
        packer: Budgets and dropout.
        splitting: Pre-Context Script Splitting of text scripts.
        images: Resize rules.
        del_stage: Whether a ``del`` stage follows (builds the ``und`` / ``gen`` streams).
        resume: ``UniMAGEDataModule`` state of this rank to resume from.
    """

    def __init__(
        self,
        manifests: dict[str, str],
        config: TrainDataConfig,
        packer: PackerConfig,
        splitting: SplittingConfig,
        images: ImageSizes,
        del_stage: bool,
        resume: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.manifests = manifests
        self.config = config
        self.packer = packer
        self.splitting = splitting
        self.images = images
        self.del_stage = del_stage
        self.num_slots = max(config.num_workers, 1)
        self.resume = resume or {}
        if self.resume and int(self.resume.get("num_slots", self.num_slots)) != self.num_slots:
            raise ValueError(
                f"the checkpoint's data state was written with {self.resume['num_slots']} data worker slot(s), "
                f"this run has {self.num_slots}: keep data.num_workers unchanged to resume with the same data order"
            )

    def __iter__(self) -> Iterator[TrainBatch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        consumed = int(self.resume.get("consumed", 0))
        slot_id = (worker + consumed) % self.num_slots
        slot = _Slot(self, slot_id)
        saved = self.resume.get("slots", {}).get(str(slot_id))
        if saved:
            slot.load_state(saved)
        index = consumed + worker
        cfg = self.config
        while True:
            stage = stage_of_batch(index, cfg.icl_steps, cfg.batches_per_step)
            if stage == "del" and not self.del_stage:
                stage = "icl"  # past the end of an icl-only schedule: only ever prefetched, never trained on
            names = ("icl",) if stage == "icl" else ("und", "gen")
            packs = {("joint" if n == "icl" else n): slot.streams[n].next_pack() for n in names if n in slot.streams}
            if not packs:
                raise RuntimeError(f"no data for stage {stage!r}: manifests given: {sorted(self.manifests)}")
            yield TrainBatch(index, slot_id, stage, packs, slot.state())
            index += self.num_slots


def _identity(batch: Any) -> Any:
    return batch


class UniMAGEDataModule(pl.LightningDataModule):
    """Manifests → ``TrainBatch`` es for the two-stage schedule.

    The model side (model config, tokenizer, stage schedule, seed) comes in as one ``DataBinding``, defined by the
    training module (``binding=module.data_binding()``; ``unimage fit`` links it); rank, world size and the
    accumulation factor come from the trainer in ``setup`` (one process without one). ``bind`` sets everything by
    hand instead (tests, benchmarks).

    Args:
        synthstory: A SynthStory folder; fills any manifest not given from ``<dir>/train/*.jsonl``.
        interleaved: Manifest of interleaved scripts + keyframes (JSONL or parquet).
        text: Manifest of pure-text scripts.
        pairs: Manifest of text–image pairs.
        script_splitting: Pre-Context Script Splitting of text scripts (the ablation flag).
        p_extension: Probability of an extension view.
        p_continuation: Probability of a continuation view.
        packer: Token budgets and conditioning dropout.
        images: Resize rules of the VAE and ViT paths.
        num_workers: DataLoader worker processes.
        binding: The model side (see above); None until ``bind`` is called.
    """

    def __init__(
        self,
        synthstory: str | None = None,
        interleaved: str | None = None,
        text: str | None = None,
        pairs: str | None = None,
        script_splitting: bool = True,
        p_extension: float = 1 / 3,
        p_continuation: float = 1 / 3,
        packer: PackerConfig | None = None,
        images: ImageSizes | None = None,
        num_workers: int = 0,
        binding: DataBinding | None = None,
    ) -> None:
        super().__init__()
        self.binding = binding
        self.manifests: dict[str, str] = {}
        for kind, path, default in (
            ("interleaved", interleaved, "interleaved.jsonl"),
            ("text", text, "text.jsonl"),
            ("pair", pairs, "pairs.jsonl"),
        ):
            if path is None and synthstory is not None and (Path(synthstory) / "train" / default).is_file():
                path = str(Path(synthstory) / "train" / default)
            if path is not None:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"data.{kind}: manifest not found: {path}")
                self.manifests[kind] = path
        if not self.manifests:
            raise ValueError("UniMAGEDataModule: give at least one manifest (or a synthstory folder)")
        self.splitting = SplittingConfig(
            enabled=script_splitting, p_extension=p_extension, p_continuation=p_continuation
        )
        self.packer = packer or PackerConfig()
        self.images = images or ImageSizes()
        self.num_workers = num_workers
        self.config: TrainDataConfig | None = None
        self.del_stage = True
        self._resume: dict[str, Any] = {}
        self._state: dict[str, Any] = {}

    # -------------------------------------------------------------------------------------------- binding

    def bind(self, config: TrainDataConfig, del_stage: bool = True) -> None:
        """Fix the stream settings (called by ``setup`` from the trainer and module, or by hand)."""
        self.config = config
        self.del_stage = del_stage
        self.splitting = SplittingConfig(
            enabled=self.splitting.enabled,
            p_extension=self.splitting.p_extension,
            p_continuation=self.splitting.p_continuation,
            seed=config.seed,
        )

    def setup(self, stage: str) -> None:
        """Bind the model side to the attached trainer (if any) and check the manifests cover the schedule."""
        trainer = self.trainer
        if self.binding is not None:
            b = self.binding
            self.bind(
                TrainDataConfig(
                    model=b.model,
                    tokenizer_dir=b.tokenizer_dir,
                    icl_steps=b.icl_steps,
                    batches_per_step=trainer.accumulate_grad_batches if trainer is not None else 1,
                    seed=b.seed,
                    rank=trainer.global_rank if trainer is not None else 0,
                    world_size=trainer.world_size if trainer is not None else 1,
                    num_workers=self.num_workers,
                ),
                del_stage=b.del_steps > 0,
            )
        if self.config is None:
            raise RuntimeError(
                "UniMAGEDataModule: give binding=module.data_binding() (``unimage fit`` links it) or call bind(...)"
            )
        if self.config.icl_steps > 0 and "interleaved" not in self.manifests:
            raise ValueError("the icl stage needs an interleaved manifest (data.interleaved or data.synthstory)")
        if self.del_stage and not ({"text", "interleaved", "pair"} & set(self.manifests)):
            raise ValueError("the del stage needs a text, interleaved or pairs manifest")
        self.images.check(self.config.model)

    # -------------------------------------------------------------------------------------------- loaders

    def dataset(self) -> PackedTrainData:
        """The (endless) dataset of this rank, resuming from the loaded state if any."""
        if self.config is None:
            raise RuntimeError("UniMAGEDataModule: not bound (call setup or bind first)")
        return PackedTrainData(
            self.manifests, self.config, self.packer, self.splitting, self.images, self.del_stage, self._resume
        )

    def train_dataloader(self) -> DataLoader[TrainBatch]:
        """A DataLoader yielding ``TrainBatch`` es one at a time (packs are the batches)."""
        return DataLoader(
            self.dataset(), batch_size=None, num_workers=self.num_workers, collate_fn=_identity, pin_memory=False
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Packs stay on the CPU: the training module encodes the images and moves the packed batch itself."""
        return batch

    # -------------------------------------------------------------------------------------------- state

    def on_batch_consumed(self, batch: TrainBatch) -> None:
        """Record that ``batch`` was used by a training step (its cursors become the resume point)."""
        if self.config is None:
            return
        slots = dict(self._state.get("slots", self._resume.get("slots", {})))
        slots[str(batch.slot)] = batch.state
        self._state = {"consumed": batch.index + 1, "num_slots": max(self.config.num_workers, 1), "slots": slots}

    def skip_counts(self) -> dict[str, int]:
        """Skipped records per reason, summed over the slots seen so far (``too_long`` included)."""
        total: dict[str, int] = {}
        for state in self._state.get("slots", {}).values():
            for reason, n in state.get("skips", {}).items():
                total[reason] = total.get(reason, 0) + int(n)
        return total

    def state_dict(self) -> dict[str, Any]:
        """This rank's data position, gathered from every rank when distributed (saved in each checkpoint)."""
        own = self._state or self._resume
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, own)
            return {"ranks": gathered}
        return {"ranks": [own]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume this rank from a checkpoint's data state."""
        ranks = state_dict.get("ranks", [])
        rank = self.config.rank if self.config is not None else 0
        if self.trainer is not None:
            rank = self.trainer.global_rank
            if len(ranks) != self.trainer.world_size:
                raise ValueError(
                    f"the checkpoint's data state has {len(ranks)} rank(s), this run has {self.trainer.world_size}"
                )
        self._resume = dict(ranks[rank]) if rank < len(ranks) and ranks[rank] else {}
        self._state = dict(self._resume)
