"""The ViStoryBench evaluator: one method's outputs → per-story units → summary, results-table row, provenance.

Flow: load the split's stories (English texts: the official evaluators always load English, the language only
picks the outputs folder, §1.2), read and pair the generated images (problems reported per story), then for
each metric process the stories that have no finished unit yet, in chunks of about ``chunk_images`` images: the
chunk's images (across stories) go through the backbones in batches of ``batch_size``, each story's unit is
written atomically as soon as the chunk is done. A killed run resumes at the first unfinished (story, metric).
At the end the units of the split are aggregated per era and the files of :mod:`bench.results` are written.

Metric names follow the official ones: ``csd``, ``cids``, ``occm``, ``prompt_align``, ``aesthetic``,
``diversity`` (Inception Score). OCCM is its own unit here (officially it lives in ``cids`` for Eras B/C and in
``prompt_align`` for Era A).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.backbones import components_for
from bench.backbones.base import Backbones
from bench.characters import CharacterMatcher
from bench.dataset import LITE_IDS, Split, load_story, scan_story_ids
from bench.functional import alignment, check_era, inception_score, mean_over_stories
from bench.functional._common import Era
from bench.issues import Issue, count_issues
from bench.judge.base import Judge
from bench.outputs import OutputIssue, Pairing, RunDir, find_run, read_story_outputs
from bench.perstory import story_parts
from bench.quirks import QUIRKS, active_fixes, check_fixes
from bench.results import UnitStore, write_json, write_jsonl
from bench.runners import RUNNERS, ChunkResult, Record, RunContext, StoryJob, no_images_record
from formats.perstory import write_per_story
from formats.results import ALIGNMENT_SUBSCORES, RESULTS_ROW_FILE
from formats.vistory import TIMESTAMP_RE

METRICS: tuple[str, ...] = ("csd", "cids", "occm", "prompt_align", "aesthetic", "diversity")
NEEDS_JUDGE: tuple[str, ...] = ("prompt_align",)


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation run (written to ``metadata.json``).

    Attributes:
        dataset: dataset root (``<root>/<NN>/story.json``).
        outputs: outputs root (``<outputs>/<method>/<mode>/<lang>/<ts>/``).
        method: method folder.
        mode: mode folder; None = the method's only mode.
        lang: ``en`` or ``ch`` (selects the outputs folder).
        split: ``full`` or ``lite``.
        era: metric conventions ``A`` (paper Table 1, default), ``B`` or ``C``.
        metrics: subset of :data:`METRICS`.
        timestamp: outputs run timestamp; None = latest.
        pairing: image↔shot pairing; None = by era (positional for A, by file number for B/C, as officially);
            any other choice makes the row non-comparable.
        out: results folder; None = ``<outputs>/../bench_results/<method>/<mode>/<lang>/<ts>-era<E>-<split>``.
        batch_size: images per backbone call.
        chunk_images: images per resume chunk (stories are grouped until this many images).
        progress: show tqdm bars.
        fixes: ``bench.quirks`` switches that replace an official quirk by the corrected behaviour; any active
            one makes the row non-comparable.
    """

    dataset: Path
    outputs: Path
    method: str
    mode: str | None = None
    lang: str = "en"
    split: Split = "full"
    era: Era = "A"
    metrics: tuple[str, ...] = METRICS
    timestamp: str | None = None
    pairing: Pairing | None = None
    out: Path | None = None
    batch_size: int = 16
    chunk_images: int = 64
    progress: bool = True
    fixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_era(self.era)
        object.__setattr__(self, "fixes", check_fixes(self.fixes))
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
        if self.batch_size < 1 or self.chunk_images < 1:
            raise ValueError(f"batch_size and chunk_images must be >= 1, got {self.batch_size}, {self.chunk_images}")

    @property
    def resolved_pairing(self) -> Pairing:
        """Pairing actually used."""
        return self.pairing or self.official_pairing

    @property
    def official_pairing(self) -> Pairing:
        """The era's official pairing: positional in Era A, by file number in B (e67e43e) and C."""
        return "positional" if self.era == "A" else "index"

    @property
    def active_fixes(self) -> tuple[str, ...]:
        """The ``fixes`` that change something in this era."""
        return active_fixes(self.fixes, self.era)


