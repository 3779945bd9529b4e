"""``unimage render script.txt --ckpt DIR -o DIR``: registration module for the top-level dispatcher (logic in ``unimage.infer.cli``)."""

from unimage.infer.cli import configure_render as configure

__all__ = ["configure"]
