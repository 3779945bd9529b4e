"""ViStoryBench generation: each ``story.json`` → a UniMAGE script → one keyframe per shot, in the benchmark's layout.

Conversion (text-only mode, as the paper's Table 1: no reference images are used):

- ``<User>``: "A <Story_type> story featuring <names>." (ViStoryBench has no user prompt);
- characters, in ``Characters`` order → ``<CharacterI>: <prompt_{lang}>``;
- distinct ``Setting Description`` texts, in order of first use → ``<EnvironmentJ>: <setting>``;
- shot k → ``<Framek>: <Shot Perspective Design>: <Static Shot Description>`` with every appearing character's name
  tagged ``Name<CharacterI>`` (appended when the text does not name it) and the setting as ``<EnvironmentJ>``;
  ``<Videok>``: the ``Plot Correspondence`` text, tagged the same way.

Angle brackets in the story texts become ‹ › (they would read as tags or cues). Script shots are numbered 1..n; the
image of shot k is written as ``shot_NN.png`` with NN the 1-based ``index`` of story.json (DESIGN.md §3.3).

Output layout (DESIGN.md §3.3, vistorybench.md §2), written through `formats.vistory.OutputWriter`::

    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/generation.json      what produced the run, per-story status
    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story_id>/shots/shot_NN.png
    <outputs>/<method>/<mode>/<lang>/<YYYYMMDD_HHMMSS>/<story_id>/script.txt, script.json

Resumable: every file is written atomically and ``script.json`` last, so a story is finished exactly when its
``script.json`` and all its shots exist; a rerun with the same settings reuses the newest run folder made with them
and skips finished stories. A story that fails is reported (and recorded in ``generation.json``) and the others go on.
Each story is rendered with its own seed (derived from the config seed and the story id), so results do not depend
on which stories ran before.

Batching (``batch_stories``): stories are independent, so groups of stories are rendered in lockstep by shot index
(``Director.render_lockstep``): keyframe k of every story of the group is denoised by one forward per step over
(stories × CFG branches). Every story keeps its own seed, so its keyframes equal the one-at-a-time result up to float
summation order (at most a rare 1-level difference in the PNGs). A story's files are written as its keyframes come
and ``script.json`` when it finishes, as without batching. If anything in a group fails, its unfinished stories are
rendered one by one, so a failing story fails alone. The default batches on CUDA only (4 stories); on CPU it stays
1 so the outputs stay byte-identical to earlier runs (batching helps there too on tiny models: about 1.3× per
keyframe at 4 stories in ``tests/benchmarks/test_cfg_batch_bench.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from formats.vistory import (
    LITE_IDS,
    STORY_FILE,
    OutputWriter,
    check_timestamp,
    dataset_root,
    free_timestamp,
    is_canonical_timestamp,
    read_story_json,
    shot_name,
)
from fsio import atomic_write_text
from unimage.infer.config import SamplingConfig
from unimage.script import Description, Entity, Script, Shot, parse, serialize, to_dict

if TYPE_CHECKING:
    from unimage.infer.director import Director

__all__ = [
    "VistoryReport",
    "generate_vistory",
    "load_story_json",
    "story_ids",
    "story_to_script",
]

RUN_FILE = "generation.json"
Split = Literal["full", "lite"]


########################################################################################################################
# story.json → script
########################################################################################################################


def load_story_json(path: str | Path) -> dict[str, Any]:
    """Read a ``story.json`` (UTF-8 with or without BOM, as the official loader).

    Raises:
        ValueError: The file cannot be read (`formats.vistory.StoryFileError`) or is not a JSON object with
            ``Characters`` and ``Shots``.
    """
    path = Path(path)
    data = read_story_json(path)
    if not isinstance(data.get("Shots"), list):
        raise ValueError(f"{path}: not a ViStoryBench story (needs a 'Shots' list)")
    if not isinstance(data.get("Characters", {}), dict):
        raise ValueError(f"{path}: 'Characters' must be an object")
    return data


def _text(value: Any, lang: str, where: str) -> str:
    if isinstance(value, dict):
        value = value.get(lang, value.get("en"))
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected text, got {type(value).__name__}")
    return " ".join(value.replace("<", "‹").replace(">", "›").split())


def _tag(text: str, people: Sequence[tuple[str, str]], lang: str) -> str:
    """Put ``<CharacterI>`` after the first mention of each name; names not found are appended."""
    missing = []
    for name, tag in people:
        if not tag:
            if name not in text:
                missing.append(name)
            continue
        pattern = re.escape(name) if lang == "ch" else rf"(?<![\w‹]){re.escape(name)}(?![\w›])"
        m = re.search(pattern, text) if name else None
        if m is None or tag in text:
            if tag not in text:
                missing.append(f"{name}{tag}")
            continue
        text = text[: m.end()] + tag + text[m.end() :]
    if missing:
        joined = ", ".join(missing)
        text = f"{text} 人物：{joined}。" if lang == "ch" else f"{text} Characters: {joined}."
    return text.strip()


def _end(text: str) -> str:
    return text if not text or text[-1] in ".!?。！？…" else text + "."


def story_to_script(story: dict[str, Any], lang: str = "en", source: str = "story.json") -> tuple[Script, list[int]]:
    """Convert a ViStoryBench story into a UniMAGE script (module docstring).

    Args:
        story: The parsed ``story.json``.
        lang: ``en`` or ``ch``: which texts to use.
        source: Name used in error messages.

    Returns:
        The script and, per script shot, the story.json ``index`` of that shot (for the image file names).

    Raises:
        ValueError: A field is missing or mistyped, or the script would not be well-formed (the message names the
            story and the problem).
    """
    chars: dict[str, int] = {}
    characters = []
    for key, raw in story.get("Characters", {}).items():
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: Characters[{key!r}] must be an object")
        chars[key] = len(chars) + 1
        prompt = _text(raw.get(f"prompt_{lang}") or raw.get("prompt_en"), lang, f"{source}: Characters[{key!r}]")
        name = _text(raw.get(f"name_{lang}") or raw.get("name_en") or key, lang, f"{source}: Characters[{key!r}]")
        characters.append(Entity(chars[key], Description(_end(prompt or name))))
    names = {
        key: _text(
            story["Characters"][key].get(f"name_{lang}") or story["Characters"][key].get("name_en") or key, lang, source
        )
        for key in chars
    }

    settings: dict[str, int] = {}
    shots: list[Shot] = []
    indices: list[int] = []
    for pos, raw in enumerate(story["Shots"]):
        where = f"{source}: Shots[{pos}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object")
        index = raw.get("index", pos + 1)
        if not isinstance(index, int) or index < 1:
            raise ValueError(f"{where}: 'index' must be a 1-based integer, got {index!r}")
        keys = raw.get("Characters Appearing", {})
        keys = keys.get("en", []) if isinstance(keys, dict) else keys
        if not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{where}: 'Characters Appearing' must list character keys")
        # A key missing from `Characters` (as the benchmark's reader, we keep it) is named without a tag.
        people = [(names.get(k, k), f"<Character{chars[k]}>" if k in chars else "") for k in dict.fromkeys(keys)]
        setting = _text(raw.get("Setting Description"), lang, where)
        env = ""
        if setting:
            settings.setdefault(setting, len(settings) + 1)
            env = f"<Environment{settings[setting]}>"
        camera = _text(raw.get("Shot Perspective Design"), lang, where)
        static = _text(raw.get("Static Shot Description"), lang, where)
        plot = _text(raw.get("Plot Correspondence"), lang, where) or static
        frame = _tag(_end(static), people, lang)
        if env:
            frame += f" 场景：{env}。" if lang == "ch" else f" Setting: {env}."
        if camera:
            frame = f"{camera}: {frame}"
        video = _tag(_end(plot), people, lang)
        shots.append(Shot(len(shots) + 1, Description(frame.strip()), Description(video or frame)))
        indices.append(index)
    if not shots:
        raise ValueError(f"{source}: the story has no shots")
    environments = tuple(Entity(i, Description(_end(s))) for s, i in settings.items())
    story_type = _text(story.get("Story_type"), lang, source) or ("故事" if lang == "ch" else "short")
    cast = ("、" if lang == "ch" else ", ").join(names.values())
    if lang == "ch":
        prompt = f"一个{story_type}故事，主角是{cast}。" if cast else f"一个{story_type}故事。"
    else:
        prompt = f"A {story_type} story featuring {cast}." if cast else f"A {story_type} story."
    script = Script(_text(prompt, lang, source), tuple(characters), environments, tuple(shots))
    problems = [p for p in parse(serialize(script)).problems if p.code != "possibly-truncated"]
    if problems:
        raise ValueError(f"{source}: the converted script is not well-formed: " + "; ".join(map(str, problems)))
    if len(set(indices)) != len(indices):
        raise ValueError(f"{source}: duplicate shot index in {indices}")
    return script, indices


def story_ids(dataset: str | Path, split: Split = "full") -> list[str]:
    """Numeric story folders holding a story.json, sorted; ``lite`` keeps the official 20 that exist."""
    root = dataset_root(dataset)
    ids = sorted(
        (p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / STORY_FILE).is_file()), key=int
    )
    if split == "lite":
        ids = [i for i in ids if i in LITE_IDS]
    elif split != "full":
        raise ValueError(f"split must be 'full' or 'lite', got {split!r}")
    return ids


########################################################################################################################
# generation
########################################################################################################################


@dataclass
class VistoryReport:
    """What one ``generate_vistory`` call did.

    Attributes:
        run_dir: ``<outputs>/<method>/<mode>/<lang>/<timestamp>``.
        generated: Stories rendered by this call.
        skipped: Stories already finished (resume).
        failed: Story id → error message.
        keyframes: Keyframes written by this call.
        seconds: Wall time.
    """

    run_dir: Path
    generated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    keyframes: int = 0
    seconds: float = 0.0

    @property
    def timestamp(self) -> str:
        """The run folder's timestamp."""
        return self.run_dir.name


