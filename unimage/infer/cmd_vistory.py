"""``unimage generate-vistory --dataset ROOT --ckpt DIR --method NAME --mode ARM``: registration module for the top-level dispatcher (logic in ``unimage.infer.cli``)."""

from unimage.infer.cli import configure_vistory as configure

__all__ = ["configure"]
