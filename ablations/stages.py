"""The four stages of an arm — ``data`` → ``train`` → ``generate`` → ``evaluate`` — as plain functions.

Each stage is a callable ``(StageContext) -> dict`` (the :class:`StageFn` protocol): it does its work inside the
arm's run directory, resumes whatever it finds half done (every library it calls writes atomically and resumes:
SynthStory per file, training from ``last.ckpt``, generation per story, evaluation per (story, metric)), and returns
a small JSON-able ``info`` dict that the runner stores in ``status.json`` for the stages downstream (the exported
checkpoint, the outputs timestamp). The runner takes a mapping of these callables, so a test or another system can
plug in its own.

Heavy imports (torch, Lightning, the model) happen inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from ablations.config import ArmSpec, SweepSpec, fit_config
from ablations.config import resolve_path as config_resolve_path
from ablations.status import atomic_write_json, atomic_write_text
from formats.rundir import ArmPaths

TRAIN_INPUT = "train_input.yaml"


class StageError(RuntimeError):
    """A stage could not finish (the message says which arm, which stage and why)."""


@dataclass
class StageContext:
    """What a stage function gets.

    Attributes:
        sweep: the sweep.
        arm: the arm (its ``config`` is the resolved config).
        paths: the arm's run directory.
        sweep_dir: ``<runs>/<sweep>/`` (shared data and judge cache live here).
        upstream: ``info`` of the stages already finished for this arm, by stage name.
        progress: show progress bars.
        log: where to print one-line progress messages.
    """

    sweep: SweepSpec
    arm: ArmSpec
    paths: ArmPaths
    sweep_dir: Path
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True
    log: Callable[[str], None] = print

    @property
    def config(self) -> dict[str, Any]:
        """The arm's resolved config."""
        return self.arm.config

    def device(self, section: str) -> str:
        """The device of a section (``generate`` / ``evaluate``), else the arm's ``device``."""
        return str(self.config[section].get("device") or self.config.get("device") or "cpu")


class StageFn(Protocol):
    """A stage: does its work for one arm and returns the info to record in ``status.json``."""

    def __call__(self, ctx: StageContext) -> dict[str, Any]:  # pragma: no cover - protocol
        """Run the stage."""
        ...


##### shared paths


def data_dir(ctx: StageContext) -> Path:
    """Where the arm's SynthStory set lives: shared by every arm with the same data config (keyed by its hash)."""
    from ablations.config import config_hash

    return ctx.sweep_dir / "_data" / f"synthstory-{config_hash(ctx.config['data'])}"


def dataset_path(ctx: StageContext) -> Path:
    """The ViStoryBench dataset root: ``evaluate.dataset`` if set, else the data stage's eval set."""
    ds = ctx.config["evaluate"].get("dataset")
    if ds:
        return resolve_path(ds, ctx.sweep)
    return data_dir(ctx) / "eval" / "ViStory"


def resolve_path(value: str | Path, sweep: SweepSpec) -> Path:
    """A path from a sweep file (:func:`ablations.config.resolve_path`: as is, else beside the sweep file)."""
    return config_resolve_path(value, sweep.path)


def missing_paths(sweep: SweepSpec, arm: ArmSpec, stages: list[str]) -> list[str]:
    """Input paths the arm's pending ``stages`` need that do not exist (e.g. unedited ``/path/to/...`` placeholders).

    Checked before an arm starts, so a sweep with a wrong path fails at once with the key to edit, not hours later.
    """
    cfg, problems = arm.config, []
    where = f"{sweep.path}: arms.{arm.name}"

    def check(key: str, value: Any, when: bool = True) -> None:
        if when and value and "{data}" not in str(value) and not resolve_path(str(value), sweep).exists():
            problems.append(f"{where}: {key} = {value} does not exist (edit the sweep file)")

    if "train" in stages:
        check("train.config", cfg["train"].get("config"))
        check("train.model.init_from", (cfg["train"].get("model") or {}).get("init_from"))
        for kind in ("interleaved", "text", "pairs"):
            check(f"train.data.{kind}", (cfg["train"].get("data") or {}).get(kind))
    if "generate" in stages or "evaluate" in stages:
        check("evaluate.dataset", cfg["evaluate"].get("dataset"))
    if "evaluate" in stages:
        check("evaluate.weights", cfg["evaluate"].get("weights"), cfg["evaluate"]["backbones"] == "official")
        if arm.external:
            check("external.outputs", arm.external["outputs"])
    return problems


##### data


def run_data(ctx: StageContext) -> dict[str, Any]:
    """Generate the SynthStory set (training manifests + ViStoryBench-layout eval set) the arm uses."""
    from unimage.data.synthspec import SynthStoryConfig
    from unimage.data.synthstory import generate

    raw = dict(ctx.config["data"]["synthstory"])
    for key in ("train_shots", "text_shots", "eval_shots"):
        if key in raw:
            raw[key] = tuple(raw[key])
    try:
        cfg = SynthStoryConfig(**raw)
    except TypeError as e:
        raise StageError(f"data.synthstory: {e}") from e
    out = data_dir(ctx)
    rep = generate(out, cfg)
    return {"dir": str(out), "stories": rep.stories, "files_written": rep.files_written}


