"""Teacher-forced diagnostics of a trained checkpoint on SynthStory's held-out set, with no rendering.

``diagnose(checkpoint_dir, data_dir)`` returns one ``DiagRow`` (story, metric, value, higher_is_better) per held-out
story and metric; ``write_rows`` merges them into the sweep's long CSV (``story,metric,family,higher_is_better,value``,
family ``diag``). Metrics (all prefixed ``diag.``):

- ``full_ce``, ``cont_ce``, ``cont_ce_nomarker``, ``ext_ce``, ``ext_ce_nomarker``: nats per UTF-8 byte of the target
  text of the views of ``unimage.eval.targets`` (the same names with ``_token``: nats per CE position); and
  ``cont_marker_delta`` / ``ext_marker_delta`` = marker CE − no-marker CE on the same target (nats/byte): what
  Pre-Context Script Splitting should lower;
- ``icl_ce``: nats/byte of the script text of the interleaved layout (keyframes in context, as ``icl`` trains it);
- ``img_mse`` and ``img_mse_reappear`` / ``img_mse_first`` / ``img_mse_bg``: the velocity MSE of the keyframes,
  teacher-forced in the interleaved layout at fixed timesteps with fixed noise, pixel-weighted over the regions of
  ``unimage.eval.regions`` (a story with no re-appearing character has no ``img_mse_reappear`` row);
- ``struct_<check>`` and ``struct_valid``: the checks of ``unimage.eval.structure`` on the shot the Director writes
  with ``continue_`` after the held-out script minus its last shot (greedy decoding, so deterministic); optionally
  ``struct_write_<check>`` on a script ``write`` writes from the story's prompt.

Everything runs through the training code: ``SegmentBuilder`` plans the samples, ``pack`` packs them, the
checkpoint's own autoencoder encodes the keyframes, and ``token_losses`` is ``UniMAGE.forward``'s loss per token.
Random draws (VAE posterior samples, the extension cut, the flow noise of each keyframe) are seeded by (seed, story,
shot), so two runs on the same checkpoint give identical rows, and checkpoints with the same latent shapes are
compared on the same noise: give every arm and training seed the same ``seed`` here.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unimage.data.atomic import atomic_write_text
from unimage.data.manifest import InterleavedSample
from unimage.data.packer import stable_seed
from unimage.data.segments import ImageSizes, SegmentBuilder, encode_groups, script_blocks
from unimage.eval.heldout import HeldOutStory, load_heldout
from unimage.eval.losses import token_losses
from unimage.eval.regions import REGIONS, region_masks, token_fractions
from unimage.eval.structure import CHECKS, check_script
from unimage.eval.targets import plan_text_targets
from unimage.model.packing import NoisyVaeImage, PackedBatch, Segment, pack

if TYPE_CHECKING:
    from unimage.infer.director import Director

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_TIMESTEPS",
    "FAMILY",
    "METRIC_OF_VIEW",
    "DiagRow",
    "ImageBatch",
    "diagnose",
    "image_rows",
    "plan_image_batch",
    "structure_rows",
    "text_rows",
    "training_image_sizes",
    "write_rows",
]

FAMILY = "diag"
CSV_COLUMNS = ("story", "metric", "family", "higher_is_better", "value")
#: Metric (after ``diag.``) of each text view; ``_token`` is appended for the per-token value.
METRIC_OF_VIEW = {
    "full": "full_ce",
    "cont": "cont_ce",
    "cont_nomarker": "cont_ce_nomarker",
    "ext": "ext_ce",
    "ext_nomarker": "ext_ce_nomarker",
}
#: Flow times (before the model's timestep shift, as ``NoisyVaeImage.timestep``) of the image diagnostics.
DEFAULT_TIMESTEPS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class DiagRow:
    """One value: ``story`` (held-out id), ``metric`` (``diag.*``), ``value``, ``higher_is_better``."""

    story: str
    metric: str
    value: float
    higher_is_better: bool


# ------------------------------------------------------------------------------------------------ loading


def training_image_sizes(checkpoint_dir: str | Path) -> ImageSizes | None:
    """The ``data.images`` sizes of the training run an exported checkpoint came from, or None if not found.

    Training exports to ``<run_dir>/checkpoints/export`` next to ``<run_dir>/config.yaml``; the keyframes must enter
    the context at the size training used, so the run's config is looked for in the checkpoint's parent folders.
    """
    import yaml

    path = Path(checkpoint_dir).resolve()
    for folder in [path, *path.parents][:4]:
        cfg = folder / "config.yaml"
        if not cfg.is_file():
            continue
        data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        images = (data.get("data") or {}).get("images") if isinstance(data, dict) else None
        if isinstance(images, dict) and images:
            return ImageSizes(**{k: int(v) for k, v in images.items()})
    return None


def _native_sizes(director: Director, stories: Sequence[HeldOutStory]) -> ImageSizes:
    """Keyframes at their own size (clamped to the checkpoint's position tables) when no training config is found."""
    cfg = director.model.config
    side = max((max(img.size) for s in stories for img in s.keyframes), default=64)
    vae_cap = cfg.max_latent_size * cfg.latent_downsample
    vit_cap = cfg.vit_max_num_patch_per_side * cfg.vit.patch_size
    vae, vit = min(side, vae_cap), min(side, vit_cap)
    return ImageSizes(vae_max_size=vae, vae_min_size=vae, vit_max_size=vit, vit_min_size=vit)


# ------------------------------------------------------------------------------------------------ text


def text_rows(director: Director, builder: SegmentBuilder, story: HeldOutStory, seed: int) -> list[DiagRow]:
    """CE rows of one story's text views.

    The no-marker views are the unmarked script itself, like the ``full`` view, with the loss on fewer blocks: their
    packed sequences are token for token the ``full`` one (checked), so their CE is read off the ``full`` forward at
    their own ``ce_indexes`` (causal attention: a position's logits do not depend on which positions carry loss).
    One forward per distinct sequence: three for a script with two shots or more.
    """
    model, device = director.model, director.device
    ce_by_name: dict[str, float] = {}
    rows = []
    full_ce: torch.Tensor | None = None  # [L] CE of the unmarked script at every CE position of the full view
    full_batch = None
    for target in plan_text_targets(story.story_id, story.script, builder, seed):
        batch = pack([target.planned.to_model_segments([])], model.config)
        if target.name in ("cont_nomarker", "ext_nomarker") and full_ce is not None and _same_tokens(batch, full_batch):
            ce = full_ce[batch.ce_indexes]
            if bool(torch.isnan(ce).any()):  # pragma: no cover - the full view's loss covers every other view's
                raise AssertionError(f"story {story.story_id}: {target.name} has CE positions the full view lacks")
        else:
            ce = token_losses(model, batch.to(device)).ce
            if target.name == "full":
                full_batch = batch
                full_ce = torch.full((batch.length,), float("nan"))
                full_ce[batch.ce_indexes] = ce
        total = float(ce.double().sum())
        per_byte = total / max(target.target_bytes, 1)
        ce_by_name[target.name] = per_byte
        metric = "diag." + METRIC_OF_VIEW[target.name]
        rows.append(DiagRow(story.story_id, metric, per_byte, False))
        rows.append(DiagRow(story.story_id, f"{metric}_token", total / max(len(ce), 1), False))
    for kind in ("cont", "ext"):
        if kind in ce_by_name:
            delta = ce_by_name[kind] - ce_by_name[f"{kind}_nomarker"]
            rows.append(DiagRow(story.story_id, f"diag.{kind}_marker_delta", delta, False))
    return rows


def _same_tokens(a: PackedBatch, b: PackedBatch | None) -> bool:
    """Same text tokens at the same places and RoPE positions (the CE labels then agree wherever both have one)."""
    return (
        b is not None
        and a.length == b.length
        and torch.equal(a.text_ids, b.text_ids)
        and torch.equal(a.text_indexes, b.text_indexes)
        and torch.equal(a.position_ids, b.position_ids)
    )


# ------------------------------------------------------------------------------------------------ images


@dataclass(frozen=True)
class ImageBatch:
    """The interleaved layout of one story with every keyframe's noisy block repeated once per fixed timestep.

    A noisy block is hidden from every other token and takes no RoPE id of its own (``unimage.model.packing``), so
    its copies see exactly the context the one training block sees and change nothing for any other token: one
    forward gives the loss at every timestep (``tests/unimage/eval`` checks it against one forward per timestep).

    Attributes:
        batch: The packed batch (on the CPU).
        noise: [Nl, Pl] ε: the same for every copy of a keyframe, drawn per (seed, story, shot), zero on clean tokens.
        shots: Per noisy VAE image, in batch order, its shot position.
        steps: Per noisy VAE image, the index of its timestep.
        images: Per noisy VAE image, its index among the batch's VAE images.
    """

    batch: PackedBatch
    noise: torch.Tensor
    shots: list[int]
    steps: list[int]
    images: list[int]


def plan_image_batch(
    director: Director,
    builder: SegmentBuilder,
    story: HeldOutStory,
    seed: int,
    timesteps: Sequence[float] = DEFAULT_TIMESTEPS,
) -> ImageBatch:
    """Plan, encode (the checkpoint's own autoencoder, posterior seeded by (seed, story)) and pack one story."""
    if director.vae is None:
        raise ValueError(f"{director.source}: the checkpoint has no autoencoder (ae.safetensors); image rows need it")
    if not timesteps:
        raise ValueError("plan_image_batch needs at least one timestep")
    vae, device = director.vae, director.device
    sample = InterleavedSample(story.story_id, story.text, story.script, story.keyframes)
    planned = builder.interleaved(sample, text_loss=True)
    generator = torch.Generator().manual_seed(stable_seed(seed, "diag-vae", story.story_id))

    def encode(x: torch.Tensor) -> torch.Tensor:
        return vae.encode(x.to(next(vae.parameters()).dtype), generator=generator)

    with torch.no_grad():
        latents = [t.float().cpu() for t in encode_groups(planned.vae_pixels, encode, device)]
    segments: list[Segment] = []
    for seg in planned.to_model_segments(latents):
        if isinstance(seg, NoisyVaeImage):
            segments += [replace(seg, timestep=float(t)) for t in timesteps]
        else:
            segments.append(seg)
    batch = pack([segments], director.model.config)
    images = [int(i) for i in torch.nonzero(batch.vae_image_noisy).flatten()]
    n_t = len(timesteps)
    if len(images) != n_t * len(story.script.shots):  # pragma: no cover - one noisy keyframe per shot
        raise AssertionError(f"story {story.story_id}: {len(images)} noisy images for {len(story.script.shots)} shots")
    shots, steps = [k // n_t for k in range(len(images))], [k % n_t for k in range(len(images))]
    noise = torch.zeros_like(batch.vae_latents)  # [Nl, Pl]
    for image, shot in zip(images, shots):
        rows = batch.vae_image_index == image
        g = torch.Generator().manual_seed(stable_seed(seed, "diag-noise", story.story_id, shot))
        noise[rows] = torch.randn(int(rows.sum()), noise.shape[1], generator=g)
    return ImageBatch(batch, noise, shots, steps, images)


def image_rows(
    director: Director,
    builder: SegmentBuilder,
    story: HeldOutStory,
    seed: int,
    timesteps: Sequence[float] = DEFAULT_TIMESTEPS,
) -> list[DiagRow]:
    """Image-loss rows (and the interleaved text CE) of one story, from one forward (``ImageBatch``)."""
    planned = plan_image_batch(director, builder, story, seed, timesteps)
    batch, device = planned.batch, director.device
    losses = token_losses(director.model, batch.to(device), noise=planned.noise.to(device))
    text_bytes = sum(len(text.encode("utf-8")) for kind, text in script_blocks(story.script) if kind != "user")
    rows = [DiagRow(story.story_id, "diag.icl_ce", float(losses.ce.double().sum()) / max(text_bytes, 1), False)]
    # Every copy has the same tokens, so the mean over all noisy tokens is the mean over timesteps of each one's.
    rows.append(DiagRow(story.story_id, "diag.img_mse", float(losses.mse.double().mean()), False))
    num = torch.zeros(len(REGIONS), dtype=torch.float64)
    den = torch.zeros(len(REGIONS), dtype=torch.float64)
    for image, shot in zip(planned.images, planned.shots):
        mse = losses.mse[losses.mse_image == image].double()  # [h·w] row-major
        frac = token_fractions(region_masks(story.truth, shot), batch.vae_image_sizes[image]).double()
        num += (frac * mse).sum(-1)
        den += frac.sum(-1)
    for r, region in enumerate(REGIONS):
        if den[r] > 0:
            rows.append(DiagRow(story.story_id, f"diag.img_mse_{region}", float(num[r] / den[r]), False))
    return rows


# ------------------------------------------------------------------------------------------------ structure


def structure_rows(director: Director, story: HeldOutStory, modes: Sequence[str] = ("continue",)) -> list[DiagRow]:
    """Structural-check rows of what the Director writes for one held-out story (greedy decoding).

    Modes: ``continue`` — ``continue_`` the script without its last shot by one shot, rows ``diag.struct_<check>``;
    ``write`` — ``write`` a script with as many shots from the story's prompt, rows ``diag.struct_write_<check>``
    (with ``cast``: the declared characters must be the story's characters the prompt names).
    """
    from unimage.script import serialize

    script = story.script
    rows: list[DiagRow] = []
    for mode in modes:
        if mode == "continue":
            if len(script.shots) < 2:
                continue
            cut = len(script.shots) - 1
            prefix = replace(
                script, shots=script.shots[:cut], markers=tuple(m for m in script.markers if m.position < cut)
            )
            report = check_script(serialize(director.continue_(prefix, n_shots=1)), first_shot=cut)
            report = replace(report, cast=None)  # the cast is the input's: continuing cannot declare characters
            prefix_name = "diag.struct_"
        elif mode == "write":
            if script.user_prompt is None:
                continue
            names = [str(c["key"]) for c in _truth_characters(story)]
            named = [n for n in names if n in script.user_prompt]
            written = director.write(script.user_prompt, n_shots=len(script.shots))
            report = check_script(serialize(written), prompt_names=named or None)
            prefix_name = "diag.struct_write_"
        else:
            raise ValueError(f"unknown structure mode {mode!r}; expected 'continue' or 'write'")
        rates = report.rates()
        for name in (*CHECKS, "valid"):
            value = rates.get(name)
            if value is not None:
                rows.append(DiagRow(story.story_id, prefix_name + name, float(value), True))
    return rows


def _truth_characters(story: HeldOutStory) -> list[dict[str, Any]]:
    chars = story.truth.get("characters", {})
    return [dict(v, key=k) for k, v in chars.items()]


# ------------------------------------------------------------------------------------------------ entry point


def diagnose(
    checkpoint_dir: str | Path,
    data_dir: str | Path,
    *,
    device: str = "cpu",
    max_stories: int | None = None,
    seed: int = 0,
    images: ImageSizes | None = None,
    timesteps: Sequence[float] = DEFAULT_TIMESTEPS,
    structure: Sequence[str] = ("continue",),
    structure_stories: int | None = 2,
    max_entry_tokens: int = 160,
) -> list[DiagRow]:
    """All diagnostics of one checkpoint on a SynthStory folder's held-out stories.

    Args:
        checkpoint_dir: A BAGEL-layout directory, or a run directory holding one (``Director.from_pretrained``).
        data_dir: The SynthStory folder the arm trained on (its ``eval/`` is the held-out set).
        device: Where the model runs.
        max_stories: Use only the first stories (None: all).
        seed: Seeds the extension cut, the VAE posterior samples and the flow noise.
        images: Keyframe sizes; None takes the training run's ``data.images`` (``training_image_sizes``), else the
            keyframes' own size.
        timesteps: Fixed flow times of the image loss; empty skips the image rows.
        structure: Director modes of the structural checks (``structure_rows``); empty skips them.
        structure_stories: Run the structural checks on the first this many stories only (None: all): decoding is
            the slow part: up to 2 · ``max_entry_tokens`` decoding steps per story.
        max_entry_tokens: Most tokens of one description the Director may write (a longer one is cut and fails the
            frame template; a SynthStory frame is at most about 130 byte-tokenizer tokens, its tags one token each).

    Returns:
        Rows in story order, metrics in the order of the module docstring.
    """
    from unimage.infer.config import SamplingConfig
    from unimage.infer.director import Director

    sampling = SamplingConfig(max_entry_tokens=max_entry_tokens, seed=seed)
    director = Director.from_pretrained(checkpoint_dir, config=sampling, device=device)
    director.model.eval()
    stories = load_heldout(data_dir, max_stories=max_stories, with_images=bool(timesteps))
    sizes = images or training_image_sizes(director.source) or _native_sizes(director, stories)
    builder = SegmentBuilder(director.model.config, director.tokenizer, sizes)
    rows: list[DiagRow] = []
    for k, story in enumerate(stories):
        rows += text_rows(director, builder, story, seed)
        if timesteps:
            rows += image_rows(director, builder, story, seed, timesteps)
        if structure and (structure_stories is None or k < structure_stories):
            rows += structure_rows(director, story, structure)
    return rows


# ------------------------------------------------------------------------------------------------ CSV


def write_rows(rows: Sequence[DiagRow], path: str | Path, **extra: Any) -> Path:
    """Merge ``rows`` into the long CSV at ``path`` (created with ``CSV_COLUMNS`` + ``extra`` columns if missing).

    The layout is ``ablations.longform``'s (``higher_is_better`` as 1 / 0); the sweep writes its per-arm file itself
    (``ablations.stages.diagnostic_rows``), this is for runs outside a sweep and for merging several runs into one.

    Rows already in the file with the same key (story, metric, family and every ``extra`` value) are replaced, so
    re-running a diagnosis does not double-count; every other row is kept as it was. The file is rewritten
    atomically.

    Args:
        rows: The diagnostics.
        path: The CSV.
        **extra: Constant columns to add to every row (e.g. ``arm="full", seed=1``); they must exist in the file.

    Raises:
        ValueError: The existing file lacks a required column, or a value is not finite.
    """
    p = Path(path)
    columns = [*CSV_COLUMNS, *(k for k in extra if k not in CSV_COLUMNS)]
    existing: list[dict[str, str]] = []
    if p.is_file() and p.stat().st_size:
        with p.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{p}: the CSV has columns {header}, missing {missing}; refusing to mix layouts")
            columns = header
            existing = list(reader)
    new = []
    for r in rows:
        if not math.isfinite(r.value):
            raise ValueError(f"{r.story}/{r.metric}: value {r.value} is not finite")
        row = dict.fromkeys(columns, "") | {str(k): str(v) for k, v in extra.items()}
        row |= {
            "story": r.story,
            "metric": r.metric,
            "family": FAMILY,
            "higher_is_better": str(int(r.higher_is_better)),
        }
        row["value"] = repr(float(r.value))
        new.append(row)
    key_cols = ["story", "metric", "family", *(str(k) for k in extra)]
    replaced = {tuple(r[c] for c in key_cols) for r in new}
    kept = [r for r in existing if tuple(r.get(c, "") for c in key_cols) not in replaced]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([*kept, *new])
    atomic_write_text(p, buf.getvalue())
    return p
