"""SynthStory: a procedural story set whose ground truth is known exactly, written to disk.

`generate(out_dir, config)` writes, deterministically from ``config.seed``::

    <out>/synthstory.json                       the config (written first, ``complete: false``) and, at the end,
                                                 the counts with ``complete: true``
    <out>/train/interleaved.jsonl               script + one keyframe per shot      (manifest kind "interleaved")
    <out>/train/text.jsonl                      text-only scripts                   (manifest kind "text")
    <out>/train/pairs.jsonl                     single text–image pairs             (manifest kind "pair")
    <out>/train/images/interleaved/<id>/shot_NN.png
    <out>/train/images/pairs/<id>.png
    <out>/eval/ViStory/<NN>/story.json          ViStoryBench dataset layout (reference/vistorybench.md §1)
    <out>/eval/ViStory/<NN>/image/<Key>/00.jpg  character reference images (or 00.png: ``ref_format``)
    <out>/eval/ground_truth/<NN>.json           boxes, character ids and counts per shot
    <out>/eval/scripts/<NN>.txt                 the story as a UniMAGE script
    <out>/tokenizer/                            a BPE tokenizer trained on the training texts (only when
                                                 ``tokenizer_vocab`` > 0)
    <out>/eval/outputs/ground_truth/base/en/20000101_000000/<NN>/shots/shot_NN.png
                                                 the exact keyframes in the ViStoryBench *output* layout (a
                                                 "perfect method" for testing metrics), with script.txt and
                                                 script.json beside (DESIGN.md §3.3)

Every file is written atomically (temporary name, then rename), so a file that exists is complete. A rerun
with the same config skips every file that exists and rewrites nothing, and produces byte-identical files
when run into an empty folder (PNG via PIL carries no timestamps; JSON is dumped in a fixed key order).
A rerun into a folder made with a different config is refused: mixing two sets would corrupt both.

The manifest schema is documented in `unimage.data.manifest`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from formats.vistory import DATASET_FOLDER, IMAGE_FOLDER, STORY_FILE, OutputWriter
from fsio import atomic_write_bytes, atomic_write_text
from unimage.data.synthdraw import render_reference, render_shot
from unimage.data.synthspec import ShotSpec, StorySpec, SynthStoryConfig, sample_story
from unimage.data.synthtext import ground_truth, pair_text, script_text, story_json
from unimage.script import parse, to_dict

__all__ = [
    "FORMAT_VERSION",
    "GT_OUTPUT_RUN",
    "SynthReport",
    "SynthStoryConfig",
    "eval_story_ids",
    "generate",
    "story_specs",
]

FORMAT_VERSION = 1
# Where the exact keyframes go in the ViStoryBench output layout: <method>/<mode>/<lang>/<timestamp>.
GT_OUTPUT_RUN = ("ground_truth", "base", "en", "20000101_000000")


@dataclass
class SynthReport:
    """What one `generate` call did."""

    out_dir: Path
    stories: int = 0
    keyframes: int = 0
    files_written: int = 0
    files_skipped: int = 0
    seconds: float = 0.0


def eval_story_ids(n: int) -> list[str]:
    """Zero-padded numeric story folder names, ``"01"`` .. (ViStoryBench calls ``int()`` on them)."""
    width = max(2, len(str(n)))
    return [str(i + 1).zfill(width) for i in range(n)]


def story_specs(config: SynthStoryConfig) -> dict[str, list[StorySpec]]:
    """Every story of the set, by split (``train``, ``text``, ``pair``, ``eval``); cheap, draws nothing."""
    return {
        "train": [sample_story(config, "train", i, f"train-{i:05d}") for i in range(config.train_stories)],
        "text": [sample_story(config, "text", i, f"text-{i:05d}") for i in range(config.n_text)],
        "pair": [sample_story(config, "pair", i, f"pair-{i:05d}") for i in range(config.n_pairs)],
        "eval": [sample_story(config, "eval", i, sid) for i, sid in enumerate(eval_story_ids(config.eval_stories))],
    }


def generate(out_dir: str | os.PathLike[str], config: SynthStoryConfig | None = None) -> SynthReport:
    """Write the SynthStory set for ``config`` into ``out_dir`` (see the module docstring for the layout).

    Args:
        out_dir: Target folder; created if missing. Existing complete files are kept (resume).
        config: What to generate; the defaults give 64 training stories, 64 text scripts, 64 pairs and
            8 evaluation stories with 128 px keyframes.

    Returns:
        Counts of stories, keyframes, files written and files skipped, and the wall time.

    Raises:
        FileExistsError: ``out_dir`` holds a SynthStory set made with a different config.
    """
    config = config or SynthStoryConfig()
    out = Path(out_dir)
    meta = _meta(config)
    meta_path = out / "synthstory.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old.get("config") != meta["config"] or old.get("format_version") != FORMAT_VERSION:
            raise FileExistsError(
                f"{meta_path} was written with config {old.get('config')} (format {old.get('format_version')}); "
                f"refusing to mix it with {meta['config']} (format {FORMAT_VERSION}): choose another output folder"
            )
    else:
        # Claim the folder for this config before writing anything, so a killed run is resumed only
        # by the same config (the final write below replaces this with the complete record).
        atomic_write_text(meta_path, json.dumps(meta | {"complete": False}, indent=2) + "\n")
    report = SynthReport(out_dir=out)
    start = time.perf_counter()
    writer = _Writer(report)
    specs = story_specs(config)
    train_root = out / "train"

    rows: list[dict[str, Any]] = []
    for story in specs["train"]:
        paths = [f"images/interleaved/{story.story_id}/shot_{s.index:02d}.png" for s in story.shots]
        for shot, rel in zip(story.shots, paths):
            writer.image(train_root / rel, partial(render_shot, story, shot))
        rows.append({"kind": "interleaved", "id": story.story_id, "script": script_text(story), "images": paths})
    writer.text(train_root / "interleaved.jsonl", _jsonl(rows))

    rows = [{"kind": "text", "id": s.story_id, "script": script_text(s)} for s in specs["text"]]
    writer.text(train_root / "text.jsonl", _jsonl(rows))

    rows = []
    for story in specs["pair"]:
        rel = f"images/pairs/{story.story_id}.png"
        writer.image(train_root / rel, partial(render_shot, story, story.shots[0]))
        rows.append({"kind": "pair", "id": story.story_id, "text": pair_text(story), "image": rel})
    writer.text(train_root / "pairs.jsonl", _jsonl(rows))
    if config.tokenizer_vocab:
        texts = [script_text(s) for s in specs["train"] + specs["text"]] + [r["text"] for r in rows]
        writer.directory(out / "tokenizer", partial(_write_tokenizer, texts=texts, vocab_size=config.tokenizer_vocab))

    eval_root = out / "eval"
    gt = OutputWriter(eval_root / "outputs", *GT_OUTPUT_RUN)
    for story in specs["eval"]:
        sid = story.story_id
        sdir = eval_root / DATASET_FOLDER / sid
        writer.text(sdir / STORY_FILE, json.dumps(story_json(story), ensure_ascii=False, indent=2) + "\n")
        for char in story.characters:
            for v in range(config.refs_per_character):
                writer.image(
                    sdir / IMAGE_FOLDER / char.key / f"{v:02d}.{config.ref_format}",
                    partial(render_reference, char, config.ref_side, v),
                )
        writer.text(eval_root / "ground_truth" / f"{sid}.json", json.dumps(ground_truth(story), indent=2) + "\n")
        script = script_text(story)
        writer.text(eval_root / "scripts" / f"{sid}.txt", script)
        # The exact keyframes in the output layout, through its one writer (each file skipped when it exists).
        parsed = parse(script)
        writer.once(gt.script_path(sid, "txt"), partial(gt.write_script, sid, text=script))
        writer.once(gt.script_path(sid), partial(gt.write_script, sid, data=to_dict(parsed.script, parsed.problems)))
        for shot in story.shots:
            writer.once(gt.shot_path(sid, shot.index), partial(_write_gt_shot, gt, story, shot))

    report.stories = sum(len(v) for v in specs.values())
    report.keyframes = sum(len(s.shots) for s in specs["train"] + specs["pair"] + specs["eval"])
    meta["counts"] = {k: len(v) for k, v in specs.items()} | {"keyframes": report.keyframes}
    final = json.dumps(meta | {"complete": True}, indent=2) + "\n"
    if meta_path.read_text(encoding="utf-8") != final:
        atomic_write_text(meta_path, final)
        report.files_written += 1
    else:
        report.files_skipped += 1
    report.seconds = time.perf_counter() - start
    return report


def _meta(config: SynthStoryConfig) -> dict[str, Any]:
    fields = json.loads(json.dumps(dataclasses.asdict(config)))
    if not fields["tokenizer_vocab"]:
        del fields["tokenizer_vocab"]  # so folders written before the field existed still resume
    return {"generator": "unimage.data.synthstory", "format_version": FORMAT_VERSION, "config": fields}


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def encode_image(image: Image.Image, fmt: str = "png") -> bytes:
    """PNG (or JPEG, quality 95, no chroma subsampling) bytes with fixed settings and no metadata, so equal
    images give equal bytes."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", optimize=False, compress_level=6)
    elif fmt == "jpg":
        image.save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    else:
        raise ValueError(f"unknown image format {fmt!r}; expected 'png' or 'jpg'")
    return buf.getvalue()