##### train


def train_config(ctx: StageContext) -> dict[str, Any]:
    """The training YAML the arm runs: the file named by ``train.config`` with the sweep's ``train`` keys merged in
    and ``run_dir`` = ``<arm>/checkpoints/`` (:func:`ablations.config.fit_config`, the function ``load_sweep`` checks
    every trained arm's config with)."""
    path = resolve_path(str(ctx.config["train"]["config"]), ctx.sweep)
    if not path.is_file():
        raise StageError(f"{ctx.sweep.path}: arms.{ctx.arm.name}: train.config {path} not found")
    base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(base, dict):
        raise StageError(f"{path}: expected a mapping")
    synth = str(data_dir(ctx)) if ctx.config["data"].get("synthstory") is not None else None
    return fit_config(ctx.config["train"], base, ctx.config["seed"], str(ctx.paths.checkpoints), synth)


def write_train_input(ctx: StageContext) -> Path:
    """Write ``<arm>/checkpoints/train_input.yaml`` (what ``unimage fit --config`` gets) and return its path."""
    path = ctx.paths.checkpoints / TRAIN_INPUT
    atomic_write_text(path, yaml.safe_dump(train_config(ctx), sort_keys=False))
    return path


def run_train(ctx: StageContext) -> dict[str, Any]:
    """Train the arm (resuming from ``checkpoints/last.ckpt``) and export the BAGEL-layout checkpoint.

    Calls ``unimage.train.api.fit`` in this process: the same LightningCLI as ``unimage fit``, so the merged
    ``checkpoints/train_input.yaml`` can also be run by hand (``unimage fit --config <it>``).
    """
    from unimage.train.api import fit

    cfg_path = write_train_input(ctx)
    export = Path(fit(cfg_path, run_dir=ctx.paths.checkpoints))
    if not (export / "llm_config.json").is_file():
        raise StageError(f"arm {ctx.arm.name}: training ended without an exported checkpoint in {export}")
    return {"export": str(export), "train_config": str(cfg_path), "log": str(ctx.paths.train_log)}


##### generate


def run_generate(ctx: StageContext) -> dict[str, Any]:
    """Render every story of the split with the arm's exported checkpoint into ``<arm>/outputs/``."""
    from unimage.infer.config import SamplingConfig
    from unimage.infer.vistory import generate_vistory

    gen = ctx.config["generate"]
    export = ctx.upstream.get("train", {}).get("export") or str(ctx.paths.export)
    try:
        sampling = SamplingConfig.from_dict({"seed": ctx.config["seed"], **gen.get("sampling", {})})
    except (TypeError, ValueError) as e:
        raise StageError(f"generate.sampling: {e}") from e
    scripts = gen.get("scripts", "auto")
    if scripts == "auto":  # SynthStory's held-out scripts, in the training format, when the dataset is its own
        own = ctx.config["evaluate"].get("dataset") is None and ctx.config["data"].get("synthstory") is not None
        scripts = str(data_dir(ctx) / "eval" / "scripts") if own else None
    rep = generate_vistory(
        dataset_path(ctx),
        export,
        method=gen["method"],
        mode=ctx.arm.name,
        split=gen["split"],
        lang=gen["lang"],
        outputs=ctx.paths.outputs,
        config=sampling,
        progress=ctx.progress,
        device=ctx.device("generate"),
        scripts=scripts,
    )
    if rep.failed:
        first = next(iter(rep.failed.items()))
        raise StageError(f"arm {ctx.arm.name}: {len(rep.failed)} stories failed to generate, e.g. {first}")
    return {"run_dir": str(rep.run_dir), "timestamp": rep.timestamp, "keyframes": rep.keyframes}


