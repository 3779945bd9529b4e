"""The autoencoder a training run uses, and the fit of the synth one on the run's training keyframes.

``training_autoencoder`` is what ``UniMAGETrainModule.configure_model`` calls when it starts from a named size:

- ``ae="flux"``: a random ``FluxVAE`` (BAGEL's architecture), built exactly as before, under the caller's seeded RNG;
- ``ae="synth"``: the patch-PCA ``SynthAE`` fitted on the keyframes of the attached datamodule's training manifests
  (interleaved keyframes, then pair images, after the same VAE resize the training batches get). One record in ten
  (record index ≡ 9 mod 10, in manifest order) is held out of the fit and its keyframes give the recorded
  reconstruction PSNR.

The fit is saved in ``<root>/synth_ae/`` (``synth_ae.safetensors`` + ``fit.json``, root = the trainer's
``default_root_dir``, i.e. the run directory) and a later call with the same root reuses it instead of fitting again:
a resumed run keeps the autoencoder it started with (the Lightning checkpoint holds the same weights too). If the
keyframes changed (another pixel fingerprint) and the run has no ``checkpoints/last.ckpt`` yet, the fit is redone.
The fit record (image counts, held-out / fit PSNR, seconds, fingerprint) is also printed, logged as hyper-parameters
(``logs/csv/hparams.yaml``, TensorBoard) and written into the exported ``config.json``.

Without a trainer (``export_checkpoint`` rebuilding a module from a Lightning checkpoint) the synth autoencoder is
returned unfitted, to be filled by ``load_state_dict``; it refuses to encode until then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from unimage.data.atomic import atomic_write_text
from unimage.data.manifest import InterleavedSample, Manifest, PairSample
from unimage.data.segments import ImageSizes
from unimage.model.config import ModelConfig
from unimage.model.image_transforms import ImageTransform
from unimage.model.synth_ae import SYNTH_AE_FILE, SynthAE, fit_synth_ae, reconstruction_psnr
from unimage.model.vae import Autoencoder, FluxVAE

__all__ = [
    "FIT_DIR",
    "HELDOUT_EVERY",
    "SynthKeyframes",
    "fit_on_keyframes",
    "training_autoencoder",
    "training_keyframes",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

FIT_DIR = "synth_ae"
HELDOUT_EVERY = 10  # sample i is held out when i % 10 == 9
# Samples read, evenly strided over the manifests beyond these counts. Measured on 1000 SynthStory stories (64 px):
# the fit on 1024 images takes 0.9 s and is 0.02 dB below the fit on 4096 (3.2 s); reading every image took 7.5 s.
MAX_FIT_SAMPLES = 256
MAX_HELDOUT_SAMPLES = 64
MAX_PSNR_IMAGES = 512  # the fit set's PSNR is measured on at most this many of its images


class SynthKeyframes:
    """The training keyframes split into the fit set and the held-out set, with a fingerprint of their pixels.

    Attributes:
        fit: [3, H, W] images in [-1, 1] the PCA is fitted on.
        heldout: Images of the held-out samples (PSNR only).
        fingerprint: sha256 of every image's shape and float32 pixels, in order, and of the split.
    """

    def __init__(self, fit: list[Tensor], heldout: list[Tensor]) -> None:
        self.fit = fit
        self.heldout = heldout
        digest = hashlib.sha256()
        for tag, images in (("fit", fit), ("heldout", heldout)):
            digest.update(f"{tag}:{len(images)}".encode())
            for im in images:
                digest.update(str(tuple(im.shape)).encode())
                digest.update(im.detach().to(torch.float32).contiguous().numpy().tobytes())
        self.fingerprint = digest.hexdigest()


def _strided(items: list[_T], limit: int) -> list[_T]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def training_keyframes(manifests: Mapping[str, str], sizes: ImageSizes, config: ModelConfig) -> SynthKeyframes:
    """The VAE-path images of the interleaved and pair manifests (bad records are skipped, as in training).

    Records are numbered over the interleaved then the pair manifest; record j is held out when j % 10 == 9; at most
    ``MAX_FIT_SAMPLES`` / ``MAX_HELDOUT_SAMPLES`` records of each set are read, evenly strided, so the cost does not
    grow with the data set.

    Raises:
        ValueError: The manifests hold no image.
    """
    transform = ImageTransform(sizes.vae_max_size, sizes.vae_min_size, config.latent_downsample)
    records: list[tuple[Manifest, int]] = []
    for kind in ("interleaved", "pair"):
        if kind in manifests:
            manifest = Manifest(manifests[kind], kind=kind)
            records += [(manifest, i) for i in range(len(manifest))]
    held = [r for j, r in enumerate(records) if j % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    rest = [r for j, r in enumerate(records) if j % HELDOUT_EVERY != HELDOUT_EVERY - 1]

    def images(chosen: list[tuple[Manifest, int]]) -> list[Tensor]:
        out: list[Tensor] = []
        for manifest, i in chosen:
            sample = manifest.load(i)
            if isinstance(sample, InterleavedSample):
                out.extend(transform(im) for im in sample.images)
            elif isinstance(sample, PairSample):
                out.append(transform(sample.image))
        return out

    fit = images(_strided(rest, MAX_FIT_SAMPLES))
    heldout = images(_strided(held, MAX_HELDOUT_SAMPLES))
    if not fit:
        raise ValueError(
            f"the synth autoencoder is fitted on the training keyframes, but the manifests {dict(manifests)} hold none"
        )
    return SynthKeyframes(fit, heldout)


def fit_on_keyframes(keyframes: SynthKeyframes, config: ModelConfig) -> SynthAE:
    """Fit ``config.synth_ae`` on ``keyframes.fit`` and attach the fit record (PSNRs, counts, time, fingerprint)."""
    start = time.perf_counter()
    ae = fit_synth_ae(keyframes.fit, config.synth_ae)
    seconds = time.perf_counter() - start
    record: dict[str, Any] = dict(ae.fit_info)
    record.update(
        patch_size=config.synth_ae.patch_size,
        z_channels=config.synth_ae.z_channels,
        num_heldout_images=len(keyframes.heldout),
        heldout_psnr_db=round(reconstruction_psnr(ae, keyframes.heldout), 4) if keyframes.heldout else None,
        fit_psnr_db=round(reconstruction_psnr(ae, _strided(keyframes.fit, MAX_PSNR_IMAGES)), 4),
        fit_seconds=round(seconds, 3),
        fingerprint=keyframes.fingerprint,
    )
    ae.fit_info = record
    return ae


def _load_saved(directory: Path, config: ModelConfig) -> SynthAE | None:
    path = directory / SYNTH_AE_FILE
    if not path.is_file():
        return None
    ae = SynthAE.from_safetensors(path)
    if ae.config != config.synth_ae:
        logger.warning("%s holds a %s, the model needs a %s: fitting again", path, ae.config, config.synth_ae)
        return None
    return ae


def training_autoencoder(config: ModelConfig, trainer: Any | None) -> Autoencoder:
    """The autoencoder of a run that starts from a named size (see the module docstring).

    Args:
        config: The model config (``ae`` decides).
        trainer: The Lightning trainer the module is attached to (its ``datamodule`` must be a
            ``UniMAGEDataModule`` for ``ae="synth"``), or None.

    Raises:
        ValueError: ``ae="synth"`` with a trainer whose datamodule has no training manifests.
    """
    if config.ae == "flux":
        return FluxVAE(config.vae)
    if trainer is None:
        return SynthAE(config.synth_ae)  # filled by load_state_dict
    datamodule = getattr(trainer, "datamodule", None)
    manifests = getattr(datamodule, "manifests", None)
    sizes = getattr(datamodule, "images", None)
    if not isinstance(manifests, Mapping) or not isinstance(sizes, ImageSizes):
        raise ValueError(
            "model ae='synth' is fitted on the training keyframes: train with a UniMAGEDataModule "
            f"(got datamodule {type(datamodule).__name__})"
        )
    root = Path(trainer.default_root_dir)
    directory = root / FIT_DIR
    start = time.perf_counter()
    keyframes = training_keyframes(manifests, sizes, config)
    load_seconds = round(time.perf_counter() - start, 3)
    saved = _load_saved(directory, config)
    if saved is not None:
        if saved.fit_info.get("fingerprint") == keyframes.fingerprint:
            rank_zero_info(f"synth autoencoder: reusing the fit in {directory}")
            return saved.eval()
        if (root / "checkpoints" / "last.ckpt").exists():
            logger.warning(
                "synth autoencoder: the training keyframes changed since %s was fitted, but the run is resuming: "
                "keeping the saved fit (delete %s to fit again in a new run)",
                directory,
                directory,
            )
            return saved.eval()
    ae = fit_on_keyframes(keyframes, config)
    ae.fit_info["load_seconds"] = load_seconds
    info = ae.fit_info
    p = config.synth_ae.patch_size
    rank_zero_info(
        f"synth autoencoder: {p}x{p} patches -> {config.synth_ae.z_channels} channels fitted on "
        f"{info['num_fit_images']} keyframes in {info['fit_seconds']:.2f} s (loading them: {load_seconds:.2f} s); "
        f"held-out PSNR {info['heldout_psnr_db']} dB on {info['num_heldout_images']} keyframes "
        f"(fit set {info['fit_psnr_db']:.2f} dB); saved in {directory}"
    )
    if getattr(trainer, "is_global_zero", True):
        directory.mkdir(parents=True, exist_ok=True)
        ae.save(directory / SYNTH_AE_FILE)
        atomic_write_text(directory / "fit.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
        for lg in getattr(trainer, "loggers", []):
            lg.log_hyperparams({"synth_ae": info})
    return ae
