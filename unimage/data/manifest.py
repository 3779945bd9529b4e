"""The three training sample kinds, read from a local manifest (JSONL or parquet) plus image files.

Manifest schema — one record per JSONL line or parquet row:

==============  =====================================================================================
field           meaning
==============  =====================================================================================
``kind``        ``"interleaved"`` | ``"text"`` | ``"pair"`` (may be omitted when the caller passes
                ``kind=`` to `Manifest`; a record's own value wins)
``id``          non-empty string, unique within the manifest (used in logs and for resuming)
``script``      interleaved and text: the UniMAGE script text (DESIGN.md §3.1); must parse with
                zero problems (`unimage.script.parse`), apart from codes listed in ``tolerate``
``images``      interleaved: list of images, one per shot, in shot order (``len == #shots``)
``text``        pair: the caption; either plain text, or script-structured (global entries plus one
                ``<Frame1>``; no ``<User>``/``<Video1>`` needed), which must then parse cleanly
``image``       pair: one image
==============  =====================================================================================

An image is a path string (relative paths are resolved against ``root``, by default the manifest's folder)
or a mapping ``{"bytes": <encoded image>, "path": <name>}`` as Hugging Face ``datasets`` writes to parquet.
Extra fields are allowed and ignored.

Bad records are never fatal and never silently dropped: `Manifest.load` returns ``None`` and counts the reason
in a `SkipCounter` (logged, with the record's location ``file:line`` or ``file#row``). Reasons:
``malformed_record`` (not a JSON object, missing/ill-typed field, unknown kind), ``missing_image``,
``unreadable_image`` (not decodable, truncated, empty), ``malformed_script``, ``image_count_mismatch``.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from PIL import Image, UnidentifiedImageError

from unimage.data.atomic import atomic_write_bytes, atomic_write_text
from unimage.script import Script, parse

logger = logging.getLogger(__name__)

SampleKind = Literal["interleaved", "text", "pair"]
KINDS: tuple[SampleKind, ...] = ("interleaved", "text", "pair")
SKIP_REASONS: tuple[str, ...] = (
    "malformed_record",
    "missing_image",
    "unreadable_image",
    "malformed_script",
    "image_count_mismatch",
)
# Problem codes a pair caption may have: it is a caption, not a script.
PAIR_CAPTION_CODES = frozenset({"missing-user", "missing-video"})


# ------------------------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class InterleavedSample:
    """A multi-shot script and one keyframe per shot (RGB, shot order)."""

    id: str
    script: str
    structure: Script
    images: tuple[Image.Image, ...]
    kind: ClassVar[SampleKind] = "interleaved"


@dataclass(frozen=True)
class TextSample:
    """A text-only script (used for the understanding expert, and for Pre-Context Script Splitting)."""

    id: str
    script: str
    structure: Script
    kind: ClassVar[SampleKind] = "text"


@dataclass(frozen=True)
class PairSample:
    """A single text–image pair; ``structure`` is set when the caption is script-structured."""

    id: str
    text: str
    image: Image.Image
    structure: Script | None = None
    kind: ClassVar[SampleKind] = "pair"


Sample = InterleavedSample | TextSample | PairSample


# -------------------------------------------------------------------------------------------- skip counter
@dataclass
class SkipCounter:
    """Counts every skipped record by reason, keeps a few examples, and logs each skip.

    Counts are events: loading the same bad record twice counts it twice (one count per epoch). Counters from
    several workers or ranks add up with `merge`.

    Attributes:
        counts: Skips per reason.
        kept: Records loaded successfully.
        examples: Up to ``max_examples`` ``"where: detail"`` strings per reason.
        max_examples: How many examples to keep per reason.
        log_limit: Skips per reason logged at WARNING; later ones go to DEBUG (the counts stay exact).
    """

    counts: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 5
    log_limit: int = 20

    @property
    def skipped(self) -> int:
        """Total skipped records."""
        return sum(self.counts.values())

    @property
    def seen(self) -> int:
        """Total records looked at (kept + skipped)."""
        return self.kept + self.skipped

    def skip(self, reason: str, where: str, detail: str) -> None:
        """Record one skipped record; ``reason`` must be one of `SKIP_REASONS`."""
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {SKIP_REASONS}")
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < self.max_examples:
            self.examples[reason].append(f"{where}: {detail}")
        level = logging.WARNING if self.counts[reason] <= self.log_limit else logging.DEBUG
        logger.log(level, "skipped record %s [%s] %s", where, reason, detail)

    def keep(self) -> None:
        """Record one successfully loaded record."""
        self.kept += 1

    def merge(self, other: SkipCounter) -> None:
        """Add ``other``'s counts and examples into this counter."""
        self.counts.update(other.counts)
        self.kept += other.kept
        for reason, items in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(items[: max(0, self.max_examples - len(mine))])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ``{"seen", "kept", "skipped", "reasons": {reason: count}, "examples"}``."""
        return {
            "seen": self.seen,
            "kept": self.kept,
            "skipped": self.skipped,
            "reasons": dict(sorted(self.counts.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
        }

    def summary(self) -> str:
        """One line, e.g. ``"kept 62 of 64 records; skipped 2 (missing_image 1, malformed_script 1)"``."""
        line = f"kept {self.kept} of {self.seen} records"
        if self.skipped:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            line += f"; skipped {self.skipped} ({reasons})"
        return line


# --------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ManifestRecord:
    """One raw record and where it came from (``file:line`` or ``file#row``); ``data`` is None if unreadable."""

    where: str
    data: dict[str, Any] | None
    error: str = ""


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_records(path: str | os.PathLike[str]) -> list[ManifestRecord]:
    """Read the raw records of a ``.jsonl`` or ``.parquet`` manifest (blank JSONL lines are not records).

    Raises:
        FileNotFoundError: the manifest itself does not exist.
        ValueError: the suffix is neither ``.jsonl`` nor ``.parquet``.
    """
    p = Path(path)
    if p.suffix == ".jsonl":
        records = []
        with p.open(encoding="utf-8", errors="replace") as handle:
            for n, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{p}:{n}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    records.append(ManifestRecord(where, None, f"invalid JSON ({exc.msg} at column {exc.colno})"))
                    continue
                if not isinstance(data, dict):
                    records.append(
                        ManifestRecord(where, None, f"a record must be a JSON object, got {type(data).__name__}")
                    )
                    continue
                records.append(ManifestRecord(where, data))
        return records
    if p.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(p)
        return [
            ManifestRecord(f"{p}#{i}", {k: _from_parquet(v) for k, v in row.items()})
            for i, row in enumerate(frame.to_dict("records"))
        ]
    raise ValueError(f"{p}: a manifest must end in .jsonl or .parquet")


def _from_parquet(value: Any) -> Any:
    """Plain Python values from what pandas/pyarrow return (arrays -> lists, NaN/NA -> None)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, list):
        return [_from_parquet(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_parquet(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


class Manifest:
    """A manifest opened for map-style access: ``len(m)``, ``m.load(i)``, or iterate the good samples.

    Args:
        path: A ``.jsonl`` or ``.parquet`` manifest.
        root: Folder relative image paths are resolved against (default: the manifest's folder).
        kind: Kind assumed for records without a ``kind`` field.
        counter: Where skips are counted (default: a new `SkipCounter`, available as ``.skips``).
        tolerate: Script problem codes that do not make a script malformed (default: none).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        kind: SampleKind | None = None,
        counter: SkipCounter | None = None,
        tolerate: Iterable[str] = (),
    ) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.path = Path(path)
        self.root = Path(root) if root is not None else self.path.parent
        self.kind = kind
        self.skips = counter if counter is not None else SkipCounter()
        self.tolerate = frozenset(tolerate)
        self.records = read_records(self.path)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self.records)):
            sample = self.load(i)
            if sample is not None:
                yield sample

    def load(self, i: int) -> Sample | None:
        """Load record ``i`` with its images; ``None`` (counted in ``self.skips``) if the record is bad."""
        record = self.records[i]
        try:
            if record.data is None:
                raise _Bad("malformed_record", record.error)
            sample = self._build(record.data)
        except _Bad as bad:
            self.skips.skip(bad.reason, record.where, bad.detail)
            return None
        self.skips.keep()
        return sample

    def _build(self, data: dict[str, Any]) -> Sample:
        kind = data.get("kind") or self.kind
        if kind not in KINDS:
            raise _Bad("malformed_record", f"unknown or missing kind {kind!r}; expected one of {KINDS}")
        sid = _field(data, "id", str)
        if kind == "text":
            script = _field(data, "script", str)
            return TextSample(sid, script, self._parse(script))
        if kind == "interleaved":
            script = _field(data, "script", str)
            structure = self._parse(script)
            images = data.get("images")
            if not isinstance(images, list) or not images:
                raise _Bad("malformed_record", f"field 'images' must be a non-empty list, got {type(images).__name__}")
            if len(images) != len(structure.shots):
                raise _Bad("image_count_mismatch", f"{len(images)} images for {len(structure.shots)} shots")
            return InterleavedSample(sid, script, structure, tuple(self._image(x) for x in images))
        text = _field(data, "text", str)
        caption = self._parse(text, PAIR_CAPTION_CODES) if _is_structured(text) else None
        if caption is not None and len(caption.shots) != 1:
            raise _Bad(
                "malformed_script",
                f"a structured caption needs exactly one <Frame1>, found {len(caption.shots)} shots",
            )
        if "image" not in data:
            raise _Bad("malformed_record", "missing field 'image'")
        return PairSample(sid, text, self._image(data["image"]), caption)

    def _parse(self, text: str, also: frozenset[str] = frozenset()) -> Script:
        result = parse(text)
        bad = [p for p in result.problems if p.code not in self.tolerate | also]
        if bad:
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            raise _Bad("malformed_script", f"{bad[0]}{more}")
        return result.script

    def _image(self, spec: Any) -> Image.Image:
        if isinstance(spec, Mapping) and spec.get("bytes") is not None:
            name = str(spec.get("path") or "<bytes>")
            raw = spec["bytes"]
            if not isinstance(raw, (bytes, bytearray)):
                raise _Bad("malformed_record", f"image bytes of {name} must be bytes, got {type(raw).__name__}")
            return _decode(io.BytesIO(raw), name)
        if isinstance(spec, Mapping):
            spec = spec.get("path")
        if not isinstance(spec, str) or not spec:
            raise _Bad("malformed_record", f"an image must be a path string or {{'bytes', 'path'}}, got {spec!r}")
        path = Path(spec) if os.path.isabs(spec) else self.root / spec
        if not path.is_file():
            raise _Bad("missing_image", f"{path} does not exist")
        return _decode(path, str(path))


