"""The Director on a SynthStory-trained tiny checkpoint (``unimage fit`` with the bundled ``tiny-synthstory`` config,
shortened), loaded from the training run directory: write → continue_ → extend → render. Slow: trains first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unimage.infer.config import SamplingConfig
from unimage.script import parse, serialize

REPO = Path(__file__).resolve().parents[3]
# The training run's image sizes (tiny-synthstory.yaml: data.images) so keyframes re-enter the context as in training.
TRAINED = SamplingConfig(
    max_entry_tokens=48,
    num_timesteps=8,
    image_height=64,
    image_width=64,
    vae_max_size=64,
    vae_min_size=32,
    vit_max_size=56,
    vit_min_size=28,
)


@pytest.mark.slow
def test_director_on_a_synthstory_trained_checkpoint(tmp_path):
    from unimage.infer.director import Director

    env = dict(os.environ, OMP_NUM_THREADS="1")
    synth, run = tmp_path / "synth", tmp_path / "run"
    cli = [sys.executable, "-m", "unimage"]
    subprocess.run([*cli, "synth", "--out", str(synth), "--image-size", "64"], cwd=REPO, env=env, check=True)
    config = "unimage/train/configs/tiny-synthstory.yaml"
    fit = ["fit", "--config", config, "--run_dir", str(run), "--data.synthstory", str(synth)]
    fit += ["--model.icl_steps", "30", "--model.del_steps", "20", "--trainer.enable_progress_bar", "false"]
    subprocess.run([*cli, *fit], cwd=REPO, env=env, check=True, timeout=1200)

    assert SamplingConfig.for_training_run(run, max_entry_tokens=48, num_timesteps=8) == TRAINED
    d = Director.from_pretrained(run, config=TRAINED, device="cpu")  # finds checkpoints/export
    assert d.model.config.layout.id_prompting  # the bundled config trains with ID prompting
    g = d.write_generation("A short film about friendship.", n_shots=2)
    s = d.continue_(g.script, 1)
    s = d.extend(s, "They find a lost key.", n_shots=1)
    assert [p.code for p in parse(serialize(s)).problems if p.code != "possibly-truncated"] == []
    assert len(s.shots) == 4 and [m.kind for m in s.markers] == ["continuation", "extension"]
    images = d.render(s)
    assert len(images) == 4 and images[0].size == (64, 64)
    again = Director.from_pretrained(run, config=TRAINED, device="cpu")
    assert serialize(again.write("A short film about friendship.", n_shots=2)) == serialize(g.script)
