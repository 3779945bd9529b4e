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

Every key is typed (`ablations.schema`: the sections as dataclasses; ``data.synthstory`` and ``generate.sampling``
take the fields of ``SynthStoryConfig`` and ``SamplingConfig``; ``train`` the options of ``unimage fit``), and every
arm, base merged with its overrides, is checked when the file is loaded: a typo anywhere, ``train.*`` included, fails
then with its dotted path and the nearest valid key (`ablations.schema_check`), not when its stage runs. The
training config of each trained arm is parsed by the ``unimage fit`` parser itself (`ablations.schema_fit`), which
imports Lightning; everything else is plain data (no torch).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ablations.schema import DEFAULTS, STAGES, BaseSection, SweepFile
from ablations.schema_check import At, SweepError, check, check_dotted, closest, record_of
from ablations.schema_fit import check_train, is_train_key, without_train
from unimage.data.synthspec import SynthStoryConfig
from unimage.infer.config import SamplingConfig

__all__ = ["DEFAULTS", "STAGES", "ArmSpec", "SweepError", "SweepSpec", "fit_config", "load_sweep", "parse_sweep"]

#: Stages an external-method arm can have (its images exist already).
EXTERNAL_STAGES: tuple[str, ...] = ("data", "evaluate")
#: Sections of an arm config that feed each stage's hash (besides the upstream stages' hashes).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "train": ("train", "seed"),
    "generate": ("generate", "seed", "device"),
    "evaluate": ("evaluate", "external", "published_as", "device"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
            near = closest(unknown[0], [*groups, *self.arms])
            hint = f" (did you mean {near!r}?)" if near else ""
            raise SweepError(f"sweep {self.path}: unknown arm(s) {unknown}{hint}; the sweep has {list(self.arms)}")
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


##### training config (shared with the train stage)


def resolve_path(value: str | Path, sweep_file: Path) -> Path:
    """A path from a sweep file: absolute as is; relative to the working directory if it exists there, else to the
    sweep file's folder (so a sweep runs both from the repo root and from elsewhere)."""
    p = Path(os.path.expandvars(str(value))).expanduser()
    if p.is_absolute() or p.exists():
        return p
    beside = sweep_file.parent / p
    return beside if beside.exists() else p


def fit_config(
    section: dict[str, Any], base: dict[str, Any], seed: int, run_dir: str, synthstory: str | None
) -> dict[str, Any]:
    """The training config an arm runs (``checkpoints/train_input.yaml``, what ``unimage fit --config`` gets).

    Args:
        section: the arm's resolved ``train`` section; its keys but ``config`` are merged onto ``base``.
        base: the training YAML named by ``train.config``.
        seed: the arm's seed; it becomes ``seed_everything`` and ``model.seed`` unless the YAML or the sweep pins them
            (``model.seed`` seeds everything a run draws: init, data order, splits, dropout, flow noise; without it
            every seed of an arm would train the same model).
        run_dir: ``<arm>/checkpoints/``; training derives every path from it (checkpoints, export, logs).
        synthstory: the data stage's SynthStory folder, used as ``data.synthstory`` unless that is set, and for
            ``{data}`` in ``model.tokenizer`` (``"{data}/tokenizer"``: the BPE tokenizer the set was drawn with).
    """
    section = {k: v for k, v in section.items() if k != "config"}
    cfg = deep_merge(base, section)
    cfg["run_dir"] = run_dir
    cfg.setdefault("seed_everything", seed)
    if "seed" not in (section.get("model") or {}):
        cfg.setdefault("model", {})["seed"] = seed
    data = cfg.setdefault("data", {})
    if data.get("synthstory") is None and synthstory is not None:
        data["synthstory"] = synthstory
    tok = (cfg.get("model") or {}).get("tokenizer")
    if isinstance(tok, str) and "{data}" in tok:
        if synthstory is None:
            raise ValueError(f"train.model.tokenizer {tok!r} names {{data}}, but the sweep has no data stage")
        cfg["model"]["tokenizer"] = tok.replace("{data}", synthstory)
    return cfg


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
        raise SweepError(f"sweep {path}: not valid YAML ({e})") from e
    return parse_sweep(data, path, header=_header(text))


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def parse_sweep(data: Any, path: str | Path = "<sweep>", header: str = "") -> SweepSpec:
    """Validate the parsed YAML of a sweep file (see :func:`load_sweep`)."""
    path = Path(path)
    where = f"sweep {path}"
    if not isinstance(data, dict):
        raise SweepError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise SweepError(f"{where}: arms must be a non-empty mapping of arm name -> settings")
    bad = [k for k in arms_raw if not isinstance(k, str)]
    if bad:
        raise SweepError(
            f"{where}: arms: arm names must be strings, got {bad!r} (YAML reads null/true/1 as non-strings: quote them)"
        )
    check(SweepFile, without_train(data), At(where))  # train.*: _check_train
    name = str(data.get("name") or path.stem)
    _check_name(name, At(where, "name"))
    stages = _stages(data.get("stages") or list(STAGES), At(where, "stages"))
    base = deep_merge(DEFAULTS, data.get("base") or {})
    _check_sections(base, At(where, "base"))
    seeds = _seeds(data.get("seeds"), At(where, "seeds"))
    reference = _reference(data.get("reference"), arms_raw, At(where, "reference"))
    arms: dict[str, ArmSpec] = {}
    resolved: list[ArmSpec] = []
    for arm_name, arm_raw in arms_raw.items():
        arm, runs = _expand(arm_name, arm_raw or {}, arms_raw, base, stages, name, seeds, reference, where)
        resolved.append(arm)
        arms.update((run.name, run) for run in runs)
    _check_train(data, resolved, path, where)
    return SweepSpec(
        name=name,
        path=path,
        runs=Path(str(data.get("runs") or "runs")),
        stages=stages,
        base=base,
        arms=arms,
        header=header,
        reference=reference,
        controls=[str(c) for c in data.get("controls") or []],
    )


def _seeds(value: list[int] | None, at: At) -> list[int] | None:
    if value is None:
        return None
    if not value:
        at.fail("expected a non-empty list of integer seeds")
    if len(set(value)) != len(value):
        at.fail(f"seeds repeat: {value}")
    return list(value)


def _reference(value: str | None, arms_raw: dict[str, Any], at: At) -> str | None:
    """The reference arm: as named, else the first trained arm that is not a null arm."""
    trained = [n for n, r in arms_raw.items() if not (isinstance(r, dict) and (r.get("external") or r.get("null_of")))]
    if value is None:
        return trained[0] if trained else None
    if value not in trained:
        near = closest(value, trained)
        at.fail(
            f"{value!r} is not a trained arm of the sweep ({trained})" + (f" (did you mean {near!r}?)" if near else "")
        )
    return value


def _expand(
    name: str,
    raw: dict[str, Any],
    arms_raw: dict[str, Any],
    base: dict[str, Any],
    stages: tuple[str, ...],
    sweep: str,
    seeds: list[int] | None,
    reference: str | None,
    where: str,
) -> tuple[ArmSpec, list[ArmSpec]]:
    """One arm of the file → the arm resolved, and its runs: one per seed for a trained arm with seeds, else itself."""
    at = At(where, f"arms.{name}")
    raw = dict(raw)
    null_of = raw.pop("null_of", None)
    arm_seeds = _seeds(raw.pop("seeds", None), at.child("seeds"))
    if null_of is not None:
        others = [n for n in arms_raw if n != name]
        if null_of not in others:
            near = closest(null_of, others)
            hint = f" (did you mean {near!r}?)" if near else ""
            at.child("null_of").fail(f"{null_of!r} is not another arm of the sweep{hint}")
        target = arms_raw[null_of] or {}
        if target.get("external") or target.get("null_of"):
            at.child("null_of").fail(f"{null_of!r} must be a trained arm")
        if arm_seeds is None:
            at.fail(f"a null arm needs its own seeds (other than {null_of!r}'s)")
        raw["overrides"] = {**(target.get("overrides") or {}), **(raw.get("overrides") or {})}
    arm = _arm(name, raw, base, stages, sweep, at)
    if arm.external:
        return arm, [dataclasses.replace(arm, group=name, role="external")]
    role = "null" if null_of is not None else "reference" if name == reference else "ablation"
    ref = None if role == "reference" else reference  # a null arm's target is trained, so reference is set
    run_seeds = arm_seeds or seeds
    if run_seeds is None:
        return arm, [dataclasses.replace(arm, group=name, seed=int(arm.config["seed"]), role=role, reference=ref)]
    out = []
    for k in run_seeds:
        run = f"{name}.seed{k}"
        config = copy.deepcopy(arm.config) | {"seed": k, "arm": run}
        out.append(dataclasses.replace(arm, name=run, config=config, group=name, seed=k, role=role, reference=ref))
    return arm, out


def _check_name(name: str, at: At) -> None:
    if not _NAME_RE.match(name):
        at.fail(f"{name!r} is not a plain folder name (letters, digits, '_', '-', '.')")


def _stages(value: list[str] | str, at: At) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in value if s not in STAGES]
    if unknown:
        at.fail(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    if not value:
        at.fail(f"expected a non-empty list of stages from {list(STAGES)}")
    return tuple(s for s in STAGES if s in value)


def _arm(name: str, raw: dict[str, Any], base: dict[str, Any], stages: tuple[str, ...], sweep: str, at: At) -> ArmSpec:
    _check_name(name, at)
    overrides = {str(k): v for k, v in (raw.get("overrides") or {}).items()}
    keys = record_of(BaseSection)
    for key, value in overrides.items():
        if not is_train_key(key):  # train.*: _check_train
            check_dotted(keys, key, value, at.child("overrides"))
    config = apply_overrides(base, overrides, f"{at.where}: {at.path}.overrides")
    _check_sections(config, at)
    external = raw.get("external")
    if external is not None:
        external = {"mode": None, "timestamp": None, "lang": None} | {
            k: str(v) for k, v in external.items() if v is not None
        }
    arm_stages = _stages(raw["stages"], at.child("stages")) if raw.get("stages") is not None else stages
    if external is not None:
        arm_stages = tuple(s for s in arm_stages if s in EXTERNAL_STAGES)
        if config["data"].get("synthstory") is None:
            arm_stages = tuple(s for s in arm_stages if s != "data")
    elif "train" in arm_stages and not config["train"].get("config"):
        at.fail("stage 'train' needs train.config (a training YAML, e.g. tiny-synthstory.yaml)")
    if "data" in arm_stages and config["data"].get("synthstory") is None:
        at.fail("stage 'data' needs data.synthstory (SynthStory settings) or drop the stage")
    if config["data"].get("synthstory") is None and config["evaluate"].get("dataset") is None:
        at.fail("evaluate.dataset is required when there is no data stage (data.synthstory)")
    config.update(arm=name, sweep=sweep, published_as=raw.get("published_as"), external=external)
    return ArmSpec(name=name, config=config, stages=arm_stages, overrides=overrides)


def _check_sections(config: dict[str, Any], at: At) -> None:
    """What the types alone do not say: combinations of settings, and the ranges the dataclasses check."""
    ev, gen = config["evaluate"], config["generate"]
    if not ev["metrics"]:
        at.child("evaluate.metrics").fail("expected a non-empty list of metrics")
    if "prompt_align" in ev["metrics"] and ev["judge"] == "none":
        at.child("evaluate.judge").fail("metric prompt_align needs a judge (toy or openai), got 'none'")
    if ev["backbones"] == "official" and not ev.get("weights"):
        at.child("evaluate.weights").fail("official backbones need the ViStoryBench weight bundle path")
    _check_name(str(gen["method"]), at.child("generate.method"))
    synth = config["data"]["synthstory"]
    try:
        if synth is not None:
            args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in synth.items()}
            SynthStoryConfig(**args)
    except (TypeError, ValueError) as e:
        at.child("data.synthstory").fail(str(e))
    try:
        SamplingConfig.from_dict({"seed": config["seed"], **gen["sampling"]})
    except (TypeError, ValueError) as e:
        at.child("generate.sampling").fail(str(e))


