"""``unimage write "PROMPT" --ckpt DIR -o script.txt``: registration module for the top-level dispatcher (logic in ``unimage.infer.cli``)."""

from unimage.infer.cli import configure_write as configure

__all__ = ["configure"]