def story_seed(seed: int, story_id: str) -> int:
    """A per-story seed, stable across processes and independent of the order stories run in."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{story_id}".encode()).digest()[:4], "little")


def _fingerprint(directory: str) -> dict[str, Any]:
    ema = Path(directory) / "ema.safetensors"
    stat = ema.stat() if ema.is_file() else None
    return {
        "path": directory,
        "ema_bytes": stat.st_size if stat else None,
        "ema_mtime_ns": stat.st_mtime_ns if stat else None,
    }


def _pick_run(parent: Path, record: dict[str, Any], timestamp: str | None) -> str:
    """The run folder's timestamp: ``timestamp`` if given, else the newest run with the same settings, else a new one."""

    def same(run: Path) -> bool:
        try:
            old = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        return bool(old.get("settings") == record["settings"])

    if timestamp is not None:
        run = parent / check_timestamp(timestamp)
        if run.is_dir() and (run / RUN_FILE).is_file() and not same(run):
            raise FileExistsError(
                f"{run} was generated with other settings ({run / RUN_FILE}); choose another timestamp"
            )
        return timestamp
    if parent.is_dir():
        runs = sorted((p for p in parent.iterdir() if p.is_dir() and is_canonical_timestamp(p.name)), reverse=True)
        for run in runs:
            if same(run):
                return run.name
    return free_timestamp(parent)


