"""The synth (patch-PCA) autoencoder: known-answer fits, conventions, determinism, files, and the checkpoint /
Director path; plus the FLUX path left as it was."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unimage.model.checkpoint import (
    AE_FILE,
    SYNTH_AE_FILE,
    check_bagel_dir,
    load_bagel_dir,
    save_bagel_dir,
    write_tiny_bagel_dir,
)
from unimage.model.config import ModelConfig, get_config
from unimage.model.packing import CleanVaeImage, pack
from unimage.model.synth_ae import SynthAE, SynthAEConfig, fit_synth_ae, reconstruction_psnr
from unimage.model.vae import FluxVAE


def _images_from_patches(patches: torch.Tensor, n_images: int, side: int, p: int) -> list[torch.Tensor]:
    """[n_images·(side/p)², 3·p·p] patch vectors (conv-weight order) → images, by the inverse of unfold (fold)."""
    per = (side // p) ** 2
    out = []
    for i in range(n_images):
        cols = patches[i * per : (i + 1) * per].T[None]  # [1, P, L]
        out.append(F.fold(cols, output_size=(side, side), kernel_size=p, stride=p)[0])
    return out


def _low_rank_images(rank: int, p: int = 4, n_images: int = 6, side: int = 16, seed: int = 0):
    """Images whose every p×p patch is mean + (rank-dimensional combination of fixed directions)."""
    g = torch.Generator().manual_seed(seed)
    dim = 3 * p * p
    directions = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))[0].T  # [rank, P]
    mean = 0.1 * torch.randn(dim, generator=g, dtype=torch.float64)
    n = n_images * (side // p) ** 2
    coeff = torch.randn(n, rank, generator=g, dtype=torch.float64) * torch.linspace(0.5, 0.1, rank, dtype=torch.float64)
    patches = (mean + coeff @ directions).float()
    return _images_from_patches(patches, n_images, side, p), directions


@pytest.mark.parametrize("z", [5, 8])
def test_low_rank_data_reconstructs_exactly_and_spans_its_subspace(z: int) -> None:
    images, directions = _low_rank_images(rank=5)
    ae = fit_synth_ae(images, SynthAEConfig(patch_size=4, z_channels=z))
    x = torch.stack(images)
    rec = ae.decode(ae.encode(x))
    assert torch.allclose(rec, x, atol=2e-6)
    # The 5 leading basis rows span exactly the data's directions: projecting them onto that subspace loses nothing.
    basis = ae.basis.double().reshape(z, -1)[:5]
    proj = basis @ directions.T @ directions
    assert torch.allclose(proj, basis, atol=1e-6)
    # A new image drawn from the same subspace is reconstructed exactly too (the fit is not a memorised table).
    fresh, _ = _low_rank_images(rank=5, n_images=1, seed=0)
    assert reconstruction_psnr(ae, fresh) > 100


def test_basis_is_orthonormal_and_matches_numpy_svd() -> None:
    g = torch.Generator().manual_seed(1)
    images = [torch.tanh(torch.randn(3, 32, 32, generator=g)) for _ in range(4)]
    cfg = SynthAEConfig(patch_size=4, z_channels=12)
    ae = fit_synth_ae(images, cfg)
    b = ae.basis.double().reshape(12, -1)
    assert torch.allclose(b @ b.T, torch.eye(12, dtype=torch.float64), atol=1e-6)
    # Independent reference: numpy's SVD of the centred patch matrix, patches cut with numpy reshapes.
    rows = []
    for im in images:
        a = im.double().numpy().reshape(3, 8, 4, 8, 4).transpose(1, 3, 0, 2, 4).reshape(64, 48)  # (c, row, col)
        rows.append(a)
    m = np.concatenate(rows)
    centred = m - m.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(ae.mean.double().numpy().reshape(-1), m.mean(0), atol=1e-6)
    assert np.allclose(ae.scale.double().numpy(), s[:12] / math.sqrt(len(m)), rtol=1e-5)
    assert np.allclose(np.abs((b.numpy() * vt[:12]).sum(1)), 1.0, atol=1e-5)  # same directions up to sign
    # Sign convention: the largest-magnitude entry of each row is positive.
    assert bool((b.gather(1, b.abs().argmax(1, keepdim=True)) > 0).all())


@pytest.fixture(scope="module")
def synth_keyframes(tmp_path_factory):
    """The VAE-path training keyframes (64 px, as tiny-synthstory.yaml) of a small SynthStory set, split as in
    training (one sample in ten held out)."""
    from unimage.data.segments import ImageSizes
    from unimage.data.synthstory import SynthStoryConfig, generate
    from unimage.train.synth_fit import training_keyframes

    out = tmp_path_factory.mktemp("synth_ae") / "synth"
    generate(out, SynthStoryConfig(seed=0, train_stories=16, text_stories=0, pairs=4, eval_stories=0, image_size=64))
    manifests = {"interleaved": str(out / "train" / "interleaved.jsonl"), "pair": str(out / "train" / "pairs.jsonl")}
    sizes = ImageSizes(vae_max_size=64, vae_min_size=32, vit_max_size=56, vit_min_size=28)
    return training_keyframes(manifests, sizes, get_config("tiny-synth"))


def test_round_trip_on_synthstory_keyframes_and_unit_latents(synth_keyframes) -> None:
    kf = synth_keyframes
    assert len(kf.heldout) >= 2 and all(tuple(x.shape) == (3, 64, 64) for x in kf.fit + kf.heldout)
    ae = fit_synth_ae(kf.fit, get_config("tiny-synth").synth_ae)  # per-channel scaling
    held = torch.stack(kf.heldout)
    psnr = reconstruction_psnr(ae, kf.heldout)
    # Reference: PSNR of the pooled pixels by hand in numpy (torchmetrics' convention with data_range = 2).
    rec = np.clip(ae.decode(ae.encode(held)).double().numpy(), -1, 1)
    reference = 10 * np.log10(4.0 / np.mean((rec - held.double().numpy()) ** 2))
    assert psnr == pytest.approx(reference, abs=1e-3)
    assert psnr >= 28.0
    z = ae.encode(torch.stack(kf.fit)).double()  # [B, Z, h, w]
    std, mean = z.std((0, 2, 3), unbiased=False), z.mean((0, 2, 3))
    assert torch.allclose(std, torch.ones_like(std), atol=1e-3)
    assert float(mean.abs().max()) < 1e-3
    assert ae.fit_info["num_fit_images"] == len(kf.fit) and 0.9 < ae.fit_info["variance_kept"] <= 1.0


def test_global_scaling_keeps_the_reconstruction_and_unit_mean_variance(synth_keyframes) -> None:
    """``scaling="global"`` divides every component by one number (the RMS std): the same reconstruction, channel
    variances that average 1 and keep the PCA's order."""
    cfg = get_config("tiny-synth").synth_ae
    assert cfg.scaling == "channel"
    per_channel = fit_synth_ae(synth_keyframes.fit[:48], cfg)
    one = fit_synth_ae(synth_keyframes.fit[:48], replace(cfg, scaling="global"))
    assert torch.equal(one.basis, per_channel.basis) and bool((one.scale == one.scale[0]).all())
    x = torch.stack(synth_keyframes.fit[:48])
    assert torch.allclose(one.decode(one.encode(x)), per_channel.decode(per_channel.encode(x)), atol=1e-4)
    var = one.encode(x).double().var((0, 2, 3), unbiased=False)
    assert float(var.mean()) == pytest.approx(1.0, abs=1e-3) and bool((var[:-1] >= var[1:] - 1e-6).all())
    assert one.fit_info["scaling"] == "global"
    with pytest.raises(ValueError, match="scaling='whiten'"):
        SynthAEConfig(scaling="whiten")  # type: ignore[arg-type]