@dataclass
class EvalReport:
    """What :func:`evaluate` did: where it wrote, the table row, and which units it computed vs reused."""

    out: Path
    row: dict[str, Any]
    summary: dict[str, Any]
    computed: list[tuple[str, str]] = field(default_factory=list)
    reused: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)


##### entry point


def evaluate(cfg: EvalConfig, backbones: Backbones, judge: Judge | None = None) -> EvalReport:
    """Score one method's outputs (see module docstring).

    Args:
        cfg: the run definition.
        backbones: the networks (``bench.backbones.load_backbones("toy" | "official", ...)``).
        judge: the Prompt Alignment judge; required if ``prompt_align`` is among the metrics.

    Returns:
        An :class:`EvalReport`; the files are under ``report.out``.

    Raises:
        ValueError: ``prompt_align`` requested without a judge.
        bench.outputs.OutputsError / bench.dataset.DatasetError: no such run, malformed story.
    """
    if any(m in NEEDS_JUDGE for m in cfg.metrics) and judge is None:
        raise ValueError("metric prompt_align needs a judge (pass judge=...)")
    run = find_run(cfg.outputs, cfg.method, cfg.mode, cfg.lang, cfg.timestamp)
    out = cfg.out or default_out_dir(cfg, run)
    store = UnitStore(out)
    jobs, skipped, extra, run_issues = _load_jobs(cfg, run)
    # Fail in seconds, naming the missing weight file, rather than hours into a run; the face encoder is only
    # required when some character to score is a realistic human.
    tags = [c.tag for j in jobs for c in j.story.characters.values()]
    backbones.validate(components_for(cfg.metrics, tags))
    report = EvalReport(out=out, row={}, summary={})
    fixes = frozenset(cfg.active_fixes)
    matcher = CharacterMatcher(backbones, cfg.era, cfg.batch_size, fixes)
    ctx = RunContext(cfg.era, cfg.batch_size, backbones, judge, matcher, fixes)

    for metric in cfg.metrics:
        pending = []
        for job in jobs + extra if metric == "diversity" else jobs:
            if store.done(metric, job.sid, _signature(cfg, backbones, judge, metric, job)):
                report.reused.append((job.sid, metric))
            else:
                pending.append(job)
        bar = _progress(cfg, metric, sum(len(j.outs.images) for j in pending))
        for chunk in _chunks(pending, cfg.chunk_images):
            for sid, record, array in _run_chunk(RUNNERS[metric], chunk, ctx, metric):
                job = next(j for j in chunk if j.sid == sid)
                record.update(
                    run=run.timestamp,
                    metric=metric,
                    scope="story",
                    signature=_signature(cfg, backbones, judge, metric, job),
                )
                store.save(metric, sid, record, array)
                if record["status"] == "failed":
                    report.failed.append((sid, metric, record["error"]))
                else:
                    report.computed.append((sid, metric))
            if bar is not None:
                bar.update(sum(len(j.outs.images) for j in chunk))
        if bar is not None:
            bar.close()

    _write_outputs(cfg, run, out, store, jobs, skipped, backbones, judge, report, extra, run_issues)
    return report


def _signature(
    cfg: EvalConfig, backbones: Backbones, judge: Judge | None, metric: str, job: StoryJob
) -> dict[str, Any]:
    """What a (story, metric) unit depends on besides the code: settings, networks, and the image files."""
    files = hashlib.sha256()
    for shot, path in sorted(job.outs.shots.items()):
        files.update(f"{shot}:{path.name if path else '-'};".encode())
    for path in job.outs.images:
        st = path.stat()
        files.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return {
        "era": cfg.era,
        "pairing": cfg.resolved_pairing,
        "backbones": backbones.name,
        "judge": getattr(judge, "name", None) if metric in NEEDS_JUDGE else None,
        "images": files.hexdigest()[:16],
        "fixes": list(cfg.active_fixes),
    }


