"""``unimage continue script.txt --ckpt DIR -o out.txt``: registration module for the top-level dispatcher (logic in ``unimage.infer.cli``)."""

from unimage.infer.cli import configure_continue as configure

__all__ = ["configure"]