def test_fit_is_deterministic_across_calls_and_thread_counts(synth_keyframes) -> None:
    cfg = get_config("tiny-synth").synth_ae
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = fit_synth_ae(synth_keyframes.fit[:48], cfg)
        b = fit_synth_ae(synth_keyframes.fit[:48], cfg)
        torch.set_num_threads(2)
        c = fit_synth_ae(synth_keyframes.fit[:48], cfg)
    finally:
        torch.set_num_threads(before)
    for other in (b, c):
        for key, t in a.tensors().items():
            assert torch.equal(t, other.tensors()[key]), key


def test_save_load_and_state_dict_round_trips(tmp_path) -> None:
    images, _ = _low_rank_images(rank=40, p=4, n_images=4, side=32, seed=2)
    ae = fit_synth_ae(images, SynthAEConfig(patch_size=4, z_channels=16, scaling="global"))  # not the default
    ae.fit_info = {**ae.fit_info, "heldout_psnr_db": 31.5}
    path = ae.save(tmp_path / SYNTH_AE_FILE)
    back = SynthAE.from_safetensors(path)
    assert back.config == ae.config and back.config.scaling == "global" and back.fit_info == ae.fit_info
    for key, t in ae.tensors().items():
        assert torch.equal(t, back.tensors()[key])
    x = torch.stack(images)
    assert torch.equal(back.encode(x), ae.encode(x))
    # The Lightning path: an unfitted module (what configure_model builds on resume / export) loads the state dict,
    # fit record included (extra state).
    empty = SynthAE(ae.config)
    assert not empty.is_fitted
    empty.load_state_dict(ae.state_dict(), strict=True)
    assert (
        empty.is_fitted
        and empty.fit_info == ae.fit_info
        and torch.equal(empty.decode(ae.encode(x)), ae.decode(ae.encode(x)))
    )