def default_out_dir(cfg: EvalConfig, run: RunDir) -> Path:
    """``<outputs>/../bench_results/<method>/<mode>/<lang>/<ts>-era<E>-<split>`` (stable, so reruns resume)."""
    return (
        Path(cfg.outputs).parent
        / "bench_results"
        / run.method
        / run.mode
        / run.lang
        / f"{run.timestamp}-era{cfg.era}-{cfg.split}"
    )


##### jobs, chunks, progress


def _load_jobs(cfg: EvalConfig, run: RunDir) -> tuple[list[StoryJob], dict[str, str], list[StoryJob], list[Issue]]:
    """The split's stories with their outputs, the skipped ones (and why), the extra stories Eras B/C pool into
    the Inception Score under ``--split lite`` (quirk ``inception-split-only``), and the dataset/run issues."""
    all_ids, issues = scan_story_ids(cfg.dataset)
    story_dirs, dir_issues = run.scan_story_dirs(root=Path(cfg.outputs))
    issues += dir_issues
    stamps = sorted(p.name for p in run.path.parent.iterdir() if p.is_dir() and TIMESTAMP_RE.match(p.name))
    if cfg.timestamp is None and len(stamps) > 1:
        issues.append(
            Issue(
                None,
                "several_runs",
                f"{len(stamps)} run timestamps {stamps}; only the latest is read",
                None,
                str(run.path.parent),
            )
        )
    lite = {int(s) for s in LITE_IDS}
    wanted = [s for s in all_ids if cfg.split == "full" or int(s) in lite]
    pool_all = (
        "diversity" in cfg.metrics
        and cfg.split == "lite"
        and cfg.era in ("B", "C")
        and "inception-split-only" not in cfg.fixes
    )
    jobs: list[StoryJob] = []
    extra: list[StoryJob] = []
    skipped: dict[str, str] = {}
    for sid in all_ids:
        in_split = sid in wanted
        if not in_split and not pool_all:
            continue
        folder = story_dirs.get(sid) or next(
            (p for k, p in story_dirs.items() if k.isdigit() and int(k) == int(sid)), None
        )
        if folder is None:
            if in_split:
                skipped[sid] = "no outputs folder"
            continue
        story = load_story(cfg.dataset, sid, "en")
        outs = read_story_outputs(
            story, folder, cfg.resolved_pairing, era=cfg.era, fixes=cfg.active_fixes, root=Path(cfg.outputs)
        )
        (jobs if in_split else extra).append(StoryJob(story, outs))
    for issue in issues:
        sid_ = issue.story_id
        if issue.kind == "missing_story_json" and sid_ is not None and (cfg.split == "full" or int(sid_) in lite):
            skipped[sid_] = "no story.json"
    return jobs, skipped, extra, issues


def _chunks(jobs: Sequence[StoryJob], max_images: int) -> list[list[StoryJob]]:
    chunks: list[list[StoryJob]] = []
    current: list[StoryJob] = []
    count = 0
    for job in jobs:
        if current and count + len(job.outs.images) > max_images:
            chunks.append(current)
            current, count = [], 0
        current.append(job)
        count += len(job.outs.images)
    if current:
        chunks.append(current)
    return chunks


def _progress(cfg: EvalConfig, metric: str, total: int) -> Any:
    if not cfg.progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{metric}", unit="img")


def _run_chunk(
    runner: Callable[[list[StoryJob], RunContext], ChunkResult], chunk: list[StoryJob], ctx: RunContext, metric: str
) -> ChunkResult:
    """Run a chunk; stories without images short-circuit; if the chunk fails, retry story by story to isolate it."""
    results: ChunkResult = [(j.sid, no_images_record(j), None) for j in chunk if not j.outs.images]
    todo = [j for j in chunk if j.outs.images]
    if not todo:
        return results
    try:
        return results + runner(todo, ctx)
    except Exception:
        if len(todo) == 1:
            err = traceback.format_exc(limit=3)
            return [
                *results,
                (todo[0].sid, {"status": "failed", "error": err, "metrics": {}, "details": {}, "items": []}, None),
            ]
    for job in todo:
        results += _run_chunk(runner, [job], ctx, metric)
    return results


##### aggregation and files


