"""The LightningModule of UniMAGE's two-stage training around the pure-torch ``UniMAGE`` model.

Stages (paper §3.3–3.4, §4 "Implementation details"), run as ONE schedule: the first ``icl_steps`` optimiser steps
are Interleaved Concept Learning, the next ``del_steps`` Disentangled Expert Learning (paper: 30k then 10k at 1e-5).

- ``icl``: interleaved scripts only; every parameter of both experts (and ViT, connector, heads) is trained jointly
  on CE (script text) + MSE (keyframes), one pack per step.
- ``del``: each step has two packs. The ``und`` pack (pure-text scripts with Pre-Context Script Splitting) is run
  WITHOUT the stop-gradient and contributes only CE — it contains no image, so only understanding parameters get
  gradients. The ``gen`` pack (interleaved scripts without text loss, and text–image pairs) is run WITH the
  stop-gradient (``freeze_und``: every understanding-token activation is detached, BAGEL-style) and contributes only
  MSE; so no gradient of the MSE reaches any understanding-expert parameter (``tests/unimage/train`` checks this
  parameter by parameter). Loss = ce_weight · CE(und) + mse_weight · MSE(gen).

What is trainable: everything except the fixed sin-cos tables; ``train_vit`` / ``train_connector`` freeze the SigLIP
encoder / connector; the FLUX VAE is frozen (``freeze_vae``, BAGEL's default) and runs in eval mode under no_grad.
Optimiser: AdamW (β = 0.9 / 0.95, ε = 1e-15, no weight decay, BAGEL §5.5), linear warm-up then constant or cosine.

The model (and VAE) are built in ``configure_model`` — on the FSDP path inside the strategy's init context — from a
named size (random init, seeded) or a BAGEL-layout directory (``init_from``). Images arrive as pixels and are
VAE-encoded here, on the training device, with a posterior-sampling generator seeded by (seed, rank, batch index), and
flow noise likewise, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from unimage.data.atomic import atomic_write_text
from unimage.data.datamodule import DataBinding, Stage, TrainBatch
from unimage.data.manifest import SKIP_REASONS
from unimage.data.packer import Pack, stable_seed
from unimage.data.segments import encode_groups
from unimage.model.config import ModelConfig, get_config
from unimage.model.packing import pack as pack_samples
from unimage.model.unimage import LossTerms, UniMAGE
from unimage.model.vae import Autoencoder
from unimage.train.synth_fit import training_autoencoder

__all__ = ["TrainSettings", "UniMAGETrainModule", "check_strategy", "und_parameter_names"]


@dataclass(frozen=True)
class TrainSettings:
    """The module's arguments, typed (``self.hp``); see ``UniMAGETrainModule`` for their meaning."""

    size: str
    init_from: str | None
    id_prompting: bool
    icl_steps: int
    del_steps: int
    lr: float
    warmup_steps: int
    lr_schedule: str
    min_lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    train_vit: bool
    train_connector: bool
    freeze_vae: bool
    ce_weight: float
    mse_weight: float
    timestep_shift: float
    attention_backend: str
    activation_checkpointing: bool
    seed: int
    log_batches: bool


def und_parameter_names(model: UniMAGE) -> list[str]:
    """Names of the understanding side: LLM parameters without ``_moe_gen`` (embedding, und expert, ``norm``,
    ``lm_head``), the ViT and the connector. Everything else (``_moe_gen`` twins, ``norm_moe_gen``, time embedder,
    ``vae2llm``, ``llm2vae``) is the generation side."""
    out = []
    for name, _ in model.named_parameters():
        llm_und = name.startswith("language_model.") and "_moe_gen" not in name
        if llm_und or name.startswith(("vit_model.", "connector.")):
            out.append(name)
    return out


def _config_from_dir(directory: str, changes: dict[str, Any]) -> ModelConfig:
    from safetensors import safe_open

    from unimage.model.checkpoint import AE_FILE, EMA_FILE, read_bagel_config

    path = Path(directory)
    shapes: list[dict[str, tuple[int, ...]] | None] = []
    for name in (EMA_FILE, AE_FILE):
        f = path / name
        if f.is_file():
            with safe_open(str(f), framework="pt") as handle:
                shapes.append({k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()})  # noqa: SIM118
        else:
            shapes.append(None)
    return read_bagel_config(path, shapes[0], shapes[1]).replace(**changes)