def test_bad_input_is_refused_with_clear_errors(tmp_path) -> None:
    cfg = SynthAEConfig(patch_size=4, z_channels=16)
    with pytest.raises(RuntimeError, match="not fitted"):
        SynthAE(cfg).encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="z_channels=49"):
        SynthAEConfig(patch_size=4, z_channels=49)
    with pytest.raises(ValueError, match="need at least 16"):
        fit_synth_ae([torch.zeros(3, 8, 8)], cfg)  # 4 patches
    with pytest.raises(ValueError, match="multiples of 4"):
        fit_synth_ae([torch.zeros(3, 10, 8)], cfg)
    with pytest.raises(ValueError, match="non-finite"):
        fit_synth_ae([torch.full((3, 32, 32), float("nan"))], cfg)
    images, _ = _low_rank_images(rank=20, p=4, n_images=2, side=16)
    ae = fit_synth_ae(images, cfg)
    with pytest.raises(ValueError, match="multiples of 4"):
        ae.encode(torch.zeros(1, 3, 6, 8))
    with pytest.raises(ValueError, match=r"\[B, 16, h, w\]"):
        ae.decode(torch.zeros(1, 8, 2, 2))
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"mean": torch.zeros(3, 4, 4), "basis": torch.zeros(16, 3, 4, 4)}, str(bad))
    with pytest.raises(ValueError, match=r"bad\.safetensors.*missing \['scale'\]"):
        SynthAE.from_safetensors(bad)


def test_latent_grid_gives_the_configured_token_count() -> None:
    """tiny-synth keeps latent_downsample = 16: a 64 px keyframe is 4×4 = 16 image tokens, as with the tiny FLUX VAE;
    each token carries 2·2·64 latent numbers."""
    flux, synth = get_config("tiny"), get_config("tiny-synth")
    assert (flux.latent_downsample, synth.latent_downsample) == (16, 16)
    assert (flux.patch_latent_dim, synth.patch_latent_dim) == (64, 256)
    images, _ = _low_rank_images(rank=64, p=8, n_images=2, side=64)
    ae = fit_synth_ae(images, synth.synth_ae)
    lat = ae.encode(torch.stack(images[:1]))[0]
    assert tuple(lat.shape) == (64, 8, 8)
    batch = pack([[CleanVaeImage(lat, ())]], synth)
    assert batch.vae_latents.shape == (16, 256)
    flux_batch = pack([[CleanVaeImage(torch.zeros(16, 8, 8), ())]], flux)  # 64 px through FLUX: 8x8 latents, p = 2
    assert flux_batch.vae_latents.shape[0] == 16
    with pytest.raises(ValueError, match="ae='vq'"):
        ModelConfig(ae="vq")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def synth_ckpt(tmp_path_factory):
    return write_tiny_bagel_dir(tmp_path_factory.mktemp("synth_ckpt"), size="tiny-synth", seed=0)


