"""The two sizes of the GPU proof: ``7b`` (real BAGEL-7B-MoT layer shapes, for a lent GPU) and ``tiny`` (CPU / CI).

Every step reads its shapes, token counts and time box from one ``CheckScale``, so the tiny run exercises exactly
the code the real run uses, only smaller. The 7B boxes add up to 450 s and the watchdog stops the run at 470 s,
inside the 8 minutes the issue allows. Inference has the largest box with training because, without flash-attn,
``auto`` means compiled flex, which compiles again for each new shape (prefill, CFG branches, a growing cache).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from unimage.model.config import LLMConfig, ModelConfig, get_config

__all__ = ["SCALES", "CheckScale", "get_scale"]


@dataclass(frozen=True)
class CheckScale:
    """Shapes and time boxes of one gpucheck run.

    Attributes:
        name: ``7b`` or ``tiny``.
        model: The model config whose LLM / ViT / VAE shapes every step uses (only ``layers`` decoder layers built).
        layers: Decoder layers of the stacks that are timed (training, inference); 28 in the full 7B model.
        fsdp_layers: Decoder layers of the FSDP step's model (1 on 7B: its sharded checkpoint with AdamW state is
            already 466 M parameters × 12 bytes = 5.6 GB to write and read back inside the box).
        parity_tokens: Packed tokens of the kernel-parity pack (the float64 reference is dense: O(L²)).
        train_tokens: Packed tokens of the training pack (8k for the real run).
        fsdp_tokens: Packed tokens of the FSDP step's pack (its point is sharding and resume, not speed).
        prefill_tokens: Text tokens prefilled before decoding and before the keyframe.
        decode_tokens: Tokens decoded with the KV cache.
        keyframe_px: Side of the square keyframe (1024 px = 64×64 latent tokens for BAGEL).
        keyframe_steps: Denoising steps timed per CFG mode.
        timed_iters: Most timed iterations per measurement (fewer when the box runs out).
        boxes: Time box in seconds per step.
    """

    name: str
    model: ModelConfig
    layers: int
    fsdp_layers: int
    parity_tokens: int
    train_tokens: int
    fsdp_tokens: int
    prefill_tokens: int
    decode_tokens: int
    keyframe_px: int
    keyframe_steps: int
    timed_iters: int
    boxes: dict[str, float]

    def llm(self, layers: int | None = None, vocab_size: int | None = None) -> LLMConfig:
        """The LLM shape with ``layers`` decoder layers (default ``self.layers``) and optionally a smaller vocab."""
        cfg = replace(self.model.llm, num_hidden_layers=layers or self.layers)
        return replace(cfg, vocab_size=vocab_size) if vocab_size else cfg

    def model_config(self, layers: int | None = None) -> ModelConfig:
        """The whole model config with ``layers`` decoder layers (the inference step builds a full ``UniMAGE``)."""
        return self.model.replace(llm=self.llm(layers))

    @property
    def total_box(self) -> float:
        """Sum of the step boxes."""
        return float(sum(self.boxes.values()))


def _scaled(boxes: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in boxes.items()}


# FSDP gets room for writing and reading back its 5.6 GB sharded checkpoint on a disk of unknown speed.
_BOXES_7B = {"parity": 90.0, "train": 120.0, "inference": 130.0, "fsdp": 110.0}
# Upper bounds, not targets (the tiny run takes about 20 s of CPU): wide enough for a loaded CI machine, where the
# first flex call alone (torch's compile stack importing) took 9 s.
_BOXES_TINY = {"parity": 60.0, "train": 40.0, "inference": 40.0, "fsdp": 90.0}

SCALES: dict[str, CheckScale] = {
    "7b": CheckScale(
        name="7b",
        model=get_config("bagel-7b-mot", attention_backend="auto"),
        layers=4,
        fsdp_layers=1,
        parity_tokens=4096,
        train_tokens=8192,
        fsdp_tokens=2048,
        prefill_tokens=2048,
        decode_tokens=64,
        keyframe_px=1024,
        keyframe_steps=3,
        timed_iters=5,
        boxes=_BOXES_7B,
    ),
    "tiny": CheckScale(
        name="tiny",
        model=get_config("tiny", attention_backend="auto"),
        layers=2,
        fsdp_layers=2,
        parity_tokens=160,
        train_tokens=256,
        fsdp_tokens=256,
        prefill_tokens=24,
        decode_tokens=6,
        keyframe_px=128,
        keyframe_steps=1,
        timed_iters=2,
        boxes=_BOXES_TINY,
    ),
}


def get_scale(name: str, box_factor: float = 1.0) -> CheckScale:
    """The named scale, with every time box multiplied by ``box_factor``.

    Raises:
        ValueError: Unknown name or a non-positive factor.
    """
    if name not in SCALES:
        raise ValueError(f"unknown gpucheck scale {name!r}; choose one of {list(SCALES)}")
    if box_factor <= 0:
        raise ValueError(f"box_factor must be > 0, got {box_factor}")
    scale = SCALES[name]
    return replace(scale, boxes=_scaled(scale.boxes, box_factor)) if box_factor != 1.0 else scale