def _read_train_yaml(path: Path, at: At) -> dict[str, Any]:
    """The training YAML at ``path`` ({} while it does not exist: the runner refuses to start the arm then)."""
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        at.fail(f"{path} is not valid YAML ({e})")
    if not isinstance(doc, dict):
        at.fail(f"{path}: expected a mapping")
    return doc


def _check_train(data: dict[str, Any], arms: list[ArmSpec], path: Path, where: str) -> None:
    """Hold the ``train`` keys, and each trained arm's merged training config (:func:`fit_config`, with placeholder
    paths), against ``unimage fit`` (`ablations.schema_fit.check_train`)."""
    base_train = {k: v for k, v in ((data.get("base") or {}).get("train") or {}).items() if k != "config"}
    overrides = {a.name: {k: v for k, v in a.overrides.items() if is_train_key(k)} for a in arms}
    docs: dict[str, dict[str, Any]] = {}
    merged: dict[str, tuple[At, dict[str, Any]]] = {}
    for arm in arms:
        if "train" not in arm.stages or arm.external:
            continue
        at = At(where, f"arms.{arm.name}")
        yaml_path = resolve_path(str(arm.config["train"]["config"]), path)
        docs[str(yaml_path)] = _read_train_yaml(yaml_path, at.child("train.config"))
        synth = "<data stage>/synthstory" if arm.config["data"]["synthstory"] is not None else None
        try:
            cfg = fit_config(arm.config["train"], docs[str(yaml_path)], arm.config["seed"], "<arm>/checkpoints", synth)
        except ValueError as e:
            at.child("train").fail(str(e))
        merged.setdefault(config_hash(cfg), (at, cfg))
    check_train(where, base_train, overrides, docs, list(merged.values()))


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