def generate_vistory(
    dataset: str | Path,
    ckpt: Any,
    method: str,
    mode: str,
    split: Split = "full",
    lang: str = "en",
    outputs: str | Path = "outputs",
    *,
    config: SamplingConfig | None = None,
    timestamp: str | None = None,
    stories: Sequence[str] | None = None,
    progress: bool = True,
    device: str | None = None,
    batch_stories: int | None = None,
    scripts: str | Path | None = None,
) -> VistoryReport:
    """Render every story of a ViStoryBench split into the benchmark's output layout (module docstring).

    Args:
        dataset: Dataset root (``<root>/<NN>/story.json``, or its parent holding ``ViStory/``).
        ckpt: A BAGEL-layout directory, a run directory holding one (``Director.from_pretrained``), or a
            ``Director``.
        method: ``<method>`` folder name.
        mode: ``<mode>`` folder name (e.g. the ablation arm).
        split: ``full`` or ``lite``.
        lang: ``en`` or ``ch``: the texts used and the ``<lang>`` folder.
        outputs: Outputs root.
        config: Sampling settings (the Director's own when ``ckpt`` is a ``Director``, else BAGEL's defaults).
        timestamp: Write into this run folder; None resumes the newest run with the same settings or starts one.
        stories: Only these story ids (within the split).
        progress: tqdm bars over stories and shots.
        device: Device for loading ``ckpt`` (CUDA when available by default).
        batch_stories: Stories rendered together in lockstep (module docstring); None = 4 on CUDA, 1 otherwise.
        scripts: A folder of UniMAGE scripts ``<story_id>.txt``: a story with a script there is rendered from it
            instead of from the conversion of its ``story.json`` (SynthStory's ``eval/scripts/``: the held-out
            stories in exactly the format the model was trained on, so an ablation is not measured through a
            prompt format the model never saw). Its shots must match the story's shots one to one.

    Returns:
        The report; failed stories are listed there (and in ``generation.json``), never raised.

    Raises:
        FileNotFoundError: The dataset or checkpoint is missing.
        ValueError: Bad split / lang / timestamp, unknown story ids, or ``batch_stories`` < 1.
    """
    from tqdm.auto import tqdm

    _check_arguments(method, mode, lang, batch_stories)
    start = time.perf_counter()
    root = dataset_root(dataset)
    ids = _selected_ids(root, split, stories)
    director = _load_director(ckpt, config, device)
    record = _run_record(director, root, split, lang, method, mode, scripts)
    parent = Path(outputs) / method / mode / lang
    writer = OutputWriter(Path(outputs), method, mode, lang, _pick_run(parent, record, timestamp))
    run = _Run(director, writer, record, progress)
    run.save_record()
    if batch_stories is None:
        batch_stories = 4 if director.device.type == "cuda" else 1
    pending = run.pending(root, ids, lang, scripts)
    run.save_record()
    groups = [pending[i : i + batch_stories] for i in range(0, len(pending), batch_stories)]
    for group in tqdm(
        groups, desc=f"{method}/{mode}", unit="group" if batch_stories > 1 else "story", disable=not progress
    ):
        if len(group) == 1:
            run.render_alone(*group[0])
        else:
            run.render_group(group)
    report = run.report
    report.generated.sort(key=ids.index)  # stories of a group finish by shot count, not in id order
    report.seconds = time.perf_counter() - start
    return report


