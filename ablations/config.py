"""Sweep definitions: a base config, named arms as dotted-override sets, stages, evaluation settings, read from YAML.

A sweep file (``ablations/sweeps/<name>.yaml``) looks like::

    name: smoke                      # the folder under the runs root: <runs>/<name>/<arm>/
    runs: runs                       # default runs root (``unimage sweep --runs`` overrides)
    stages: [data, train, generate, evaluate]
    base:                            # the config every arm starts from (sections below)
      seed: 0
      data: {synthstory: {seed: 0, eval_stories: 3, ...}}
      train: {config: unimage/train/configs/tiny-synthstory.yaml, model: {icl_steps: 20}, trainer: {...}}
      generate: {method: unimage, split: full, lang: en, sampling: {num_timesteps: 4}}
      evaluate: {dataset: null, split: full, era: A, backbones: toy, judge: toy, metrics: [...]}
    arms:
      full: {published_as: UniMAGE}
      no_id_prompting:
        published_as: UniMAGE w/o ID-P
        overrides: {train.model.id_prompting: false}
      storydiffusion:                # an external method: its outputs join the evaluation, no training
        published_as: StoryDiffusion
        external: {outputs: /path/to/outputs, method: StoryDiffusion}

Seeds (``seeds: [0, 1, 2]`` at the top, or per arm): every trained arm runs once per training seed, each in its own
run folder ``<runs>/<name>/<arm>.seed<k>/`` with ``seed: k``, because a difference between two arms means nothing
until it is compared with what another seed of the *same* arm gives. A **null arm** (``null_of: full``) is the
named arm's exact config trained with other seeds (its own ``seeds``): its "effect" against the reference is seed
noise by construction, which is what the effects report shows as the noise band. ``reference:`` (default: the first
trained arm that is not a null arm) names the arm every other arm's effects are measured against. Each run folder
gets ``arm.json`` (arm, seed, role, reference) for the reports.

Why dotted overrides and not full copies (style principle 14): an arm states only what differs, so a reader sees the
ablation at a glance and a change to the base reaches every arm. The resolved config of an arm (base + overrides)
is what the runner writes to ``<arm>/config.yaml`` and what the stage hashes are computed from.

Everything here is plain data (no torch, no I/O besides reading the YAML); errors name the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Stage order; each stage depends on the ones before it (a changed stage invalidates everything downstream).
STAGES: tuple[str, ...] = ("data", "train", "generate", "evaluate")
#: Stages an external-method arm can have (its images exist already).
EXTERNAL_STAGES: tuple[str, ...] = ("data", "evaluate")
#: Sections of an arm config that feed each stage's hash (besides the upstream stages' hashes).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "train": ("train", "seed"),
    "generate": ("generate", "seed", "device"),
    "evaluate": ("evaluate", "external", "published_as", "device"),
}
ERAS = ("A", "B", "C")
SPLITS = ("full", "lite")
BACKBONES = ("toy", "official")
JUDGES = ("toy", "openai", "none")
METRICS = ("csd", "cids", "occm", "prompt_align", "aesthetic", "diversity")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Defaults of every section; a sweep's ``base`` is merged onto these, so a sweep file states only what it changes.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "data": {"synthstory": None},
    "train": {"config": None},
    # generate.scripts: "auto" renders SynthStory's own held-out scripts (training format) when the dataset is the data
    # stage's; null always converts story.json; a path names a folder of <story_id>.txt scripts.
    "generate": {"method": "unimage", "split": "full", "lang": "en", "sampling": {}, "device": None, "scripts": "auto"},
    "evaluate": {
        "dataset": None,
        "split": "full",
        "lang": "en",
        "era": "A",
        "metrics": list(METRICS),
        "backbones": "toy",
        "weights": None,
        "judge": "toy",
        "judge_model": None,
        "judge_base_url": None,
        "device": None,
        "batch_size": 16,
        "chunk_images": 64,
        # SynthStory oracle metrics (when the dataset has ground truth) and teacher-forced diagnostics of trained
        # arms, written with the evaluator's per-story values to metrics/perstory_long.csv.
        "oracle": True,
        "diagnostics": True,
        "diag_max_stories": None,
        # stories whose next shot the Director writes for the structure checks (0: none; ~2 s per story on CPU)
        "diag_structure_stories": 2,
    },
    "launch": {
        "partition": None,
        "account": None,
        "time": "48:00:00",
        "cpus_per_task": 8,
        "mem": None,
        "setup": [],
        "sbatch": [],
        "torchrun": [],
    },
}


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file and the key."""