def test_synth_checkpoint_loads_through_the_normal_loader(synth_ckpt, tmp_path) -> None:
    assert (synth_ckpt / SYNTH_AE_FILE).is_file() and not (synth_ckpt / AE_FILE).exists()
    top = json.loads((synth_ckpt / "config.json").read_text())
    assert top["ae"] == "synth" and top["synth_ae_config"]["patch_size"] == 8
    assert top["synth_ae_config"]["fit"]["placeholder"] is True
    report = check_bagel_dir(synth_ckpt)
    assert report.config.ae == "synth" and report.ae_tensors == 3
    ckpt = load_bagel_dir(synth_ckpt)
    assert isinstance(ckpt.vae, SynthAE) and ckpt.vae.is_fitted and ckpt.vae.config.scaling == "channel"
    assert ckpt.config == get_config("tiny-synth").replace(llm=ckpt.config.llm, tokens=ckpt.config.tokens)
    # save → load → identical (weights and the fit record).
    again = load_bagel_dir(save_bagel_dir(ckpt.model, tmp_path / "again", vae=ckpt.vae, tokenizer_dir=synth_ckpt))
    assert isinstance(again.vae, SynthAE) and again.vae.fit_info == ckpt.vae.fit_info
    for key, t in ckpt.vae.tensors().items():
        assert torch.equal(t, again.vae.tensors()[key])
    # A kind mismatch is refused before anything is written.
    with pytest.raises(ValueError, match="ae='synth'"):
        save_bagel_dir(ckpt.model, tmp_path / "mixed", vae=FluxVAE(ckpt.config.vae))
    # Asking for the synth kind without its file names the file.
    (tmp_path / "nofile").mkdir()
    for f in synth_ckpt.iterdir():
        if f.name != SYNTH_AE_FILE:
            (tmp_path / "nofile" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match=SYNTH_AE_FILE):
        load_bagel_dir(tmp_path / "nofile")
    assert load_bagel_dir(tmp_path / "nofile", load_vae=False).vae is None


def test_director_renders_a_keyframe_through_the_synth_ae(synth_ckpt) -> None:
    from unimage.infer.config import SamplingConfig
    from unimage.infer.director import Director
    from unimage.script import Description, Entity, Script, Shot

    cfg = SamplingConfig(num_timesteps=2, image_height=64, image_width=64)
    director = Director.from_pretrained(synth_ckpt, config=cfg, device="cpu")
    assert isinstance(director.vae, SynthAE)
    script = Script(
        "A cat.",
        (Entity(1, Description("Mia, a small cat.")),),
        (Entity(1, Description("A garden.")),),
        (Shot(1, Description("Wide shot: <Character1> in <Environment1>."), Description("She sits.")),),
    )
    images = director.render(script)
    assert len(images) == 1 and images[0].size == (64, 64) and images[0].mode == "RGB"
    assert any(lo < hi for lo, hi in images[0].getextrema())  # a decoded image, not a constant


def test_flux_path_is_unchanged(tmp_path) -> None:
    """tiny keeps the FLUX VAE and its shapes; the training helper builds the same FluxVAE, bit for bit, under the same
    seed; a FLUX directory loads a FluxVAE and says ae=flux."""
    from unimage.train.synth_fit import training_autoencoder

    cfg = get_config("tiny")
    assert cfg.ae == "flux" and cfg.latent_channels == 16 and cfg.patch_latent_dim == 64
    torch.manual_seed(5)
    a = FluxVAE(cfg.vae)
    torch.manual_seed(5)
    b = training_autoencoder(cfg, None)
    assert isinstance(b, FluxVAE)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    d = write_tiny_bagel_dir(tmp_path / "flux", seed=0)
    assert json.loads((d / "config.json").read_text())["ae"] == "flux" and not (d / SYNTH_AE_FILE).exists()
    assert isinstance(load_bagel_dir(d).vae, FluxVAE)
