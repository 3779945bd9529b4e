"""BAGEL-layout checkpoint I/O: the reference key table, meta-device loading, round trips and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from unimage.model.checkpoint import (
    bagel_checkpoint_shapes,
    build_model_on_meta,
    check_bagel_dir,
    infer_vae_config,
    load_bagel_dir,
    resolve_bagel_dir,
    save_bagel_dir,
    write_tiny_bagel_dir,
)
from unimage.model.config import get_config
from unimage.model.vae import VAE_SIZES, FluxVAE


def test_bagel_7b_mot_on_meta_matches_reference_key_set() -> None:
    cfg = get_config("bagel-7b-mot")
    table = bagel_checkpoint_shapes(cfg)
    assert len(table) == 1223
    assert sum(torch.Size(s).numel() for s in table.values()) == 14_607_260_128
    model = build_model_on_meta(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == table
    # literal shapes from bagel-compat §1.4 (not from the formulas)
    literal = {
        "language_model.model.embed_tokens.weight": (152064, 3584),
        "language_model.model.layers.27.self_attn.q_proj_moe_gen.weight": (3584, 3584),
        "language_model.model.layers.0.self_attn.k_proj_moe_gen.weight": (512, 3584),
        "language_model.model.layers.0.self_attn.k_proj.bias": (512,),
        "language_model.model.layers.3.self_attn.q_norm_moe_gen.weight": (128,),
        "language_model.model.layers.0.mlp_moe_gen.down_proj.weight": (3584, 18944),
        "language_model.lm_head.weight": (152064, 3584),
        "time_embedder.mlp.0.weight": (3584, 256),
        "vae2llm.weight": (3584, 64),
        "llm2vae.weight": (64, 3584),
        "latent_pos_embed.pos_embed": (4096, 3584),
        "vit_model.vision_model.embeddings.patch_embedding.weight": (1152, 588),
        "vit_model.vision_model.embeddings.position_embedding.weight": (4900, 1152),
        "vit_model.vision_model.encoder.layers.25.mlp.fc1.weight": (4304, 1152),
        "connector.fc1.weight": (3584, 1152),
        "vit_pos_embed.pos_embed": (4900, 3584),
    }
    for key, shape in literal.items():
        assert ours[key] == shape, key
    assert "language_model.model.layers.0.self_attn.o_proj.bias" not in ours
    assert "vit_model.vision_model.encoder.layers.26.mlp.fc1.weight" not in ours
    assert not any("rotary" in k or "inv_freq" in k for k in ours)
    assert all(p.is_meta for p in model.parameters())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bagel_dir(tmp_path_factory.mktemp("bagel") / "tiny", seed=0)


def test_tiny_dir_layout(tiny_dir) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"llm_config.json", "vit_config.json", "ema.safetensors", "ae.safetensors", "tokenizer.json"} <= names
    vit = json.loads((tiny_dir / "vit_config.json").read_text())
    ema = load_file(str(tiny_dir / "ema.safetensors"))
    stored_layers = {int(k.split(".")[4]) for k in ema if ".encoder.layers." in k}
    assert vit["num_hidden_layers"] == len(stored_layers) + 1
    assert ema["llm2vae.weight"].abs().sum() > 0  # randomised, not BAGEL's zero init
    llm = json.loads((tiny_dir / "llm_config.json").read_text())
    assert (
        llm["model_type"] == "qwen2" and ema["language_model.model.embed_tokens.weight"].shape[0] == llm["vocab_size"]
    )


def test_save_load_round_trip_bit_identical(tiny_dir, tmp_path) -> None:
    ck = load_bagel_dir(tiny_dir, load_tokenizer=True)
    assert ck.tokenizer is not None and ck.tokenizer.im_start_id == ck.config.tokens.im_start
    assert not ck.model.training and not ck.model.latent_pos_embed.pos_embed.requires_grad
    assert ck.model.llm2vae.weight.requires_grad
    out = save_bagel_dir(ck.model, tmp_path / "copy", vae=ck.vae, tokenizer_dir=tiny_dir)
    for name in ("ema.safetensors", "ae.safetensors"):
        a, b = load_file(str(tiny_dir / name)), load_file(str(out / name))
        assert set(a) == set(b), name
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (name, k)
    for name in ("llm_config.json", "vit_config.json", "tokenizer.json"):
        assert json.loads((tiny_dir / name).read_text()) == json.loads((out / name).read_text()), name
    again = load_bagel_dir(out)
    assert again.config == ck.config
    # deterministic in the seed, different across seeds
    same = load_file(str(write_tiny_bagel_dir(tmp_path / "same", seed=0) / "ema.safetensors"))
    other = load_file(str(write_tiny_bagel_dir(tmp_path / "other", seed=1) / "ema.safetensors"))
    first = load_file(str(tiny_dir / "ema.safetensors"))
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert not torch.equal(first["connector.fc1.weight"], other["connector.fc1.weight"])


def test_loaded_model_matches_the_file(tiny_dir) -> None:
    ck = load_bagel_dir(tiny_dir)
    ema = load_file(str(tiny_dir / "ema.safetensors"))
    state = ck.model.state_dict()
    assert set(state) == set(ema)
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert ck.model.language_model.model.inv_freq.device.type == "cpu"
    assert ck.vae is not None
    ae = load_file(str(tiny_dir / "ae.safetensors"))
    flux = ck.vae.flux_state_dict()
    assert all(torch.equal(flux[k], ae[k]) for k in ae)
    assert ck.config.max_latent_size == get_config("tiny").max_latent_size


def test_bf16_load(tiny_dir) -> None:
    ck = load_bagel_dir(tiny_dir, dtype=torch.bfloat16, load_vae=False)
    assert ck.vae is None
    assert {p.dtype for p in ck.model.parameters()} == {torch.bfloat16}


def test_missing_pos_tables_are_recomputed(tiny_dir, tmp_path) -> None:
    d = tmp_path / "nopos"
    shutil.copytree(tiny_dir, d)
    ema = load_file(str(d / "ema.safetensors"))
    tables = {k: ema.pop(k) for k in ("latent_pos_embed.pos_embed", "vit_pos_embed.pos_embed")}
    save_file(ema, str(d / "ema.safetensors"))
    ck = load_bagel_dir(d, load_vae=False)
    torch.testing.assert_close(
        ck.model.latent_pos_embed.pos_embed, tables["latent_pos_embed.pos_embed"], rtol=0, atol=0
    )
    torch.testing.assert_close(ck.model.vit_pos_embed.pos_embed, tables["vit_pos_embed.pos_embed"], rtol=0, atol=0)


def test_key_and_shape_errors_are_precise(tiny_dir, tmp_path) -> None:
    d = tmp_path / "bad"
    shutil.copytree(tiny_dir, d)
    good = load_file(str(d / "ema.safetensors"))
    broken = dict(good)
    del broken["connector.fc2.bias"]
    broken["extra.weight"] = torch.zeros(2)
    save_file(broken, str(d / "ema.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing key\(s\) \['connector\.fc2\.bias'\].*extra\.weight"):
        load_bagel_dir(d, load_vae=False)
    shaped = dict(good)
    shaped["vae2llm.bias"] = torch.zeros(3)
    save_file(shaped, str(d / "ema.safetensors"))
    with pytest.raises(ValueError, match=r"vae2llm\.bias: \(3,\) != expected"):
        load_bagel_dir(d, load_vae=False)
    # a vit_config.json that counts the stored layers (instead of one more) is caught and explained
    save_file(good, str(d / "ema.safetensors"))
    vit = json.loads((d / "vit_config.json").read_text())
    vit["num_hidden_layers"] -= 1
    (d / "vit_config.json").write_text(json.dumps(vit))
    with pytest.raises(ValueError, match="one layer MORE"):
        load_bagel_dir(d, load_vae=False)
    with pytest.raises(FileNotFoundError):
        load_bagel_dir(tmp_path / "nowhere")
    (d / "ema.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(ValueError, match=r"ema\.safetensors: not a readable safetensors file"):
        load_bagel_dir(d, load_vae=False)


def test_pickle_needs_opt_in(tiny_dir, tmp_path) -> None:
    d = tmp_path / "pickled"
    shutil.copytree(tiny_dir, d)
    ema = load_file(str(d / "ema.safetensors"))
    torch.save(ema, d / "ema.pt")
    (d / "ema.safetensors").unlink()
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_bagel_dir(d, load_vae=False)
    ck = load_bagel_dir(d, load_vae=False, allow_pickle=True)
    assert torch.equal(ck.model.connector.fc1.weight, ema["connector.fc1.weight"])


def test_vae_config_inferred_from_flux_header() -> None:
    cfg = VAE_SIZES["bagel-7b-mot"]
    with torch.device("meta"):
        vae = FluxVAE(cfg)
    shapes = {k: tuple(v.shape) for k, v in vae.flux_state_dict().items()}
    assert infer_vae_config(shapes, VAE_SIZES["tiny"]) == cfg
    with pytest.raises(ValueError, match="not a FLUX autoencoder"):
        infer_vae_config({"foo": (1,)})


def test_check_bagel_dir_reads_headers_only(tiny_dir) -> None:
    report = check_bagel_dir(tiny_dir)
    ema = load_file(str(tiny_dir / "ema.safetensors"))
    assert report.num_tensors == len(ema) == len(bagel_checkpoint_shapes(report.config))
    assert report.num_numbers == sum(v.numel() for v in ema.values())
    assert report.dtypes == ("float32",) and report.missing_pos_tables == ()
    assert report.ae_tensors == len(load_file(str(tiny_dir / "ae.safetensors")))


def test_repo_id_resolves_through_the_hf_cache(tiny_dir, tmp_path) -> None:
    """A repo id is looked up in the Hugging Face cache layout (models--owner--name/snapshots/<rev>), offline."""
    cache = tmp_path / "hf"
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--someone--tiny-bagel" / "snapshots" / rev
    shutil.copytree(tiny_dir, snap)
    (cache / "models--someone--tiny-bagel" / "refs").mkdir()
    (cache / "models--someone--tiny-bagel" / "refs" / "main").write_text(rev)
    assert resolve_bagel_dir("someone/tiny-bagel", cache_dir=cache) == snap
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        resolve_bagel_dir("someone/other-model", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="directory not found"):
        resolve_bagel_dir(tmp_path / "missing" / "dir")


def test_cli_check_and_write_tiny(tmp_path, capsys) -> None:
    from unimage.cli import main

    target = tmp_path / "cli_tiny"
    assert main(["checkpoint", "write-tiny", str(target), "--seed", "3"]) == 0
    assert main(["checkpoint", "check", str(target), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") :])
    assert report["tensors"] == len(load_file(str(target / "ema.safetensors")))
    (target / "vit_config.json").write_text("{}")
    assert main(["checkpoint", "check", str(target)]) == 1
    assert "num_hidden_layers" in capsys.readouterr().err


_LOAD_AND_MEASURE = """
import json, resource, sys
import diffusers, transformers.models.siglip.modeling_siglip  # imports first: they are not part of the load
import unimage.model.checkpoint as ck, unimage.model.unimage
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loaded = ck.load_bagel_dir(sys.argv[1], load_vae=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_increase_bytes": (after - before) * 1024,
                  "params": sum(p.numel() for p in loaded.model.parameters())}))
