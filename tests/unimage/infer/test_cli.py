"""The Director's commands, in process through the top-level dispatcher: write → continue → extend → render, and
the exit codes of bad input."""

from __future__ import annotations

import json

from unimage.cli import main
from unimage.script import parse

FLAGS = ["--device", "cpu", "--max-entry-tokens", "8"]


def test_write_continue_extend_render(tiny_ckpt, tmp_path, capsys):
    ck = ["--ckpt", str(tiny_ckpt)]
    s1, s2, s3 = tmp_path / "s1.txt", tmp_path / "s2.json", tmp_path / "s3.txt"
    assert main(["write", "A fox meets a crow.", *ck, "-o", str(s1), "--shots", "2", "--seed", "1", *FLAGS]) == 0
    assert main(["continue", str(s1), *ck, "-o", str(s2), "--shots", "1", "--times", "2", *FLAGS]) == 0
    assert main(["extend", str(s2), "It rains.", *ck, "-o", str(s3), "--shots", "1", *FLAGS]) == 0
    script = parse(s3.read_text()).script
    assert len(script.shots) == 5 and [m.kind for m in script.markers] == ["continuation", "continuation", "extension"]
    assert len(json.loads(s2.read_text())["shots"]) == 4
    out = tmp_path / "frames"
    render = [
        "render",
        str(s3),
        *ck,
        "-o",
        str(out),
        "--steps",
        "2",
        "--height",
        "32",
        "--width",
        "48",
        "--no-progress",
    ]
    assert main([*render, "--device", "cpu"]) == 0
    expected = ["script.json", "script.txt", *(f"shot_{i:02d}.png" for i in range(1, 6))]
    assert sorted(p.name for p in out.iterdir()) == expected
    from PIL import Image

    with Image.open(out / "shot_01.png") as im:
        assert im.size == (48, 32)
    assert parse((out / "script.txt").read_text()).script == script


def test_sampling_flags(tmp_path):
    import argparse

    from unimage.infer.cli import configure_vistory, sampling_config

    parser = argparse.ArgumentParser()
    configure_vistory(parser)
    base = ["--dataset", "d", "--ckpt", "c", "--method", "m", "--mode", "a"]
    cfg = sampling_config(parser.parse_args([*base, "--steps", "7", "--cfg-interval", "0.1", "0.9", "--seed", "4"]))
    assert (cfg.num_timesteps, cfg.cfg_interval, cfg.seed, cfg.cfg_text_scale) == (7, (0.1, 0.9), 4, 3.0)
    assert cfg.batch_cfg is True
    assert sampling_config(parser.parse_args([*base, "--no-batch-cfg"])).batch_cfg is False
    (tmp_path / "config.yaml").write_text(
        "data:\n  images:\n    vae_max_size: 64\n    vae_min_size: 32\n    vit_max_size: 56\n    vit_min_size: 28\n"
    )
    cfg = sampling_config(parser.parse_args([*base, "--sizes-from-run", str(tmp_path), "--vit-min-size", "14"]))
    assert (cfg.image_height, cfg.vae_max_size, cfg.vit_max_size, cfg.vit_min_size) == (64, 64, 56, 14)