##### evaluate


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """Score the arm's outputs (or the external method's) into ``<arm>/metrics/`` and label the results row."""
    from bench.backbones import load_backbones
    from bench.evaluate import EvalConfig, evaluate

    ev = ctx.config["evaluate"]
    ext = ctx.arm.external
    if ext is not None:
        # "{data}" names the data stage's SynthStory folder (its eval/outputs/ holds the exact keyframes).
        outputs = resolve_path(str(ext["outputs"]).replace("{data}", str(data_dir(ctx))), ctx.sweep)
        method, mode, timestamp = ext["method"], ext.get("mode"), ext.get("timestamp")
        lang = ext.get("lang") or ev["lang"]
    else:
        gen = ctx.config["generate"]
        outputs, method, mode, lang = ctx.paths.outputs, gen["method"], ctx.arm.name, gen["lang"]
        timestamp = ctx.upstream.get("generate", {}).get("timestamp")
    cfg = EvalConfig(
        dataset=dataset_path(ctx),
        outputs=outputs,
        method=method,
        mode=mode,
        lang=lang,
        split=ev["split"],
        era=ev["era"],
        metrics=tuple(ev["metrics"]),
        timestamp=timestamp,
        out=ctx.paths.metrics,
        batch_size=int(ev["batch_size"]),
        chunk_images=int(ev["chunk_images"]),
        progress=ctx.progress,
    )
    backbones = load_backbones(
        ev["backbones"], weights_dir=ev.get("weights"), device=ctx.device("evaluate"), era=ev["era"]
    )
    judge = make_judge(ctx) if "prompt_align" in cfg.metrics else None
    report = evaluate(cfg, backbones, judge)
    if report.failed:
        sid, metric, err = report.failed[0]
        raise StageError(
            f"arm {ctx.arm.name}: {len(report.failed)} (story, metric) units failed, e.g. {sid}/{metric}: {err}"
        )
    row_path = ctx.paths.metrics / "results_row.json"
    row = json.loads(row_path.read_text(encoding="utf-8"))
    arm_index = list(ctx.sweep.arms).index(ctx.arm.name)  # reports list arms in the sweep's order
    row.update(sweep=ctx.sweep.name, arm=ctx.arm.name, arm_index=arm_index, published_as=ctx.arm.published_as)
    row.update(group=ctx.arm.group or ctx.arm.name, seed=ctx.arm.seed, role=ctx.arm.role)
    atomic_write_json(row_path, row)
    long_path = write_perstory(ctx, _output_run(outputs, method, mode, lang, timestamp))
    return {
        "out": str(ctx.paths.metrics),
        "computed_units": len(report.computed),
        "reused_units": len(report.reused),
        "n_stories": row.get("n_stories"),
        "perstory": str(long_path),
    }


def _output_run(outputs: Path, method: str, mode: str | None, lang: str, timestamp: str | None) -> Path | None:
    """The output run folder ``<outputs>/<method>/<mode>/<lang>/<timestamp>/`` (newest when not named)."""
    modes = [outputs / method / mode] if mode else sorted((outputs / method).glob("*"))
    runs = [r for m in modes for r in sorted((m / lang).glob(timestamp or "*")) if r.is_dir()]
    return runs[-1] if runs else None


def write_perstory(ctx: StageContext, run_dir: Path | None) -> Path:
    """``<arm>/metrics/perstory_long.csv``: the evaluator's per-story values, SynthStory oracle metrics (when the
    dataset has ground truth) and the teacher-forced diagnostics of a trained arm (`ablations.longform`)."""
    from ablations.longform import bench_rows, oracle_rows, story_dirs, write_long_csv

    ev = ctx.config["evaluate"]
    rows = bench_rows(ctx.paths.metrics, ev["backbones"])
    gt_dir = dataset_path(ctx).parent / "ground_truth"
    if ev.get("oracle", True) and gt_dir.is_dir() and run_dir is not None:
        rows += oracle_rows(gt_dir, story_dirs(run_dir))
    if ev.get("diagnostics", True) and ctx.arm.external is None and ctx.config["data"].get("synthstory") is not None:
        rows += diagnostic_rows(ctx)
    return write_long_csv(ctx.paths.metrics / "perstory_long.csv", rows)


def diagnostic_rows(ctx: StageContext) -> list[Any]:
    """Teacher-forced diagnostics of the arm's exported checkpoint on the SynthStory held-out set (family ``diag``)."""
    from ablations.longform import LongRow
    from unimage.eval.diagnostics import diagnose

    export = ctx.upstream.get("train", {}).get("export") or str(ctx.paths.export)
    ev = ctx.config["evaluate"]
    found = diagnose(
        export,
        data_dir(ctx),
        device=ctx.device("evaluate"),
        max_stories=ev.get("diag_max_stories"),
        seed=0,  # the same held-out cuts and noise for every arm and seed: differences are the models'
        structure_stories=int(ev.get("diag_structure_stories", 2)),
        structure=("continue",) if int(ev.get("diag_structure_stories", 2)) > 0 else (),
    )
    return [LongRow(r.story, r.metric, "diag", bool(r.higher_is_better), r.value) for r in found]


def make_judge(ctx: StageContext) -> Any:
    """The Prompt Alignment judge named by ``evaluate.judge`` (answers cached per sweep, so no question is paid twice)."""
    return judge_for(ctx.config["evaluate"], ctx.sweep_dir)


def judge_for(ev: dict[str, Any], sweep_dir: Path) -> Any:
    """The judge named by an ``evaluate`` section, caching its answers under ``<sweep_dir>/_judge_cache``."""
    if ev["judge"] == "toy":
        from bench.judge.toy import ToyJudge

        return ToyJudge()
    from bench.judge import make_judge as make

    return make(
        "openai",
        model=ev.get("judge_model"),
        base_url=ev.get("judge_base_url"),
        era=ev["era"],
        cache_dir=sweep_dir / "_judge_cache",
    )


#: The default stage functions, in pipeline order.
DEFAULT_STAGES: dict[str, StageFn] = {
    "data": run_data,
    "train": run_train,
    "generate": run_generate,
    "evaluate": run_evaluate,
}