"""


@pytest.mark.slow
def test_load_never_holds_two_copies(tmp_path) -> None:
    """Peak RSS while loading a ~100 MB checkpoint stays below 1.5× its size (a state dict + a model would be 2×)."""
    import dataclasses
    import subprocess
    import sys

    from unimage.model.unimage import UniMAGE

    base = get_config("tiny")
    llm = dataclasses.replace(
        base.llm, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6, vocab_size=16384
    )
    model = UniMAGE(dataclasses.replace(base, llm=llm))
    save_bagel_dir(model, tmp_path / "medium")
    size = (tmp_path / "medium" / "ema.safetensors").stat().st_size
    del model
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_MEASURE, str(tmp_path / "medium")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["params"] * 4 == pytest.approx(size, rel=0.01)
    print(f"\nload of {size / 2**20:.0f} MiB: peak RSS +{report['peak_increase_bytes'] / 2**20:.0f} MiB")
    assert report["peak_increase_bytes"] < 1.5 * size


def test_tokens_override_rescues_config_without_special_tokens(tiny_dir, tmp_path) -> None:
    """A small-vocab config.json without ``special_tokens``: the Qwen default ids (151644...) are out of range, so
    only an override applied before validation can load it (issue 13, defect 5)."""
    from unimage.model.config import SpecialTokens

    d = tmp_path / "no_tokens"
    shutil.copytree(tiny_dir, d)
    top = json.loads((d / "config.json").read_text())
    written = SpecialTokens(**top.pop("special_tokens"))
    (d / "config.json").write_text(json.dumps(top))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        load_bagel_dir(d, load_vae=False)
    ckpt = load_bagel_dir(d, load_vae=False, tokens=written)
    assert ckpt.config.tokens == written
    assert ckpt.config.llm.vocab_size < 151644
    with pytest.raises(ValueError, match=r"config\.json"):  # a bad override still names the file
        load_bagel_dir(d, load_vae=False, tokens=SpecialTokens())