def _field(data: dict[str, Any], name: str, typ: type) -> Any:
    value = data.get(name)
    if not isinstance(value, typ) or (isinstance(value, str) and not value.strip()):
        raise _Bad("malformed_record", f"field {name!r} must be a non-empty {typ.__name__}, got {value!r:.60}")
    return value


def _is_structured(text: str) -> bool:
    """A caption is script-structured when it has an entry header (``<Frame1>:``, ``<Character1>:``, ...)."""
    from unimage.script.parse import HEADER_RE

    return any(HEADER_RE.match(line.strip()) for line in text.splitlines())


def _decode(source: Path | io.BytesIO, name: str) -> Image.Image:
    """Fully decode an image to RGB (``load()`` forces the read, so truncated files fail here, not later)."""
    try:
        with Image.open(source) as img:
            img.load()
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _Bad("unreadable_image", f"{name}: {type(exc).__name__}: {exc}") from exc
    if rgb.width == 0 or rgb.height == 0:
        raise _Bad("unreadable_image", f"{name}: empty image")
    return rgb


# --------------------------------------------------------------------------------------------- writing
def write_manifest(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write records atomically as ``.jsonl`` (one JSON object per line) or ``.parquet`` (pandas/pyarrow).

    Returns:
        The number of records written.
    """
    p = Path(path)
    rows = [dict(r) for r in records]
    if p.suffix == ".jsonl":
        atomic_write_text(p, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif p.suffix == ".parquet":
        import pandas as pd

        buf = io.BytesIO()
        pd.DataFrame.from_records(rows).to_parquet(buf, index=False)
        atomic_write_bytes(p, buf.getvalue())
    else:
        raise ValueError(f"{p}: a manifest must end in .jsonl or .parquet")
    return len(rows)
