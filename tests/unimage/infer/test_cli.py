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
