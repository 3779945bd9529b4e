"""FLUX autoencoder through diffusers: key table from the original ``ae.safetensors`` layout, latent convention."""

from __future__ import annotations

import pytest
import torch

from unimage.model.vae import (
    VAE_SIZES,
    FluxVAE,
    VAEConfig,
    convert_flux_to_diffusers,
    flux_to_diffusers_key_table,
    images_to_uint8,
)


def _flux_layout_shapes(ch: int, ch_mult: tuple[int, ...], nrb: int, z: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the ORIGINAL FLUX AutoEncoder, written from its structure (bagel-compat §1.6), not from
    our table: encoder levels with nin_shortcut where channels change, downsample on all but the last level,
    decoder levels numbered by resolution with nrb+1 blocks and upsample on all but level 0, 1×1-conv attention."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = (c,)
        shapes[f"{name}.bias"] = (c,)

    def resnet(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cout, cin, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def mid(prefix: str, c: int) -> None:
        resnet(f"{prefix}.mid.block_1", c, c)
        norm(f"{prefix}.mid.attn_1.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.mid.attn_1.{part}", c, c, 1)
        resnet(f"{prefix}.mid.block_2", c, c)

    n = len(ch_mult)
    conv("encoder.conv_in", ch, 3, 3)
    block_in = ch
    for i in range(n):
        out = ch * ch_mult[i]
        for j in range(nrb):
            resnet(f"encoder.down.{i}.block.{j}", block_in, out)
            block_in = out
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", 2 * z, block_in, 3)

    block_in = ch * ch_mult[-1]
    conv("decoder.conv_in", block_in, z, 3)
    mid("decoder", block_in)
    for i in reversed(range(n)):
        out = ch * ch_mult[i]
        for j in range(nrb + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, out)
            block_in = out
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", 3, block_in, 3)
    return shapes


def _random_flux_state(cfg: VAEConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = _flux_layout_shapes(cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels)
    return {k: 0.05 * torch.randn(s, generator=g) for k, s in shapes.items()}


def test_full_size_flux_key_set_converts_with_matching_shapes() -> None:
    """The released AE: 244 tensors, 83.8 M numbers; every original key lands on a diffusers tensor of its shape."""
    cfg = VAE_SIZES["bagel-7b-mot"]
    flux = _flux_layout_shapes(cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels)
    assert len(flux) == 244
    assert sum(torch.Size(s).numel() for s in flux.values()) == 83_819_683
    assert flux["encoder.conv_out.weight"] == (32, 512, 3, 3)
    assert flux["decoder.conv_in.weight"] == (512, 16, 3, 3)
    assert flux["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert sorted(k.rsplit(".", 2)[0] for k in flux if "nin_shortcut.weight" in k) == [
        "decoder.up.0.block.0",
        "decoder.up.1.block.0",
        "encoder.down.1.block.0",
        "encoder.down.2.block.0",
    ]
    with torch.device("meta"):
        vae = FluxVAE(cfg)
    ours = {k: tuple(v.shape) for k, v in vae.ae.state_dict().items()}
    table = flux_to_diffusers_key_table(cfg)
    assert set(table) == set(flux)
    assert set(table.values()) == set(ours)
    for src, dst in table.items():
        expected = (
            flux[src][:2] if ".mid.attn_1." in src and src.endswith("weight") and "norm" not in src else flux[src]
        )
        assert ours[dst] == expected, (src, dst)
    # the decoder's up-blocks are reversed: FLUX level 3 (512 ch, first to run) is diffusers up_blocks.0
    assert table["decoder.up.3.upsample.conv.weight"] == "decoder.up_blocks.0.upsamplers.0.conv.weight"
    assert table["decoder.up.0.block.2.conv2.weight"] == "decoder.up_blocks.3.resnets.2.conv2.weight"


def test_full_size_meta_load_with_assign() -> None:
    cfg = VAE_SIZES["bagel-7b-mot"]
    flux = _flux_layout_shapes(cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels)
    with torch.device("meta"):
        vae = FluxVAE(cfg)
        state = {k: torch.empty(s) for k, s in flux.items()}
    vae.load_flux_state_dict(state, assign=True)  # strict, shape-checked, no allocation
    assert sum(p.numel() for p in vae.parameters()) == 83_819_683


def test_tiny_flux_state_dict_round_trip() -> None:
    cfg = VAE_SIZES["tiny"]
    state = _random_flux_state(cfg)
    vae = FluxVAE(cfg)
    vae.load_flux_state_dict(state)
    back = vae.flux_state_dict()
    assert set(back) == set(state)
    for k, v in state.items():
        assert torch.equal(back[k], v), k


def test_key_set_errors_name_the_keys() -> None:
    cfg = VAE_SIZES["tiny"]
    state = _random_flux_state(cfg)
    state["encoder.extra.weight"] = torch.zeros(1)
    del state["decoder.up.2.upsample.conv.bias"]
    with pytest.raises(ValueError, match=r"1 missing keys \['decoder\.up\.2\.upsample\.conv\.bias'\].*encoder\.extra"):
        convert_flux_to_diffusers(state, cfg, source="my_ae.safetensors")
    good = _random_flux_state(VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1))
    with pytest.raises(ValueError, match="shape"):
        FluxVAE(VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1)).load_flux_state_dict(
            {**_random_flux_state(cfg), "encoder.conv_in.weight": good["encoder.conv_in.weight"][:, :2]}
        )


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="downsample"):
        VAEConfig(downsample=16)
    with pytest.raises(ValueError, match="norm_num_groups"):
        VAEConfig(ch=24, ch_mult=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def tiny_vae() -> FluxVAE:
    vae = FluxVAE(VAE_SIZES["tiny"]).eval()
    vae.load_flux_state_dict(_random_flux_state(VAE_SIZES["tiny"], seed=3))
    return vae


def test_encode_is_scaled_shifted_posterior_sample(tiny_vae: FluxVAE) -> None:
    cfg = tiny_vae.config
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        z1 = tiny_vae.encode(x, generator=torch.Generator().manual_seed(7))
        z2 = tiny_vae.encode(x, generator=torch.Generator().manual_seed(7))
        z3 = tiny_vae.encode(x, generator=torch.Generator().manual_seed(8))
        moments = tiny_vae.ae.encoder(x)  # [B, 2Z, h, w]: mean | logvar
    assert z1.shape == (2, 16, 4, 6)
    assert torch.equal(z1, z2) and not torch.equal(z1, z3)
    mean, logvar = moments.chunk(2, dim=1)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    expected = 0.3611 * (mean + torch.exp(0.5 * logvar) * eps - 0.1159)
    assert cfg.scale_factor == 0.3611 and cfg.shift_factor == 0.1159
    torch.testing.assert_close(z1, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        zm = tiny_vae.encode(x, sample=False)
    torch.testing.assert_close(zm, 0.3611 * (mean - 0.1159), rtol=1e-5, atol=1e-6)


def test_decode_inverts_the_normalisation(tiny_vae: FluxVAE) -> None:
    z = torch.randn(1, 16, 3, 5)
    with torch.no_grad():
        img = tiny_vae.decode(z)
        expected = tiny_vae.ae.decoder(z / 0.3611 + 0.1159)
    assert img.shape == (1, 3, 24, 40)
    torch.testing.assert_close(img, expected)
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny_vae.encode(torch.zeros(1, 3, 20, 16))


def test_images_to_uint8() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).reshape(1, 1, 1, 6).expand(1, 3, 1, 6)
    out = images_to_uint8(x)
    assert out.shape == (1, 1, 6, 3) and out.dtype == torch.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255]