@dataclass
class ArmSpec:
    """One arm of a sweep after resolution.

    Attributes:
        name: folder name under ``<runs>/<sweep>/``.
        config: the fully resolved config (defaults ← base ← overrides, plus ``arm``, ``sweep``, ``published_as``,
            ``external``); replayable: a sweep file whose base is this config and whose arm has no overrides
            reproduces it.
        stages: the stages this arm runs, in order (an external arm has no train/generate).
        overrides: the dotted overrides as written in the sweep file.
    """

    name: str
    config: dict[str, Any]
    stages: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    seed: int | None = None
    role: str = "reference"
    reference: str | None = None

    def info(self) -> dict[str, Any]:
        """The content of ``<run>/arm.json``: which arm and seed this run is, and what its effects compare with."""
        return {"arm": self.group or self.name, "seed": self.seed, "role": self.role, "reference": self.reference}

    @property
    def external(self) -> dict[str, Any] | None:
        """The external-method block (outputs, method, mode, timestamp), or None for a trained arm."""
        ext = self.config.get("external")
        return ext if isinstance(ext, dict) else None

    @property
    def published_as(self) -> str | None:
        """The published Table 1 row this arm reproduces, if any."""
        value = self.config.get("published_as")
        return str(value) if value else None

    def stage_hashes(self) -> dict[str, str]:
        """Hash per stage of what produced it: its own config sections plus every upstream stage's hash."""
        return stage_hashes(self.config, self.stages)


@dataclass
class SweepSpec:
    """A parsed sweep file."""

    name: str
    path: Path
    runs: Path
    stages: tuple[str, ...]
    base: dict[str, Any]
    arms: dict[str, ArmSpec]
    header: str = ""
    reference: str | None = None
    controls: list[str] = field(default_factory=list)

    def select(self, names: list[str] | None) -> list[ArmSpec]:
        """The arms named (in the sweep's order), or all; unknown names raise :class:`SweepError`."""
        if not names:
            return list(self.arms.values())
        groups = {a.group for a in self.arms.values()}
        unknown = [n for n in names if n not in self.arms and n not in groups]
        if unknown:
            raise SweepError(f"{self.path}: unknown arm(s) {unknown}; the sweep has {list(self.arms)}")
        return [a for a in self.arms.values() if a.name in names or a.group in names]


