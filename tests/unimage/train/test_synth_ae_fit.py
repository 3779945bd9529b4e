"""Training with the synth autoencoder: fitted on the run's keyframes when training starts, saved in the run directory,
reused by a later start with the same keyframes, written into the export and the Lightning checkpoint."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from tests._helpers.data import IMAGES, PACKER
from unimage.data.datamodule import UniMAGEDataModule
from unimage.model.checkpoint import SYNTH_AE_FILE, load_bagel_dir
from unimage.model.synth_ae import SynthAE, fit_synth_ae
from unimage.model.vae import FluxVAE
from unimage.train.export import BagelExport, export_checkpoint
from unimage.train.synth_fit import FIT_DIR, training_autoencoder, training_keyframes


def _fit(root, steps: int = 1, **module_args):
    from unimage.train.module import UniMAGETrainModule

    module = UniMAGETrainModule(
        size="tiny-synth", icl_steps=steps, del_steps=0, lr=1e-3, attention_backend="sdpa", **module_args
    )
    dm = UniMAGEDataModule(
        synthstory=str(root.parent / "synth"), packer=PACKER, images=IMAGES, binding=module.data_binding()
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=str(root),
        max_steps=steps,
        logger=CSVLogger(str(root), name="logs", version="csv"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[BagelExport()],
    )
    trainer.fit(module, datamodule=dm)
    return module, dm, trainer


@pytest.mark.slow
def test_synth_ae_is_fitted_saved_exported_and_reused(tiny_set, tmp_path):
    (tmp_path / "synth").symlink_to(tiny_set)
    root = tmp_path / "run"
    module, dm, trainer = _fit(root)
    assert isinstance(module.vae, SynthAE) and module.vae.is_fitted
    # The fit is the one the training keyframes give (same function, same images: bit-identical).
    keyframes = training_keyframes(dm.manifests, dm.images, module.model_config)
    reference = fit_synth_ae(keyframes.fit, module.model_config.synth_ae)
    for key, t in reference.tensors().items():
        assert torch.equal(module.vae.tensors()[key], t), key
    # Recorded: fit.json in the run, the logger's hparams, the export's config.json; the export loads it back.
    record = json.loads((root / FIT_DIR / "fit.json").read_text())
    assert record["fingerprint"] == keyframes.fingerprint and record["num_fit_images"] == len(keyframes.fit)
    assert record["fit_psnr_db"] > 20
    hparams = (root / "logs" / "csv" / "hparams.yaml").read_text()  # Lightning writes python tuples: read as text
    assert "synth_ae:" in hparams and record["fingerprint"] in hparams
    export = root / "checkpoints" / "export"
    top = json.loads((export / "config.json").read_text())
    assert top["ae"] == "synth" and top["synth_ae_config"]["fit"] == record
    loaded = load_bagel_dir(export).vae
    assert isinstance(loaded, SynthAE)
    for key, t in module.vae.tensors().items():
        assert torch.equal(loaded.tensors()[key], t), key
    # The Lightning checkpoint holds the fit too (weights and record): exporting it rebuilds the same AE.
    trainer.save_checkpoint(tmp_path / "final.ckpt")
    again = load_bagel_dir(export_checkpoint(tmp_path / "final.ckpt", tmp_path / "export2")).vae
    assert isinstance(again, SynthAE) and again.fit_info == record
    assert torch.equal(again.basis, module.vae.basis)

    # A later start in the same root reuses the saved fit (shown by tampering with it: the tampered weights come back)
    # while the keyframes are the same ...
    saved = SynthAE.from_safetensors(root / FIT_DIR / SYNTH_AE_FILE)
    with torch.no_grad():
        saved.scale.mul_(2.0)
    saved.save(root / FIT_DIR / SYNTH_AE_FILE)
    reused = training_autoencoder(module.model_config, trainer)
    assert isinstance(reused, SynthAE) and torch.equal(reused.scale, saved.scale)
    # ... and fits again when the keyframes changed and the run has no checkpoint to resume from.
    record["fingerprint"] = "0" * 64
    saved.fit_info = record
    saved.save(root / FIT_DIR / SYNTH_AE_FILE)
    refit = training_autoencoder(module.model_config, trainer)
    assert isinstance(refit, SynthAE) and torch.equal(refit.scale, reference.scale)


def test_flux_size_still_builds_the_flux_vae():
    from unimage.train.module import UniMAGETrainModule

    module = UniMAGETrainModule(size="tiny", icl_steps=1, del_steps=0)
    module.configure_model()
    assert isinstance(module.vae, FluxVAE)


def test_latent_scaling_changes_the_fit_only_for_a_size_built_synth_model():
    from unimage.train.module import UniMAGETrainModule

    module = UniMAGETrainModule(size="tiny-synth", latent_scaling="global", icl_steps=1, del_steps=0)
    assert module.model_config.synth_ae.scaling == "global"
    assert UniMAGETrainModule(size="tiny-synth", icl_steps=1, del_steps=0).model_config.synth_ae.scaling == "channel"
    with pytest.raises(ValueError, match=r"latent_scaling is for a model built from model\.size with the synth"):
        UniMAGETrainModule(size="tiny", latent_scaling="global", icl_steps=1, del_steps=0)


@pytest.mark.slow
def test_global_latent_scaling_fits_one_common_scale_with_the_same_reconstruction(tiny_set, tmp_path):
    (tmp_path / "synth").symlink_to(tiny_set)
    channel, _, _ = _fit(tmp_path / "channel")
    (tmp_path / "glob").mkdir()
    (tmp_path / "glob" / "synth").symlink_to(tiny_set)
    glob, _, _ = _fit(tmp_path / "glob" / "run", latent_scaling="global")
    assert isinstance(channel.vae, SynthAE) and isinstance(glob.vae, SynthAE)
    # One scale for all channels: the root-mean-square of the per-channel standard deviations.
    rms = channel.vae.scale.double().square().mean().sqrt()
    assert torch.allclose(glob.vae.scale.double(), rms.expand_as(glob.vae.scale), rtol=1e-6)
    assert torch.equal(glob.vae.basis, channel.vae.basis)  # the same subspace: the same reconstruction
    record = json.loads((tmp_path / "glob" / "run" / FIT_DIR / "fit.json").read_text())
    assert record["scaling"] == "global"