def _check_arguments(method: str, mode: str, lang: str, batch_stories: int | None) -> None:
    """Reject arguments that would write outside the layout or cannot run, before anything is loaded."""
    if batch_stories is not None and batch_stories < 1:
        raise ValueError(f"batch_stories must be >= 1, got {batch_stories}")
    if lang not in ("en", "ch"):
        raise ValueError(f"lang must be 'en' or 'ch', got {lang!r}")
    for name, value in (("method", method), ("mode", mode)):
        if not value or "/" in value or value in (".", "..") or value.strip() != value:
            raise ValueError(f"{name} must be a plain folder name, got {value!r}")


def _selected_ids(root: Path, split: Split, stories: Sequence[str] | None) -> list[str]:
    """The split's story ids, kept to ``stories`` when given (each must be in the split)."""
    ids = story_ids(root, split)
    if stories is not None:
        unknown = sorted(set(stories) - set(ids))
        if unknown:
            raise ValueError(f"stories {unknown} are not in the {split} split of {root}")
        ids = [i for i in ids if i in set(stories)]
    return ids


def _load_director(ckpt: Any, config: SamplingConfig | None, device: str | None) -> Director:
    """``ckpt`` as a Director (a given Director with ``config`` swapped in, else loaded from its folder)."""
    from unimage.infer.director import Director

    if isinstance(ckpt, Director):
        return ckpt if config is None else Director(ckpt.model, ckpt.vae, ckpt.tokenizer, config, ckpt.source)
    return Director.from_pretrained(ckpt, config=config, device=device)


def _run_record(
    director: Director, root: Path, split: Split, lang: str, method: str, mode: str, scripts: str | Path | None
) -> dict[str, Any]:
    """What produced the run (``generation.json`` without the per-story status); equal settings resume a run."""
    return {
        "generator": "unimage.infer.vistory",
        "settings": {
            "checkpoint": _fingerprint(director.source),
            "id_prompting": director.model.config.layout.id_prompting,
            "sampling": director.config.to_dict(),
            "dataset": str(root.resolve()),
            "split": split,
            "lang": lang,
            "method": method,
            "mode": mode,
            "reference_images": False,
            "scripts": str(Path(scripts).resolve()) if scripts is not None else None,
        },
    }