##### dotted overrides


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base`` recursively (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(config: dict[str, Any], dotted: str, value: Any, where: str = "") -> None:
    """Set ``config[a][b][c] = value`` for ``dotted = "a.b.c"``; intermediate dicts are created.

    Raises:
        SweepError: a path component exists but is not a mapping (``where`` prefixes the message).
    """
    parts = dotted.split(".")
    if not all(parts):
        raise SweepError(f"{where}: bad override key {dotted!r} (empty component)")
    node = config
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise SweepError(f"{where}: override {dotted!r}: {prefix!r} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """``config[a][b][c]`` for ``"a.b.c"``, or ``default`` when a component is missing."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A copy of ``config`` with each dotted override set (a nested mapping value is merged, not replaced)."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        current = get_dotted(out, key)
        if isinstance(value, dict) and isinstance(current, dict):
            value = deep_merge(current, value)
        set_dotted(out, str(key), value, where)
    return out


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (leaves only; empty dicts are kept as leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


##### hashing


def config_hash(value: Any) -> str:
    """A short stable hash of a JSON-able value (keys sorted, so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_hashes(config: dict[str, Any], stages: tuple[str, ...]) -> dict[str, str]:
    """Per stage, the hash of its sections of ``config`` chained with the previous stage's hash.

    Chaining is what makes "a changed stage and everything downstream" rerun: a downstream hash includes the upstream
    one. Labels that only name the row (``published_as``) belong to evaluate, so renaming a row rescores nothing
    expensive (the evaluator reuses its per-story units) but rewrites the row.
    """
    out: dict[str, str] = {}
    upstream = ""
    for stage in stages:
        part = {k: config.get(k) for k in STAGE_SECTIONS[stage]}
        out[stage] = config_hash({"stage": stage, "upstream": upstream, "config": part})
        upstream = out[stage]
    return out


##### loading


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file.

    Args:
        path: the YAML file.

    Returns:
        The parsed :class:`SweepSpec` with every arm resolved.

    Raises:
        FileNotFoundError: no such file.
        SweepError: malformed YAML, unknown keys, bad values; the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({e})") from e
    return parse_sweep(data, path, header=_header(text))


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


_TOP_KEYS = {"name", "runs", "stages", "base", "arms", "seeds", "reference", "controls"}
_ARM_KEYS = {"overrides", "published_as", "external", "stages", "seeds", "null_of"}
ROLES = ("reference", "ablation", "null", "external")
_EXTERNAL_KEYS = {"outputs", "method", "mode", "timestamp", "lang"}


def parse_sweep(data: Any, path: str | Path = "<sweep>", header: str = "") -> SweepSpec:
    """Validate the parsed YAML of a sweep file (see :func:`load_sweep`)."""
    path = Path(path)
    where = str(path)
    if not isinstance(data, dict):
        raise SweepError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    name = data.get("name") or path.stem
    _check_name(str(name), f"{where}: name")
    stages = _stages(data.get("stages", list(STAGES)), f"{where}: stages")
    base_raw = data.get("base") or {}
    if not isinstance(base_raw, dict):
        raise SweepError(f"{where}: base must be a mapping, got {type(base_raw).__name__}")
    base = deep_merge(DEFAULTS, base_raw)
    _check_sections(base, f"{where}: base")
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise SweepError(f"{where}: arms must be a non-empty mapping of arm name -> settings")
    bad = [k for k in arms_raw if not isinstance(k, str)]
    if bad:
        raise SweepError(
            f"{where}: arms: arm names must be strings, got {bad!r} (YAML reads null/true/1 as non-strings: quote them)"
        )
    seeds = _seeds(data.get("seeds"), f"{where}: seeds")
    reference = _reference(data.get("reference"), arms_raw, where)
    arms: dict[str, ArmSpec] = {}
    for arm_name, arm_raw in arms_raw.items():
        for arm in _expand(str(arm_name), arm_raw or {}, arms_raw, base, stages, str(name), seeds, reference, where):
            arms[arm.name] = arm
    controls = data.get("controls") or []
    if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
        raise SweepError(f"{where}: controls: expected a list of corruption names")
    return SweepSpec(
        name=str(name),
        path=path,
        runs=Path(str(data.get("runs") or "runs")),
        stages=stages,
        base=base,
        arms=arms,
        header=header,
        reference=reference,
        controls=[str(c) for c in controls],
    )


def _seeds(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise SweepError(f"{where}: expected a non-empty list of integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise SweepError(f"{where}: seeds repeat: {value}")
    return [int(v) for v in value]


def _reference(value: Any, arms_raw: dict[str, Any], where: str) -> str | None:
    """The reference arm: as named, else the first trained arm that is not a null arm."""
    trained = [
        str(n) for n, r in arms_raw.items() if not (isinstance(r, dict) and (r.get("external") or r.get("null_of")))
    ]
    if value is None:
        return trained[0] if trained else None
    if str(value) not in trained:
        raise SweepError(f"{where}: reference: {value!r} is not a trained arm of the sweep ({trained})")
    return str(value)


def _expand(
    name: str,
    raw: Any,
    arms_raw: dict[str, Any],
    base: dict[str, Any],
    stages: tuple[str, ...],
    sweep: str,
    seeds: list[int] | None,
    reference: str | None,
    where: str,
) -> list[ArmSpec]:
    """One arm of the file → its runs: one per seed for a trained arm with seeds, else the arm itself."""
    at = f"{where}: arms.{name}"
    if not isinstance(raw, dict):
        raise SweepError(f"{at}: expected a mapping with {sorted(_ARM_KEYS)}, got {type(raw).__name__}")
    raw = dict(raw)
    null_of = raw.pop("null_of", None)
    arm_seeds = _seeds(raw.pop("seeds", None), f"{at}.seeds")
    if null_of is not None:
        if null_of not in arms_raw or null_of == name:
            raise SweepError(f"{at}.null_of: {null_of!r} is not another arm of the sweep")
        target = arms_raw[null_of] or {}
        if not isinstance(target, dict) or target.get("external") or target.get("null_of"):
            raise SweepError(f"{at}.null_of: {null_of!r} must be a trained arm")
        if arm_seeds is None:
            raise SweepError(f"{at}: a null arm needs its own seeds (other than {null_of!r}'s)")
        raw["overrides"] = {**(target.get("overrides") or {}), **(raw.get("overrides") or {})}
    arm = _arm(name, raw, base, stages, sweep, at)
    if arm.external:
        return [dataclasses.replace(arm, group=name, role="external")]
    role = "null" if null_of is not None else "reference" if name == reference else "ablation"
    ref = None if role == "reference" else reference  # a null arm's target is trained, so reference is set
    run_seeds = arm_seeds or seeds
    if run_seeds is None:
        return [dataclasses.replace(arm, group=name, seed=int(arm.config["seed"]), role=role, reference=ref)]
    out = []
    for k in run_seeds:
        run = f"{name}.seed{k}"
        config = copy.deepcopy(arm.config) | {"seed": k, "arm": run}
        out.append(dataclasses.replace(arm, name=run, config=config, group=name, seed=k, role=role, reference=ref))
    return out


def _check_name(name: str, where: str) -> None:
    if not _NAME_RE.match(name):
        raise SweepError(f"{where}: {name!r} is not a plain folder name (letters, digits, '_', '-', '.')")


def _stages(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where}: expected a non-empty list of stages from {list(STAGES)}")
    unknown = [s for s in value if s not in STAGES]
    if unknown:
        raise SweepError(f"{where}: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    return tuple(s for s in STAGES if s in value)


def _arm(name: str, raw: Any, base: dict[str, Any], stages: tuple[str, ...], sweep: str, where: str) -> ArmSpec:
    _check_name(name, where)
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: expected a mapping with {sorted(_ARM_KEYS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _ARM_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_ARM_KEYS)}")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise SweepError(f"{where}.overrides: expected a mapping of dotted keys to values")
    for key in overrides:
        if str(key).split(".")[0] not in DEFAULTS:
            raise SweepError(f"{where}.overrides: key {key!r} does not start with a config section {sorted(DEFAULTS)}")
    config = apply_overrides(base, {str(k): v for k, v in overrides.items()}, f"{where}.overrides")
    _check_sections(config, where)
    external = raw.get("external")
    if external is not None:
        external = _external(external, f"{where}.external")
    arm_stages = _stages(raw["stages"], f"{where}.stages") if "stages" in raw else stages
    if external is not None:
        arm_stages = tuple(s for s in arm_stages if s in EXTERNAL_STAGES)
        if config["data"].get("synthstory") is None:
            arm_stages = tuple(s for s in arm_stages if s != "data")
    elif "train" in arm_stages and not config["train"].get("config"):
        raise SweepError(f"{where}: stage 'train' needs train.config (a training YAML, e.g. tiny-synthstory.yaml)")
    if "data" in arm_stages and config["data"].get("synthstory") is None:
        raise SweepError(f"{where}: stage 'data' needs data.synthstory (SynthStory settings) or drop the stage")
    if config["data"].get("synthstory") is None and config["evaluate"].get("dataset") is None:
        raise SweepError(f"{where}: evaluate.dataset is required when there is no data stage (data.synthstory)")
    published_as = raw.get("published_as")
    if published_as is not None and not isinstance(published_as, str):
        raise SweepError(f"{where}.published_as: expected a method name string")
    config.update(arm=name, sweep=sweep, published_as=published_as, external=external)
    return ArmSpec(name=name, config=config, stages=arm_stages, overrides=dict(overrides))


def _external(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: expected a mapping with outputs, method[, mode, timestamp, lang]")
    unknown = sorted(set(raw) - _EXTERNAL_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_EXTERNAL_KEYS)}")
    for key in ("outputs", "method"):
        if not raw.get(key):
            raise SweepError(f"{where}.{key}: required (the outputs root and the method folder under it)")
    out = {"outputs": str(raw["outputs"]), "method": str(raw["method"]), "mode": None, "timestamp": None, "lang": None}
    for key in ("mode", "timestamp", "lang"):
        if raw.get(key) is not None:
            out[key] = str(raw[key])
    return out


def _choice(section: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> None:
    value = section.get(key)
    if value not in allowed:
        raise SweepError(f"{where}.{key}: {value!r} is not one of {list(allowed)}")


def _check_sections(config: dict[str, Any], where: str) -> None:
    unknown = sorted(set(config) - set(DEFAULTS) - {"arm", "sweep", "published_as", "external"})
    if unknown:
        raise SweepError(f"{where}: unknown section(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    for section in ("data", "train", "generate", "evaluate", "launch"):
        if not isinstance(config.get(section), dict):
            raise SweepError(f"{where}.{section}: expected a mapping, got {config.get(section)!r}")
    if not isinstance(config.get("seed"), int):
        raise SweepError(f"{where}.seed: expected an integer, got {config.get('seed')!r}")
    ev = config["evaluate"]
    _choice(ev, "era", ERAS, f"{where}.evaluate")
    _choice(ev, "split", SPLITS, f"{where}.evaluate")
    _choice(ev, "backbones", BACKBONES, f"{where}.evaluate")
    _choice(ev, "judge", JUDGES, f"{where}.evaluate")
    _choice(ev, "lang", ("en", "ch"), f"{where}.evaluate")
    metrics = ev.get("metrics")
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        raise SweepError(f"{where}.evaluate.metrics: {metrics!r}; expected a non-empty list from {list(METRICS)}")
    if "prompt_align" in metrics and ev["judge"] == "none":
        raise SweepError(f"{where}.evaluate.judge: metric prompt_align needs a judge (toy or openai), got 'none'")
    if ev["backbones"] == "official" and not ev.get("weights"):
        raise SweepError(f"{where}.evaluate.weights: official backbones need the ViStoryBench weight bundle path")
    gen = config["generate"]
    _choice(gen, "split", SPLITS, f"{where}.generate")
    _choice(gen, "lang", ("en", "ch"), f"{where}.generate")
    _check_name(str(gen.get("method")), f"{where}.generate.method")
    if not isinstance(gen.get("sampling"), dict):
        raise SweepError(f"{where}.generate.sampling: expected a mapping of SamplingConfig fields")
    synth = config["data"].get("synthstory")
    if synth is not None and not isinstance(synth, dict):
        raise SweepError(f"{where}.data.synthstory: expected a mapping of SynthStoryConfig fields or null")


def resolved_yaml(arm: ArmSpec, sweep: SweepSpec) -> str:
    """The text of ``<arm>/config.yaml``: a one-arm sweep file whose base is the resolved config (replayable)."""
    cfg = {k: v for k, v in arm.config.items() if k not in ("arm", "sweep", "published_as", "external")}
    arm_block: dict[str, Any] = {}
    if arm.published_as:
        arm_block["published_as"] = arm.published_as
    if arm.external:
        arm_block["external"] = {k: v for k, v in arm.external.items() if v is not None}
    if arm.stages != sweep.stages:
        arm_block["stages"] = list(arm.stages)
    doc = {
        "name": sweep.name,
        "runs": str(sweep.runs),
        "stages": list(sweep.stages),
        "base": cfg,
        "arms": {arm.name: arm_block or None},
    }
    head = (
        f"# Resolved config of arm {arm.name!r} of sweep {sweep.name!r} (from {sweep.path}).\n"
        f"# Replay: unimage sweep <this file> --runs <runs root>\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
