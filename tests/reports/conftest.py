"""A real evaluated sweep for the report tests: two external methods (SynthStory's exact keyframes and a faded
copy) scored by the real evaluator with toy backbones, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablations.config import load_sweep
from ablations.runner import run_sweep
from tests.ablations.helpers import faded_method, make_synth, two_method_sweep_doc, write_yaml


@pytest.fixture(scope="session")
def evaluated_sweep(tmp_path_factory) -> Path:
    """``<runs>/pair/`` with arms ``gt`` (published_as StoryDiffusion) and ``faded``, both evaluated."""
    root = tmp_path_factory.mktemp("report_sweep")
    synth = make_synth(root / "synth", n_stories=3)
    outputs = faded_method(synth, root / "outputs")
    sweep = write_yaml(root / "pair.yaml", two_method_sweep_doc(synth, outputs))
    res = run_sweep(load_sweep(sweep), runs=root / "runs", progress=False, log=lambda m: None)
    assert res.ok, [a.error for a in res.arms]
    return root / "runs" / "pair"