def test_bad_input_exit_codes(tiny_ckpt, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("<User>: x\n<Frame1>: a <Character3>.\n<Video1>: b.\n")
    assert main(["continue", str(bad), "--ckpt", str(tiny_ckpt), "-o", str(tmp_path / "o.txt")]) == 2
    assert "undefined-mention" in capsys.readouterr().err
    assert main(["write", "p", "--ckpt", str(tmp_path / "missing"), "-o", str(tmp_path / "o.txt")]) == 2
    assert not (tmp_path / "o.txt").exists()


def _help(capsys, monkeypatch, argv):
    """``unimage ARGV --help`` on one line per option (no wrapping), whitespace collapsed."""
    import pytest

    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_is_sampling_config_docstring(capsys, monkeypatch):
    """Every SamplingConfig field is an option of write or render, its help the field's docstring line + default."""
    from dataclasses import fields

    from cliargs import field_docs
    from unimage.infer.config import SamplingConfig

    docs, defaults = field_docs(SamplingConfig), SamplingConfig()
    text = _help(capsys, monkeypatch, ["write"]) + " " + _help(capsys, monkeypatch, ["render"])
    for f in fields(SamplingConfig):
        assert docs[f.name] in text, f.name
    assert f"--top-p FLOAT {docs['top_p']} (default: {defaults.top_p})" in text
    assert f"--num-timesteps INT, --steps INT {docs['num_timesteps']} (default: 50)" in text
    # The default shown is the dataclass's: change it there and --help changes.
    monkeypatch.setattr(SamplingConfig.__dataclass_fields__["num_timesteps"], "default", 60)
    assert f"{docs['num_timesteps']} (default: 60)" in _help(capsys, monkeypatch, ["render"])


# The spellings the commands had before their options were generated, with the value each must set.
OLD_TEXT_FLAGS = [
    (["--sample"], "do_sample", True),
    (["--no-cache"], "use_cache", False),
    (["--temperature", "0.5"], "temperature", 0.5),
    (["--top-p", "0.9"], "top_p", 0.9),
    (["--max-new-tokens", "9"], "max_new_tokens", 9),
    (["--max-entry-tokens", "8"], "max_entry_tokens", 8),
    (["--max-shots", "3"], "max_shots", 3),
    (["--seed", "4"], "seed", 4),
]
OLD_IMAGE_FLAGS = [
    (["--steps", "7"], "num_timesteps", 7),
    (["--shift", "2.5"], "timestep_shift", 2.5),
    (["--cfg-text-scale", "4"], "cfg_text_scale", 4.0),
    (["--cfg-img-scale", "1.2"], "cfg_img_scale", 1.2),
    (["--cfg-interval", "0.1", "0.9"], "cfg_interval", (0.1, 0.9)),
    (["--cfg-renorm-type", "channel"], "cfg_renorm_type", "channel"),
    (["--cfg-renorm-min", "0.5"], "cfg_renorm_min", 0.5),
    (["--no-batch-cfg"], "batch_cfg", False),
    (["--height", "32"], "image_height", 32),
    (["--width", "48"], "image_width", 48),
    (["--vae-max-size", "64"], "vae_max_size", 64),
    (["--vae-min-size", "32"], "vae_min_size", 32),
    (["--vit-max-size", "56"], "vit_max_size", 56),
    (["--vit-min-size", "28"], "vit_min_size", 28),
    (["--seed", "5"], "seed", 5),
]


def test_old_flag_spellings_still_set_the_same_fields():
    import argparse

    from unimage.infer.cli import configure_render, configure_write, sampling_config
    from unimage.infer.config import SamplingConfig

    for configure, base, table in (
        (configure_write, ["p", "-o", "o.txt", "--ckpt", "c"], OLD_TEXT_FLAGS),
        (configure_render, ["s.txt", "-o", "out", "--ckpt", "c"], OLD_IMAGE_FLAGS),
    ):
        parser = argparse.ArgumentParser()
        configure(parser)
        assert sampling_config(parser.parse_args(base)) == SamplingConfig()  # nothing given: BAGEL's defaults
        for flags, name, value in table:
            assert getattr(sampling_config(parser.parse_args([*base, *flags])), name) == value, flags


def test_generate_vistory_options_are_its_parameters(capsys, monkeypatch):
    """generate-vistory's layout options are generate_vistory's parameters: help from its Args, its defaults."""
    import argparse
    import inspect
    from pathlib import Path

    from cliargs import field_docs, given_values
    from unimage.infer.cli import configure_vistory
    from unimage.infer.vistory import generate_vistory

    text = _help(capsys, monkeypatch, ["generate-vistory"])
    docs, defaults = field_docs(generate_vistory), inspect.signature(generate_vistory).parameters
    assert f"--split {{full,lite}} {docs['split']} (default: {defaults['split'].default})" in text
    assert f"--batch-stories N {docs['batch_stories']}" in text and docs["scripts"] in text
    parser = argparse.ArgumentParser()
    configure_vistory(parser)
    base = ["--dataset", "d", "--ckpt", "c", "--method", "m", "--mode", "a"]
    assert given_values(parser.parse_args(base), generate_vistory) == {"dataset": Path("d"), "method": "m", "mode": "a"}
    args = parser.parse_args([*base, "--stories", "01", "02", "--batch-stories", "2", "--lang", "ch", "--outputs", "o"])
    assert given_values(args, generate_vistory) == {
        "dataset": Path("d"),
        "method": "m",
        "mode": "a",
        "lang": "ch",
        "outputs": Path("o"),
        "stories": ["01", "02"],
        "batch_stories": 2,
    }
