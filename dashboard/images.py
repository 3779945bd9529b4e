"""Images for the dashboard: confined to the configured run roots, downscaled once, served as bytes.

Why bytes and not paths: ``st.image(bytes)`` publishes the picture under a content-hash URL, so neither the
file name nor the folder (which names the method) reaches the browser — the study page depends on this.
Why downscale: a 30-shot story × 8 methods is 240 images; full-size PNGs would make every rerun slow.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import streamlit as st
from PIL import Image, ImageOps

THUMB_SIDE = 384


class ImageAccessError(PermissionError):
    """A requested image lies outside every configured run root (or is not a readable image)."""


def resolve_within(roots: Iterable[str], path: str | os.PathLike[str]) -> Path:
    """Return the real path of ``path`` if it lies inside one of ``roots``.

    Symlinks and ``..`` are resolved before the check, so neither can escape a root.

    Raises:
        ImageAccessError: when the path is outside every root, or is not a regular file.
    """
    real = Path(os.path.realpath(path))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real.is_relative_to(real_root):
            if not real.is_file():
                raise ImageAccessError(f"{path}: not a file")
            return real
    raise ImageAccessError(f"{path}: outside the configured run roots")


def thumbnail(roots: tuple[str, ...], path: str, max_side: int = THUMB_SIDE) -> bytes:
    """Downscaled JPEG bytes of an image inside the run roots (cached by path, size and modification time)."""
    real = resolve_within(roots, path)
    return _thumbnail_cached(str(real), real.stat().st_mtime_ns, max_side)


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail_cached(real_path: str, mtime_ns: int, max_side: int) -> bytes:
    del mtime_ns  # part of the cache key only: an overwritten image is re-read
    return encode_thumbnail(real_path, max_side)


def encode_thumbnail(path: str, max_side: int) -> bytes:
    """Read an image, fit it into ``max_side``² keeping its aspect ratio, and encode it as JPEG (no metadata)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            rgb = im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageAccessError(f"{path}: unreadable image ({exc})") from exc
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=85, optimize=False)
    return buf.getvalue()


def placeholder(max_side: int = THUMB_SIDE, text: str = "missing") -> bytes:
    """A grey JPEG standing in for a missing or unreadable shot, so columns stay aligned."""
    from PIL import ImageDraw

    side = max(16, max_side // 2)
    im = Image.new("RGB", (side, side), (200, 200, 200))
    ImageDraw.Draw(im).text((8, side // 2 - 6), text, fill=(90, 90, 90))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


@st.cache_data(max_entries=1024, show_spinner=False)
def degrade(data: bytes, seed: int) -> bytes:
    """A visibly worse copy of a thumbnail for a corrupted catch trial: heavy blur plus seeded noise."""
    import numpy as np
    from PIL import ImageFilter

    with Image.open(io.BytesIO(data)) as im:
        blurred = im.convert("RGB").filter(ImageFilter.GaussianBlur(radius=max(4, im.width // 40)))
    arr = np.asarray(blurred).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-60, 61, size=arr.shape, dtype=np.int16)
    out = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def thumbnails(roots: tuple[str, ...], paths: list[str], max_side: int = THUMB_SIDE) -> list[bytes | Exception]:
    """`thumbnail` for many images at once, decoded in a thread pool (PIL releases the GIL while decoding).

    The first visit of a 30-shot × 8-method page decodes 240 keyframes; doing it on all cores shortens that wait.
    Results keep the order of ``paths``; a failure is returned in place (an `ImageAccessError`), not raised.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    ctx = get_script_run_ctx()

    def attach() -> None:  # worker threads share the session's context, so st.cache_data sees one cache
        if ctx is not None:
            add_script_run_ctx(threading.current_thread(), ctx)

    def one(path: str) -> bytes | Exception:
        try:
            return thumbnail(roots, path, max_side)
        except ImageAccessError as exc:
            return exc

    workers = min(8, os.cpu_count() or 1, max(1, len(paths)))
    if workers == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers, initializer=attach) as pool:
        return list(pool.map(one, paths))