def non_comparable_reasons(cfg: EvalConfig, backbones: Backbones, judge: Judge | None) -> list[str]:
    """Why this run's numbers cannot stand next to published ones (empty list = comparable)."""
    reasons: list[str] = []
    if not backbones.comparable:
        reasons.append("toy backbones (weight-free stand-ins)")
    if judge is not None and not judge.comparable:
        why = getattr(judge, "non_comparable_reason", None) or "toy judge"
        reasons.append(f"Alignment: {why}")
    if cfg.active_fixes:
        reasons.append(f"--fix {' '.join(cfg.active_fixes)} (corrected, not the official behaviour)")
    if cfg.pairing is not None and cfg.pairing != cfg.official_pairing:
        reasons.append(f"--pairing {cfg.pairing} (era {cfg.era} officially pairs {cfg.official_pairing})")
    return reasons


def aggregate(
    era: Era, records: dict[str, dict[str, Record]], logits: np.ndarray | None, fixes: Sequence[str] = ()
) -> dict[str, Any]:
    """The results-table row (DESIGN.md §3.5) from the split's unit records ``records[metric][story_id]``.

    CSD, CIDS, copy-paste ×100; OCCM is already ×100; Alignment 0–100; IS and Aesthetics raw. Missing metrics → NaN.
    The per-story columns are aggregates of `bench.perstory.story_parts` (the numbers ``per_story.json`` holds).
    """

    def story_mean(metric: str, key: str) -> float:
        vals = {sid: r["metrics"].get(key) for sid, r in records.get(metric, {}).items() if r["status"] == "ok"}
        return mean_over_stories({k: float(v) for k, v in vals.items() if v is not None})

    parts = story_parts(era, records, fixes)

    def column(name: str) -> float:
        return parts[name].value() if name in parts else math.nan

    row: dict[str, Any] = {c: column(c) for c in ("csd_self", "csd_cross", "cids_self", "cids_cross")}
    row["copy_paste"] = 100 * story_mean("cids", "copy_paste_score")
    row["occm"] = column("occm")
    ratios = parts["alignment"].component_ratios() if "alignment" in parts else [math.nan] * len(ALIGNMENT_SUBSCORES)
    subs = dict(zip(ALIGNMENT_SUBSCORES, ratios))
    row["alignment"] = alignment(**subs) if all(not math.isnan(v) for v in subs.values()) else math.nan
    row.update(subs)
    row["inception"] = inception_score(torch.from_numpy(logits)) if logits is not None and len(logits) else math.nan
    row["aesthetics"] = column("aesthetics")
    return row


