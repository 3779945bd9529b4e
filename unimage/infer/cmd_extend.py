"""``unimage extend script.txt "NEW PROMPT" --ckpt DIR -o out.txt``: registration module for the top-level dispatcher (logic in ``unimage.infer.cli``)."""

from unimage.infer.cli import configure_extend as configure

__all__ = ["configure"]