def _write_tokenizer(directory: Path, *, texts: list[str], vocab_size: int) -> None:
    from unimage.script.tiny_tokenizer import write_tiny_qwen2_tokenizer

    write_tiny_qwen2_tokenizer(directory, vocab_size=vocab_size, corpus=texts, with_vision_tokens=True)


def _write_gt_shot(gt: OutputWriter, story: StorySpec, shot: ShotSpec) -> None:
    gt.write_shot(story.story_id, shot.index, encode_image(render_shot(story, shot)))


class _Writer:
    """Writes files atomically, skipping those that already exist (they are complete by construction)."""

    def __init__(self, report: SynthReport) -> None:
        self.report = report

    def image(self, path: Path, render: Callable[[], Image.Image]) -> None:
        if path.exists():
            self.report.files_skipped += 1
            return
        atomic_write_bytes(path, encode_image(render(), path.suffix.lstrip(".")))
        self.report.files_written += 1

    def text(self, path: Path, text: str) -> None:
        if path.exists():
            self.report.files_skipped += 1
            return
        atomic_write_text(path, text)
        self.report.files_written += 1

    def directory(self, path: Path, write: Callable[[Path], object]) -> None:
        """Have ``write`` fill a temporary sibling of ``path``, then rename it: a folder that exists is complete."""
        if path.exists():
            self.report.files_skipped += 1
            return
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        os.replace(tmp, path)
        self.report.files_written += 1

    def once(self, path: Path, write: Callable[[], object]) -> None:
        """Call ``write`` (which writes ``path``, e.g. through `formats.vistory.OutputWriter`) unless ``path`` exists."""
        if path.exists():
            self.report.files_skipped += 1
            return
        write()
        self.report.files_written += 1
