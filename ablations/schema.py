"""The sweep file as typed dataclasses: what each key means, its type and its default.

These classes are the schema `ablations.config.load_sweep` holds a sweep file against (`ablations.schema_check`),
and their defaults are the config an arm starts from (:data:`DEFAULTS`). A resolved arm config stays the plain
dict read from YAML (defaults ← base ← overrides): it is hashed per stage and written to ``<arm>/config.yaml``, so
it keeps exactly the keys the file gave (``generate.sampling: {}`` means BAGEL's defaults, not a copy of them).

``data.synthstory`` and ``generate.sampling`` take the fields of ``SynthStoryConfig`` and ``SamplingConfig`` (the
classes the stages build from them); ``train`` takes ``config`` (the training YAML) and every option of
``unimage fit`` (its LightningCLI parser, `ablations.schema_fit`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ablations.schema_check import Fields
from unimage.data.synthspec import SynthStoryConfig
from unimage.infer.config import SamplingConfig

Stage = Literal["data", "train", "generate", "evaluate"]
Split = Literal["full", "lite"]
Lang = Literal["en", "ch"]
Era = Literal["A", "B", "C"]
Backbones = Literal["toy", "official"]
Judge = Literal["toy", "openai", "none"]
Metric = Literal["csd", "cids", "occm", "prompt_align", "aesthetic", "diversity"]

#: Stage order; each stage depends on the ones before it (a changed stage invalidates everything downstream).
STAGES: tuple[str, ...] = typing.get_args(Stage)
METRICS: tuple[str, ...] = typing.get_args(Metric)


@dataclass
class DataSection:
    """``data``: the SynthStory set the data stage writes (null: no data stage; then ``evaluate.dataset``)."""

    synthstory: dict[str, Any] | None = field(default=None, metadata={"schema": SynthStoryConfig})


@dataclass
class TrainSection:
    """``train``: ``config`` names the training YAML; every other key is an ``unimage fit`` option merged onto it
    (``model``, ``data``, ``trainer``, ``checkpoint``, ``ema``, ``export``, ``seed_everything``)."""

    config: str | None = None

    @staticmethod
    def extra_keys() -> Fields:
        """The options of the ``unimage fit`` parser (built on first use: it imports Lightning)."""
        from ablations.schema_fit import fit_keys

        return fit_keys()


@dataclass
class GenerateSection:
    """``generate``: how the arm's checkpoint renders the evaluation stories.

    ``scripts``: ``auto`` renders SynthStory's own held-out scripts (training format) when the dataset is the data
    stage's; null always converts ``story.json``; a path names a folder of ``<story_id>.txt`` scripts.
    """

    method: str = "unimage"
    split: Split = "full"
    lang: Lang = "en"
    sampling: dict[str, Any] = field(default_factory=dict, metadata={"schema": SamplingConfig})
    device: str | None = None
    scripts: str | None = "auto"


@dataclass
class EvaluateSection:
    """``evaluate``: the ViStoryBench evaluator's settings (``bench.evaluate.EvalConfig``) and the SynthStory extras.

    ``oracle``: SynthStory oracle metrics when the dataset has ground truth; ``diagnostics``: teacher-forced
    diagnostics of trained arms (both written with the evaluator's per-story values to ``metrics/perstory_long.csv``);
    ``diag_structure_stories``: stories whose next shot the Director writes for the structure checks (0: none; about
    2 s per story on CPU).
    """

    dataset: str | None = None
    split: Split = "full"
    lang: Lang = "en"
    era: Era = "A"
    metrics: list[Metric] = field(default_factory=lambda: list(typing.get_args(Metric)))
    backbones: Backbones = "toy"
    weights: str | None = None
    judge: Judge = "toy"
    judge_model: str | None = None
    judge_base_url: str | None = None
    device: str | None = None
    batch_size: int = 16
    chunk_images: int = 64
    oracle: bool = True
    diagnostics: bool = True
    diag_max_stories: int | None = None
    diag_structure_stories: int = 2


@dataclass
class LaunchSection:
    """``launch``: SLURM / torchrun settings of ``--launcher slurm|torchrun`` (`ablations.launchers`)."""

    partition: str | None = None
    account: str | None = None
    time: str = "48:00:00"
    cpus_per_task: int = 8
    mem: str | int | None = None
    setup: list[str] = field(default_factory=list)
    sbatch: list[str] = field(default_factory=list)
    torchrun: list[str] = field(default_factory=list)


@dataclass
class BaseSection:
    """``base``: the config every arm starts from (an arm's ``overrides`` change single keys of it)."""

    seed: int = 0
    device: str = "cpu"
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    launch: LaunchSection = field(default_factory=LaunchSection)


@dataclass
class ExternalSection:
    """``external``: an external method's outputs (``<outputs>/<method>/<mode>/<lang>/<timestamp>/``), evaluated only.

    ``outputs`` may contain ``{data}``, the data stage's SynthStory folder.
    """

    outputs: str
    method: str
    mode: str | None = None
    timestamp: str | None = None
    lang: str | None = None


@dataclass
class ArmSection:
    """One arm: what differs from ``base`` (dotted ``overrides``), or an external method; its seeds and row label.

    ``null_of`` names a trained arm whose exact config this arm trains again with its own ``seeds`` (seed noise).
    """

    overrides: dict[str, Any] | None = None
    published_as: str | None = None
    external: ExternalSection | None = None
    stages: list[Stage] | str | None = None
    seeds: list[int] | None = None
    null_of: str | None = None


@dataclass
class SweepFile:
    """The whole sweep file (`ablations.config` module docstring)."""

    arms: dict[str, ArmSection | None]
    name: str | None = None
    runs: str | None = None
    stages: list[Stage] | str | None = None
    seeds: list[int] | None = None
    reference: str | None = None
    controls: list[str] | None = None
    base: BaseSection | None = None


#: Defaults of every section; a sweep's ``base`` is merged onto these, so a sweep file states only what it changes.
DEFAULTS: dict[str, Any] = dataclasses.asdict(BaseSection())
