"""Typed sampling settings of the Director: script decoding and keyframe rendering, with BAGEL's defaults.

Image defaults come from ``InterleaveInferencer.interleave_inference`` (bagel-compat §3.6, row 2): 50 timesteps,
shift 3.0, text scale 3.0, image scale 1.5, interval (0.4, 1.0], renorm ``global`` with min 0.0. That row is chosen
because the Director renders keyframes exactly the way ``interleave_inference`` runs: interleaved text and images in
one context, where the ī branch (all text, no images) carries the earlier keyframes' guidance; the T2I row (image
scale 1.0) would switch that guidance off. The image side defaults to BAGEL's 1024×1024 and is clamped to what the
checkpoint's ``latent_pos_embed`` table can address (128 px for ``tiny``).

Text defaults follow BAGEL's ``gen_text`` / think mode: greedy decoding (``do_sample=False``); when sampling,
temperature 0.3 and the full softmax (``top_p=1``, BAGEL has no nucleus). Script-specific limits bound every call so
that a random or misbehaving model always terminates: ``max_entry_tokens`` per description, ``max_new_tokens`` for
the open-ended calls (``write`` and ``extend`` without a shot count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

RenormType = Literal["global", "channel", "text_channel"]

__all__ = ["SamplingConfig"]


@dataclass(frozen=True)
class SamplingConfig:
    """Every knob of ``Director`` decoding and rendering.

    Attributes:
        do_sample: Sample script tokens (True) or take the argmax (False, BAGEL's default).
        temperature: Softmax temperature when sampling.
        top_p: Nucleus mass when sampling (1.0 = the full distribution, as BAGEL).
        max_new_tokens: Token budget of one open-ended call (``write``, ``extend`` without ``n_shots``); when it runs
            out the script ends at the last complete shot.
        max_entry_tokens: Most free tokens in one description; a longer one is cut and marked with ``…``.
        max_characters: Most global characters ``write`` may define (None = the tokenizer vocabulary's maximum).
        max_environments: Most global environments ``write`` may define (None = the vocabulary's maximum).
        max_shots: Most shots ``write`` / ``extend`` may write in one call (None = the vocabulary's maximum).
        use_cache: Decode with the KV cache (True) or recompute the whole sequence at every token (benchmarks).
        num_timesteps: N of the flow schedule (N−1 Euler steps).
        timestep_shift: s of shift(t) = s·t / (1 + (s−1)·t).
        cfg_text_scale: s_T; text guidance runs when > 1.
        cfg_img_scale: s_I; image guidance (the ī branch) runs when > 1 and s_T > 1.
        cfg_interval: Guidance is on for interval[0] < t ≤ interval[1] (shifted t).
        cfg_renorm_type: ``global`` / ``channel`` / ``text_channel``.
        cfg_renorm_min: Lower clamp of the renorm factor (1.0 disables renorm).
        batch_cfg: Run the CFG branches of a denoising step as one batched forward (same velocities as running them
            one by one, as BAGEL does; faster on a GPU). False = the sequential path.
        image_height: Keyframe height in pixels (multiple of 16 for BAGEL); clamped to the checkpoint's maximum.
        image_width: Keyframe width in pixels.
        vae_max_size: Longest side of a keyframe when it re-enters the context as a clean VAE block (BAGEL's VAE
            transform: 1024); clamped to the latent table. Use the training run's ``ImageSizes``.
        vae_min_size: Shortest side of that VAE copy (BAGEL: 512; clamped like ``vae_max_size``).
        vit_max_size: Longest side of the ViT copy (BAGEL: 980; clamped to the ViT position table).
        vit_min_size: Shortest side of the ViT copy (BAGEL: 224).
        seed: Seed of every random draw of one call (text sampling, initial noise, VAE posterior samples).
    """

    do_sample: bool = False
    temperature: float = 0.3
    top_p: float = 1.0
    max_new_tokens: int = 4096
    max_entry_tokens: int = 256
    max_characters: int | None = None
    max_environments: int | None = None
    max_shots: int | None = None
    use_cache: bool = True
    num_timesteps: int = 50
    timestep_shift: float = 3.0
    cfg_text_scale: float = 3.0
    cfg_img_scale: float = 1.5
    cfg_interval: tuple[float, float] = (0.4, 1.0)
    cfg_renorm_type: RenormType = "global"
    cfg_renorm_min: float = 0.0
    batch_cfg: bool = True
    image_height: int = 1024
    image_width: int = 1024
    vae_max_size: int = 1024
    vae_min_size: int = 512
    vit_max_size: int = 980
    vit_min_size: int = 224
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"SamplingConfig.temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        sizes = ("image_height", "image_width", "vae_max_size", "vae_min_size", "vit_max_size", "vit_min_size")
        for name in ("max_new_tokens", "max_entry_tokens", *sizes):
            if getattr(self, name) < 1:
                raise ValueError(f"SamplingConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_characters", "max_environments", "max_shots"):
            value = getattr(self, name)
            if value is not None and value < (1 if name == "max_shots" else 0):
                raise ValueError(f"SamplingConfig.{name} must be >= {1 if name == 'max_shots' else 0}, got {value}")
        if self.num_timesteps < 2:
            raise ValueError(f"SamplingConfig.num_timesteps must be >= 2, got {self.num_timesteps}")
        if self.timestep_shift <= 0:
            raise ValueError(f"SamplingConfig.timestep_shift must be > 0, got {self.timestep_shift}")
        if self.cfg_renorm_type not in ("global", "channel", "text_channel"):
            raise ValueError(
                f"SamplingConfig.cfg_renorm_type={self.cfg_renorm_type!r}; choose global, channel or text_channel"
            )
        low, high = self.cfg_interval
        if not 0 <= low <= high <= 1:
            raise ValueError(f"SamplingConfig.cfg_interval={self.cfg_interval} must satisfy 0 <= low <= high <= 1")

    def replace(self, **changes: Any) -> SamplingConfig:
        """A validated copy with some fields changed (``None`` values are ignored, so CLI defaults pass through)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "cfg_interval" in changes:
            changes["cfg_interval"] = tuple(changes["cfg_interval"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (provenance of generated outputs)."""
        out = asdict(self)
        out["cfg_interval"] = list(self.cfg_interval)
        return out

    @classmethod
    def for_training_run(cls, run: str | Path, **changes: Any) -> SamplingConfig:
        """BAGEL's defaults with the image sizes a training run used (``data.images`` of its ``config.yaml``).

        Keyframes then have the training side (``vae_max_size``) and re-enter the context resized exactly as
        training resized them; e.g. the bundled ``tiny-synthstory`` run trains on 64 px images while the tiny latent
        table allows 128. Explicit, because BAGEL's inference defaults (1024 / 512 / 980 / 224) are right for the
        released model.

        Args:
            run: The run directory (holding ``config.yaml``) or the ``config.yaml`` itself.
            **changes: Further fields to set.

        Raises:
            FileNotFoundError: No ``config.yaml``.
            ValueError: It has no ``data.images`` sizes.
        """
        import yaml

        path = Path(run)
        path = path if path.is_file() else path / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        images = (data.get("data") or {}).get("images") or {}
        keys = ("vae_max_size", "vae_min_size", "vit_max_size", "vit_min_size")
        if not all(isinstance(images.get(k), int) for k in keys):
            raise ValueError(f"{path}: data.images must give {keys}, got {images}")
        sizes = {k: images[k] for k in keys}
        side = images["vae_max_size"]
        return cls().replace(image_height=side, image_width=side, **sizes).replace(**changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SamplingConfig field(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        if "cfg_interval" in data:
            data["cfg_interval"] = tuple(data["cfg_interval"])
        return cls(**data)