class _Run:
    """One ``generate_vistory`` call's writing: the run folder's writer, its ``generation.json`` record and per-story
    status, and the report. A failed story is recorded and the others go on (module docstring)."""

    def __init__(self, director: Director, writer: OutputWriter, record: dict[str, Any], progress: bool) -> None:
        self.director, self.writer, self.record, self.progress = director, writer, record, progress
        run_file = writer.run_dir / RUN_FILE
        self.status: dict[str, str] = {}
        if run_file.is_file():
            self.status = json.loads(run_file.read_text(encoding="utf-8")).get("stories", {})
        self.report = VistoryReport(run_dir=writer.run_dir)

    def save_record(self) -> None:
        text = json.dumps(self.record | {"stories": self.status}, indent=2, sort_keys=True) + "\n"
        atomic_write_text(self.writer.run_dir / RUN_FILE, text)

    def fail(self, sid: str, err: Exception) -> None:
        from tqdm.auto import tqdm

        message = f"{type(err).__name__}: {err}"
        self.report.failed[sid] = message
        self.status[sid] = "failed: " + message
        if self.progress:
            tqdm.write(f"story {sid} failed: {message}\n{traceback.format_exc(limit=3)}")

    def finish(self, sid: str, script: Script, indices: list[int]) -> None:
        text = serialize(script)
        parsed = parse(text)
        payload = to_dict(parsed.script, parsed.problems) | {"shot_files": [shot_name(i) for i in indices]}
        self.writer.write_script(sid, text, payload)
        self.report.generated.append(sid)
        self.status[sid] = "done"
        self.save_record()

    def write_shot(self, sid: str, index: int, image: Any) -> None:
        self.writer.write_shot(sid, index, image)
        self.report.keyframes += 1

    def pending(
        self, root: Path, ids: list[str], lang: str, scripts: str | Path | None
    ) -> list[tuple[str, Script, list[int]]]:
        """The stories still to render, with their scripts and shot indices; finished ones are marked skipped."""
        pending: list[tuple[str, Script, list[int]]] = []
        for sid in ids:
            try:
                script, indices = story_to_script(
                    load_story_json(root / sid / STORY_FILE), lang, f"{root / sid}/{STORY_FILE}"
                )
                given = Path(scripts) / f"{sid}.txt" if scripts is not None else None
                if given is not None and given.is_file():
                    script = _given_script(given, len(indices))
            except Exception as err:
                self.fail(sid, err)
                continue
            if self.writer.story_done(sid, indices):
                self.report.skipped.append(sid)
                self.status[sid] = "done"
            else:
                pending.append((sid, script, indices))
        return pending

    def render_alone(self, sid: str, script: Script, indices: list[int]) -> None:
        try:
            seeded = self.director.with_config(seed=story_seed(self.director.config.seed, sid))
            for index, image in zip(indices, seeded.render_iter(script, progress=self.progress)):
                self.write_shot(sid, index, image)
            self.finish(sid, script, indices)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a failed story is reported and the rest continue
            self.fail(sid, err)
            self.save_record()

    def render_group(self, group: list[tuple[str, Script, list[int]]]) -> None:
        from tqdm.auto import tqdm

        done = [0] * len(group)
        try:
            seeds = [story_seed(self.director.config.seed, sid) for sid, _, _ in group]
            for i, image in self.director.render_lockstep([script for _, script, _ in group], seeds):
                sid, script, indices = group[i]
                self.write_shot(sid, indices[done[i]], image)
                done[i] += 1
                if done[i] == len(indices):
                    self.finish(sid, script, indices)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # isolate the failure: the unfinished stories of the group go one by one
            if self.progress:
                tqdm.write(f"batched stories failed ({type(err).__name__}: {err}); rendering them one by one")
            for (sid, script, indices), n in zip(group, done):
                if n < len(indices):
                    self.render_alone(sid, script, indices)


def _given_script(path: Path, n_shots: int) -> Script:
    """A script read from ``path`` for a story of ``n_shots`` shots (its problems and a shot mismatch are errors)."""
    result = parse(path.read_text(encoding="utf-8"))
    if not result.ok:
        first = result.problems[0]
        raise ValueError(f"{path}: {len(result.problems)} problem(s) in the script, e.g. {first}")
    if len(result.script.shots) != n_shots:
        raise ValueError(f"{path}: the script has {len(result.script.shots)} shots, story.json has {n_shots}")
    return result.script