class UniMAGETrainModule(pl.LightningModule):
    """UniMAGE training (``icl`` then ``del``) as a LightningModule.

    Args:
        size: Named model size (``tiny``, ``small``, ``bagel-7b-mot``) when ``init_from`` is None (random init).
        init_from: A BAGEL-layout directory to start from (weights, VAE, tokenizer); overrides ``size``.
        tokenizer: A Hugging Face tokenizer directory for a model built from ``size`` (None: the offline byte
            tokenizer). The vocabulary and BAGEL's special ids are set from it, and the export ships it (e.g. the
            BPE tokenizer a SynthStory set writes with ``tokenizer_vocab``). Not with ``init_from``, which brings its
            own.
        latent_scaling: For a size-built model with the synth autoencoder: how its fit scales the latent
            channels (``SynthAEConfig.scaling``: ``channel`` gives every component variance 1, ``global`` keeps
            the leading colour components dominant). None keeps the size's own.
        id_prompting: In-Context ID Prompting (the ablation flag; also written into the exported config).
        icl_steps: Optimiser steps of Interleaved Concept Learning.
        del_steps: Optimiser steps of Disentangled Expert Learning.
        lr: Peak learning rate (paper: 1e-5).
        warmup_steps: Linear warm-up steps from 0.
        lr_schedule: ``constant`` or ``cosine`` (down to ``min_lr`` at the last step) after warm-up.
        min_lr: Final learning rate of the cosine schedule.
        betas: AdamW betas.
        eps: AdamW epsilon (BAGEL: 1e-15).
        weight_decay: AdamW weight decay (BAGEL: 0).
        train_vit: Train the SigLIP encoder.
        train_connector: Train the ViT → LLM connector.
        freeze_vae: Keep the FLUX VAE frozen (BAGEL's default; False lets the MSE gradient flow into its encoder).
        ce_weight: Weight of the CE loss.
        mse_weight: Weight of the MSE loss.
        timestep_shift: Shift of training timesteps.
        attention_backend: ``auto``, ``sdpa``, ``flex`` or ``flash`` (see ``unimage.model.attention``).
        activation_checkpointing: Recompute decoder layers in the backward (non-FSDP runs; the FSDP strategy has its
            own policy).
        seed: Seed of the random init, data order, dropout, VAE posterior samples and flow noise.
        log_batches: Append ``{"step", "batch", "stage", "ids"}`` per step to ``<root>/batches.jsonl`` (rank 0;
            ``batches.rank<r>.jsonl`` for the others): the data order, for provenance and for checking resumes.
    """

    def __init__(
        self,
        size: str = "tiny",
        init_from: str | None = None,
        tokenizer: str | None = None,
        latent_scaling: Literal["channel", "global"] | None = None,
        id_prompting: bool = False,
        icl_steps: int = 30000,
        del_steps: int = 10000,
        lr: float = 1e-5,
        warmup_steps: int = 0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        min_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-15,
        weight_decay: float = 0.0,
        train_vit: bool = True,
        train_connector: bool = True,
        freeze_vae: bool = True,
        ce_weight: float = 1.0,
        mse_weight: float = 1.0,
        timestep_shift: float = 1.0,
        attention_backend: Literal["auto", "sdpa", "flex", "flash"] = "auto",
        activation_checkpointing: bool = False,
        seed: int = 0,
        log_batches: bool = True,
    ) -> None:
        super().__init__()
        if icl_steps < 0 or del_steps < 0 or icl_steps + del_steps == 0:
            raise ValueError(f"need icl_steps >= 0, del_steps >= 0 and a positive total, got {icl_steps}, {del_steps}")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        self.save_hyperparameters()
        args = dict(locals())
        args["betas"] = (float(betas[0]), float(betas[1]))
        self.hp = TrainSettings(**{f.name: args[f.name] for f in fields(TrainSettings)})
        changes: dict[str, Any] = {
            "id_prompting": id_prompting,
            "ce_weight": ce_weight,
            "mse_weight": mse_weight,
            "timestep_shift": timestep_shift,
            "attention_backend": attention_backend,
        }
        if init_from is not None and tokenizer is not None:
            raise ValueError("model.tokenizer is for a model built from model.size; model.init_from brings its own")
        if init_from is not None:
            if not Path(init_from).is_dir():
                raise FileNotFoundError(f"model.init_from: BAGEL checkpoint directory not found: {init_from}")
            self.model_config = _config_from_dir(init_from, changes)
            tok_files = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
            self.tokenizer_dir = init_from if any((Path(init_from) / f).is_file() for f in tok_files) else None
        elif tokenizer is not None:
            from unimage.model.checkpoint import config_for_tokenizer
            from unimage.script.tokenizer import HFTokenizer

            if not Path(tokenizer).is_dir():
                raise FileNotFoundError(f"model.tokenizer: tokenizer directory not found: {tokenizer}")
            self.model_config = config_for_tokenizer(get_config(size, **changes), HFTokenizer.from_directory(tokenizer))
            self.tokenizer_dir = tokenizer
        else:
            self.model_config = get_config(size, **changes)
            self.tokenizer_dir = None
        if latent_scaling is not None:
            if init_from is not None or self.model_config.ae != "synth":
                raise ValueError(
                    "model.latent_scaling is for a model built from model.size with the synth autoencoder "
                    f"(size {size!r} has ae={self.model_config.ae!r}; init_from brings its fitted latent)"
                )
            synth_ae = replace(self.model_config.synth_ae, scaling=latent_scaling)
            self.model_config = self.model_config.replace(synth_ae=synth_ae)
        self._config_changes = changes
        self.model: UniMAGE | None = None
        self.vae: Autoencoder | None = None
        self._t_batch = 0.0
        self._stage_metrics: dict[str, float] = {}

    # -------------------------------------------------------------------------------------------- set-up

    def data_binding(self) -> DataBinding:
        """What the datamodule takes from the model side (so it is defined once; ``unimage fit`` links it)."""
        hp = self.hp
        return DataBinding(self.model_config, self.tokenizer_dir, hp.icl_steps, hp.del_steps, hp.seed)

    def setup(self, stage: str) -> None:
        """Refuse DDP without ``find_unused_parameters``: it would hang, not fail (see ``check_strategy``)."""
        if self.trainer is not None:
            check_strategy(self.trainer.strategy)

    def configure_model(self) -> None:
        """Build (or load) the model and VAE once; set which parameters train."""
        if self.model is not None:
            return
        hp = self.hp
        # Real tensors on the CPU even inside the strategy's meta-device init context (FSDP): our modules compute
        # their fixed tables and RoPE frequencies at construction, which a meta tensor cannot hold; FSDP then shards
        # the CPU model onto the devices.
        with torch.device("cpu"):
            if hp.init_from is not None:
                from unimage.model.checkpoint import load_bagel_dir

                ckpt = load_bagel_dir(hp.init_from, load_vae=True, **self._config_changes)
                model, vae = ckpt.model, ckpt.vae
                assert vae is not None  # load_vae=True
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(hp.seed)
                    model = UniMAGE(self.model_config)
                    vae = training_autoencoder(self.model_config, self._trainer)  # FLUX, or the synth AE's fit
        model.train()
        model.language_model.model.gradient_checkpointing = bool(hp.activation_checkpointing)
        for name, p in model.named_parameters():
            trainable = not name.endswith("pos_embed.pos_embed")
            if name.startswith("vit_model.") and not hp.train_vit:
                trainable = False
            if name.startswith("connector.") and not hp.train_connector:
                trainable = False
            p.requires_grad_(trainable)
        vae.requires_grad_(not hp.freeze_vae)
        vae.eval()
        self.model = model
        self.vae = vae

    def train(self, mode: bool = True) -> UniMAGETrainModule:
        """Lightning switches every submodule to train mode; the frozen VAE stays in eval mode."""
        super().train(mode)
        if self.vae is not None and self.hp.freeze_vae:
            self.vae.eval()
        return self

    def stage_at(self, step: int) -> Stage:
        """The stage of optimiser step ``step``."""
        return "icl" if step < self.hp.icl_steps else "del"

    # -------------------------------------------------------------------------------------------- losses

    def _encode(self, images: list[Tensor], generator: torch.Generator) -> list[Tensor]:
        assert self.vae is not None
        vae = self.vae

        def encode(x: Tensor) -> Tensor:
            return vae.encode(x, generator=generator)

        if self.hp.freeze_vae:
            with torch.no_grad():
                return [t.float() for t in encode_groups(images, encode, self.device)]
        return [t.float() for t in encode_groups(images, encode, self.device)]

    def pack_losses(self, pack: Pack, freeze_und: bool, seed: int) -> LossTerms:
        """Encode the pack's images, build the packed batch and compute its losses.

        Args:
            pack: The pack.
            freeze_und: Stop-gradient through the understanding expert.
            seed: Seeds the VAE posterior samples and the flow noise of this pack.
        """
        assert self.model is not None
        images = [px for s in pack.samples for px in s.vae_pixels]
        latents = self._encode(images, torch.Generator().manual_seed(stable_seed(seed, "vae"))) if images else []
        segments = []
        k = 0
        for s in pack.samples:
            n = len(s.vae_pixels)
            segments.append(s.to_model_segments([lat.cpu() for lat in latents[k : k + n]]))
            k += n
        batch = pack_samples(segments, self.model_config).to(self.device)
        generator = torch.Generator().manual_seed(stable_seed(seed, "flow"))
        out: LossTerms = self.model(batch, generator, freeze_und=freeze_und)
        return out

    def step_losses(self, batch: TrainBatch) -> dict[str, Tensor]:
        """CE and MSE of one batch as its stage defines them (``total`` is what is backpropagated).

        Each loss is a per-token mean (summed over tokens, divided by the token count). With several ranks the count
        is the GLOBAL one (all-reduced) and the sum is scaled by the world size, as BAGEL does (bagel-compat §3.3):
        after DDP/FSDP average the gradients, every token of every rank weighs the same, however unevenly the packs
        split the tokens. The logged values are then this rank's share on the global scale.
        """
        seed = stable_seed(self.hp.seed, "step", self.global_rank, batch.index)
        cfg = self.model_config
        zero = torch.zeros((), device=self.device)
        ce_sum, mse_sum, n_ce, n_mse = zero, zero, 0, 0
        if batch.stage == "icl":
            t = self.pack_losses(batch.packs["joint"], freeze_und=False, seed=seed)
            ce_sum, mse_sum, n_ce, n_mse = t.ce_sum, t.mse_sum, t.num_ce_tokens, t.num_mse_tokens
        else:
            if "und" in batch.packs:
                tu = self.pack_losses(batch.packs["und"], freeze_und=False, seed=stable_seed(seed, "und"))
                ce_sum, n_ce = tu.ce_sum, tu.num_ce_tokens
            if "gen" in batch.packs:
                tg = self.pack_losses(batch.packs["gen"], freeze_und=True, seed=stable_seed(seed, "gen"))
                mse_sum, n_mse = tg.mse_sum, tg.num_mse_tokens
        world, g_ce, g_mse = 1, float(n_ce), float(n_mse)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            counts = torch.tensor([g_ce, g_mse], device=self.device)
            torch.distributed.all_reduce(counts)
            g_ce, g_mse = float(counts[0]), float(counts[1])
        ce = ce_sum * world / max(g_ce, 1.0)
        mse = mse_sum * world / max(g_mse, 1.0)
        total = cfg.loss.ce_weight * ce + cfg.loss.mse_weight * mse
        return {
            "total": total,
            "ce": ce,
            "mse": mse,
            "n_ce": torch.tensor(float(n_ce)),
            "n_mse": torch.tensor(float(n_mse)),
        }

    # -------------------------------------------------------------------------------------------- training

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._t_batch = time.perf_counter()

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        """One (micro-)step: check the batch belongs to this step's stage, compute and log the stage's losses."""
        trainer = self.trainer
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "on_batch_consumed"):
            dm.on_batch_consumed(batch)
        accum = trainer.accumulate_grad_batches if trainer is not None else 1
        expected = self.stage_at(self.global_step)
        if batch.index // accum != self.global_step or batch.stage != expected:
            raise RuntimeError(
                f"data/step mismatch: batch {batch.index} ({batch.stage}) arrived at step {self.global_step} "
                f"({expected}); was the data state restored from the same checkpoint?"
            )
        out = self.step_losses(batch)
        stage = batch.stage
        self.log("train/ce", out["ce"].detach(), on_step=True, prog_bar=True)
        self.log("train/mse", out["mse"].detach(), on_step=True, prog_bar=True)
        self._log_stage_losses(stage, out, batch.index)
        self.log("train/loss", out["total"].detach(), on_step=True)
        self.log("train/stage", 0.0 if stage == "icl" else 1.0, on_step=True)
        self.log("train/ce_tokens", out["n_ce"], on_step=True)
        self.log("train/mse_tokens", out["n_mse"], on_step=True)
        if self.hp.log_batches and trainer is not None:
            self._append_batch_log(batch)
        return out["total"]

    def _log_stage_losses(self, stage: Stage, out: dict[str, Tensor], index: int) -> None:
        """``<stage>/ce`` and ``<stage>/mse`` straight to the loggers, only on the steps of that stage.

        (``self.log`` would keep re-emitting the last ``icl/*`` value on every later ``del`` step: Lightning keeps
        each step metric of an epoch, and the whole schedule is one epoch.)
        """
        metrics = {f"{stage}/ce": float(out["ce"].detach()), f"{stage}/mse": float(out["mse"].detach())}
        self._stage_metrics = metrics
        trainer = self.trainer
        if (
            trainer is None
            or not trainer.is_global_zero
            or self.global_step % max(int(getattr(trainer, "log_every_n_steps", 1)), 1)
        ):
            return
        if (index + 1) % max(trainer.accumulate_grad_batches, 1):
            return  # log once per optimiser step, on its last micro-batch
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        dt = max(time.perf_counter() - self._t_batch, 1e-9)
        tb: TrainBatch = batch
        self.log("train/tokens_per_s", tb.num_tokens / dt, on_step=True)
        self.log("train/samples_per_s", tb.num_samples / dt, on_step=True)
        self.log("train/peak_mem_mb", _peak_memory_mb(self.device), on_step=True)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "skip_counts"):
            counts = dict.fromkeys((*SKIP_REASONS, "too_long"), 0) | dm.skip_counts()
            for reason, n in sorted(counts.items()):
                self.log(f"data/skipped_{reason}", float(n), on_step=True)
            self.log("data/skipped", float(sum(v for k, v in counts.items() if k != "too_long")), on_step=True)

    def _append_batch_log(self, batch: TrainBatch) -> None:
        root = Path(self.trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        row = {
            "step": self.global_step,
            "batch": batch.index,
            "stage": batch.stage,
            "ids": {k: p.ids for k, p in batch.packs.items()},
        }
        rank = self.global_rank
        name = "batches.jsonl" if rank == 0 else f"batches.rank{rank}.jsonl"
        with (root / name).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    # -------------------------------------------------------------------------------------------- optimiser

    def configure_optimizers(self) -> Any:
        """AdamW over the trainable parameters; warm-up, then constant or cosine, stepped per optimiser step."""
        hp = self.hp
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.lr, betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay)
        total = hp.icl_steps + hp.del_steps
        warm, floor = max(int(hp.warmup_steps), 0), hp.min_lr / hp.lr if hp.lr > 0 else 0.0
        cosine = hp.lr_schedule == "cosine"

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if not cosine:
                return 1.0
            progress = min((step - warm) / max(total - warm, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True)

    # -------------------------------------------------------------------------------------------- status

    def write_status(self, export_dir: Path | None = None) -> None:
        """``<root>/train_status.json``: finished stages, step, export directory (atomic; rank 0)."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        hp = self.hp
        step = self.global_step
        done = [s for s, end in (("icl", hp.icl_steps), ("del", hp.icl_steps + hp.del_steps)) if step >= end]
        status = {
            "global_step": step,
            "stages": {"icl": hp.icl_steps, "del": hp.del_steps},
            "finished_stages": done,
            "complete": step >= hp.icl_steps + hp.del_steps,
            "export": str(export_dir) if export_dir is not None else None,
        }
        atomic_write_text(
            Path(self.trainer.default_root_dir) / "train_status.json", json.dumps(status, indent=2) + "\n"
        )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def check_strategy(strategy: Any) -> None:
    """Raise if ``strategy`` is DDP without ``find_unused_parameters=True``.

    Which parameters get a gradient differs between steps and ranks: in ``del`` the ViT and connector get none (their
    tokens are detached or absent), a pack of pairs uses no ViT, a one-shot story has no ViT copy. DDP's reducer
    then waits for gradients that never come and the ranks hang in mismatched all-reduces. FSDP is not affected.
    """
    from lightning.pytorch.strategies import DDPStrategy

    if isinstance(strategy, DDPStrategy) and not getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters"):
        raise ValueError(
            "DDP needs find_unused_parameters=True for UniMAGE training (the parameters that receive gradients "
            "differ between steps and ranks): use trainer.strategy=ddp_find_unused_parameters_true"
        )