def _write_outputs(
    cfg: EvalConfig,
    run: RunDir,
    out: Path,
    store: UnitStore,
    jobs: list[StoryJob],
    skipped: dict[str, str],
    backbones: Backbones,
    judge: Judge | None,
    report: EvalReport,
    extra: list[StoryJob],
    run_issues: list[Issue],
) -> None:
    records: dict[str, dict[str, Record]] = {}
    for metric in cfg.metrics:
        pool = jobs + extra if metric == "diversity" else jobs
        recs = {j.sid: rec for j in pool if (rec := store.load(metric, j.sid)) is not None}
        records[metric] = recs
        story_results = {
            sid: {k: r.get(k) for k in ("run", "metric", "scope", "status", "metrics", "details")}
            for sid, r in recs.items()
        }
        write_json(out / "metrics" / metric / "story_results.json", story_results)
        write_jsonl(
            out / "metrics" / metric / "items.jsonl",
            [{"story_id": sid, **it} for sid, r in recs.items() for it in r.get("items", [])],
        )
    logits = None
    if "diversity" in cfg.metrics:
        arrays = [store.load_array("diversity", sid) for sid, r in records["diversity"].items() if r["status"] == "ok"]
        logits = np.concatenate(arrays) if arrays else None
        n = 0 if logits is None else len(logits)
        is_value = inception_score(torch.from_numpy(logits)) if logits is not None and n else math.nan
        write_json(
            out / "metrics" / "diversity" / "scores.json",
            {"inception_score": is_value, "inception_score_std": 0.0, "n_images": n, "splits": 1},
        )

    summary: dict[str, Any] = {}
    for metric, recs in records.items():
        keys = sorted({k for r in recs.values() for k, v in r["metrics"].items() if isinstance(v, (int, float))})
        summary[metric] = {
            k: mean_over_stories(
                [float(r["metrics"][k]) for r in recs.values() if isinstance(r["metrics"].get(k), (int, float))]
            )
            for k in keys
        }
    if logits is not None:
        summary["diversity"] = {
            "inception_score": inception_score(torch.from_numpy(logits)),
            "inception_score_std": 0.0,
        }

    row = aggregate(cfg.era, records, logits, cfg.active_fixes) if records else {}
    write_per_story(out, cfg.era, story_parts(cfg.era, records, cfg.active_fixes))
    issues = [*run_issues, *(i for j in jobs for i in (*j.story.issues, *j.outs.issues))]
    kinds = [i.kind for i in issues]
    reasons = non_comparable_reasons(cfg, backbones, judge)
    row.update(
        method=cfg.method,
        mode=run.mode,
        lang=cfg.lang,
        split=cfg.split,
        era=cfg.era,
        backbones=backbones.name,
        judge=getattr(judge, "name", None),
        comparable_with_published=not reasons,
        non_comparable_reasons=reasons,
        fixes=list(cfg.active_fixes),
        n_stories=len(jobs),
        n_images=sum(len(j.outs.images) for j in jobs),
        n_shots=sum(len(j.story.shots) for j in jobs),
        n_missing_shots=sum(1 for j in jobs for p in j.outs.shots.values() if p is None),
        n_unreadable_images=kinds.count("unreadable"),
        n_zero_based_stories=kinds.count("zero_based"),
        n_skipped_stories=len(skipped),
        n_failed_units=sum(1 for recs in records.values() for r in recs.values() if r["status"] == "failed"),
        n_issues=len(issues),
        issue_counts=count_issues(issues),
        n_inception_images=0 if logits is None else len(logits),
    )
    report.row, report.summary = row, summary
    write_json(out / "summary.json", summary)
    write_json(out / RESULTS_ROW_FILE, row)
    write_json(
        out / "issues.json",
        {"skipped_stories": skipped, "counts": count_issues(issues), "issues": [i.record() for i in issues]},
    )
    manifest = {j.sid: {m: records.get(m, {}).get(j.sid, {}).get("status") for m in cfg.metrics} for j in jobs}
    write_json(out / "manifest.json", manifest)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    write_json(
        out / "metadata.json",
        {
            "config": config,
            "run_dir": str(run.path),
            "pairing": cfg.resolved_pairing,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    write_json(out / "provenance.json", _provenance(cfg, run, backbones, judge))


def _provenance(cfg: EvalConfig, run: RunDir, backbones: Backbones, judge: Judge | None) -> dict[str, Any]:
    import torchmetrics

    return {
        "era": cfg.era,
        "split": cfg.split,
        "lang": cfg.lang,
        "pairing": cfg.resolved_pairing,
        "fixes": list(cfg.active_fixes),
        "fixes_requested": list(cfg.fixes),
        "quirks_reproduced": [n for n, q in QUIRKS.items() if cfg.era in q.eras and n not in cfg.active_fixes],
        "comparable_with_published": not non_comparable_reasons(cfg, backbones, judge),
        "non_comparable_reasons": non_comparable_reasons(cfg, backbones, judge),
        "metrics": list(cfg.metrics),
        "dataset": str(cfg.dataset),
        "outputs_run": str(run.path),
        **backbones.provenance(),
        "judge_model": getattr(judge, "name", None),
        "judge_comparable": getattr(judge, "comparable", None),
        "judge_details": judge.provenance() if judge is not None else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchmetrics": torchmetrics.__version__,
        },
    }


def load_row(out: str | Path) -> dict[str, Any]:
    """Read ``results_row.json`` of a finished evaluation."""
    data = json.loads((Path(out) / RESULTS_ROW_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{out}/{RESULTS_ROW_FILE}: expected an object")
    return data


__all__ = [
    "METRICS",
    "EvalConfig",
    "EvalReport",
    "OutputIssue",
    "StoryJob",
    "aggregate",
    "default_out_dir",
    "evaluate",
    "load_row",
]
