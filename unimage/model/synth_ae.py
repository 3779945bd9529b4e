"""The "synth" autoencoder: a patch-PCA latent fitted on the training keyframes, for tiny CPU runs on SynthStory.

Why it exists: the tiny FLUX-architecture VAE is random and frozen (decode(encode(x)) ≈ 9.5 dB PSNR, latents with
std 0.12 against the flow's noise std 1), so no amount of training can render a SynthStory keyframe through it. A
linear transform fitted in well under a second is enough for flat-shaded synthetic images (issue 11: 4×4 patches / 16
channels reconstruct SynthStory at ~30.5 dB, 8×8 / 64 channels at ~31.9 dB held-out), and it is deterministic, so the
same keyframes give bit-identical weights.

The transform (p = ``patch_size``, Z = ``z_channels``, P = 3·p·p):

- encode: cut the image into non-overlapping p×p patches (a vector of P numbers in (channel, row, col) order, the
  layout of a conv weight), subtract the mean patch, project on the Z leading principal directions (orthonormal rows
  of ``basis``), divide by ``scale``: each channel's own standard deviation on the fit data (``scaling="channel"``:
  every latent channel has mean 0 and std 1 on the training keyframes) or one common number (``"global"``: mean 0
  and variance 1 averaged over channels), so the latents match the flow's N(0, 1) noise;
- decode: the exact inverse on the kept subspace (multiply by ``scale``, back-project, add the mean): a strided conv
  and its transposed conv.

The latent grid is H/p × W/p; with the model's ``latent_patch_size`` q one LLM token covers p·q pixels per side, so
``ModelConfig.latent_downsample`` = p·q (8·2 = 16, as FLUX's 8·2). The latent has no posterior: ``encode`` ignores the
generator and ``sample`` arguments that the FLUX path takes.

Weights are saved as ``synth_ae.safetensors`` (keys ``mean`` [3, p, p], ``basis`` [Z, 3, p, p], ``scale`` [Z]) with the
fit record (image counts, held-out PSNR, data fingerprint) in the safetensors metadata and in ``config.json``.

Shape letters: B batch, H×W pixels, Z latent channels, h×w = H/p × W/p latent grid, N patches, P = 3·p·p.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fsio

__all__ = [
    "SYNTH_AE_FILE",
    "SynthAE",
    "SynthAEConfig",
    "fit_synth_ae",
    "infer_synth_ae_config",
    "reconstruction_psnr",
]

SYNTH_AE_FILE = "synth_ae.safetensors"
_KIND = "synth-patch-pca"


@dataclass(frozen=True)
class SynthAEConfig:
    """Shape of the patch-PCA autoencoder and how its latents are scaled.

    Attributes:
        patch_size: p, pixels per latent pixel per side (the downsampling factor).
        z_channels: Z, principal components kept (at most 3·p·p).
        in_channels: Image channels.
        scaling: How the fit scales the components. ``channel``: each by its own standard deviation, so every latent
            channel has variance 1 (the flow's MSE then weighs every component alike, the faint high-frequency ones
            as much as the sky colour); ``global``: all by one number, the root-mean-square standard deviation, so the
            latent has variance 1 on average over channels (matching the flow's noise overall) and the leading
            components keep their larger share of the loss. Used by the fit only (the weights hold the scales).
    """

    patch_size: int = 8
    z_channels: int = 64
    in_channels: int = 3
    scaling: Literal["channel", "global"] = "channel"

    def __post_init__(self) -> None:
        if self.patch_size <= 0 or self.in_channels <= 0:
            raise ValueError(
                f"SynthAEConfig: patch_size={self.patch_size}, in_channels={self.in_channels} must be positive"
            )
        if not 0 < self.z_channels <= self.patch_dim:
            raise ValueError(
                f"SynthAEConfig.z_channels={self.z_channels} must be in [1, {self.patch_dim}] "
                f"(= in_channels·patch_size², the numbers in one patch)"
            )
        if self.scaling not in ("channel", "global"):
            raise ValueError(f"SynthAEConfig.scaling={self.scaling!r}; choose 'channel' or 'global'")

    def same_shape(self, other: SynthAEConfig) -> bool:
        """Equal patch size, channel counts (``scaling`` only matters to the fit)."""
        return (self.patch_size, self.z_channels, self.in_channels) == (
            other.patch_size,
            other.z_channels,
            other.in_channels,
        )

    @property
    def downsample(self) -> int:
        """Pixels per latent pixel per side (= ``patch_size``)."""
        return self.patch_size

    @property
    def patch_dim(self) -> int:
        """P = in_channels · patch_size²."""
        return self.in_channels * self.patch_size**2

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], source: str = "synth_ae config") -> SynthAEConfig:
        """Build from a dict (unknown keys, such as the ``fit`` record, are ignored).

        Raises:
            ValueError: A value is invalid; the message names ``source``.
        """
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


def infer_synth_ae_config(
    shapes: dict[str, tuple[int, ...]], source: str = SYNTH_AE_FILE, base: SynthAEConfig | None = None
) -> SynthAEConfig:
    """The config implied by the tensor shapes of ``synth_ae.safetensors`` (``scaling`` from ``base``).

    Raises:
        ValueError: Keys or shapes are not those of a synth autoencoder (the message lists them).
    """
    expected = {"mean", "basis", "scale"}
    if set(shapes) != expected:
        raise ValueError(
            f"{source}: keys {sorted(shapes)} are not a synth autoencoder's {sorted(expected)} "
            f"(missing {sorted(expected - set(shapes))}, unexpected {sorted(set(shapes) - expected)})"
        )
    basis = shapes["basis"]
    if len(basis) != 4 or basis[2] != basis[3]:
        raise ValueError(f"{source}: basis has shape {basis}, expected [Z, C, p, p]")
    z, c, p, _ = basis
    shape = {"patch_size": p, "z_channels": z, "in_channels": c}
    config = SynthAEConfig.from_json_dict({**(base or SynthAEConfig()).to_json_dict(), **shape}, source=source)
    want = {"mean": (c, p, p), "basis": (z, c, p, p), "scale": (z,)}
    bad = [f"{k}: {shapes[k]} != {v}" for k, v in want.items() if tuple(shapes[k]) != v]
    if bad:
        raise ValueError(f"{source}: shape mismatch: " + "; ".join(bad))
    return config


########################################################################################################################
# The module
########################################################################################################################


class SynthAE(nn.Module):
    """Patch PCA with unit-variance latents; a drop-in for ``FluxVAE`` (``encode`` / ``decode``).

    The weights are frozen parameters (not buffers) so that callers that read ``next(vae.parameters())`` for the device
    and dtype, and ``requires_grad_`` / the Lightning checkpoint, treat it like the FLUX VAE. A freshly built module is
    *unfitted* (NaN weights, ``is_fitted`` False) and refuses to encode or decode until ``fit_synth_ae`` fills it or a
    state dict (a Lightning checkpoint, ``synth_ae.safetensors``) is loaded into it.

    Attributes:
        config: The shape.
        fit_info: The fit record (image counts, PSNR, data fingerprint); kept in the state dict as extra state.
    """

    def __init__(self, config: SynthAEConfig) -> None:
        super().__init__()
        self.config = config
        c, p, z = config.in_channels, config.patch_size, config.z_channels
        nan = float("nan")
        self.mean = nn.Parameter(torch.full((c, p, p), nan), requires_grad=False)  # mean patch
        self.basis = nn.Parameter(torch.full((z, c, p, p), nan), requires_grad=False)  # orthonormal rows
        self.scale = nn.Parameter(torch.full((z,), nan), requires_grad=False)  # std of each component
        self.fit_info: dict[str, Any] = {}

    # ---------------------------------------------------------------- state

    @property
    def is_fitted(self) -> bool:
        """Weights are finite and every scale positive (False until fitted or loaded)."""
        return bool(torch.isfinite(self.basis).all() and torch.isfinite(self.mean).all() and (self.scale > 0).all())

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                "SynthAE is not fitted: call fit_synth_ae(...) or load its weights (synth_ae.safetensors / a "
                "training checkpoint) before encoding or decoding"
            )

    def get_extra_state(self) -> dict[str, Any]:
        """The fit record travels with the state dict (Lightning checkpoints, FSDP gathers)."""
        return {"fit": dict(self.fit_info)}

    def set_extra_state(self, state: Any) -> None:
        self.fit_info = dict(state.get("fit", {})) if isinstance(state, dict) else {}

    def tensors(self) -> dict[str, Tensor]:
        """The three weight tensors under their file keys."""
        return {"mean": self.mean.detach(), "basis": self.basis.detach(), "scale": self.scale.detach()}

    def load_tensors(self, tensors: dict[str, Tensor], source: str = SYNTH_AE_FILE) -> None:
        """Copy weights in (strict: keys and shapes must match this config).

        Raises:
            ValueError: Keys or shapes differ (named with ``source``).
        """
        got = infer_synth_ae_config({k: tuple(v.shape) for k, v in tensors.items()}, source, self.config)
        if not got.same_shape(self.config):
            raise ValueError(f"{source}: holds a {got}, this module is a {self.config}")
        with torch.no_grad():
            for name, t in tensors.items():
                getattr(self, name).copy_(t)

    def save(self, path: str | Path) -> Path:
        """Write ``synth_ae.safetensors`` atomically, the fit record in its metadata.

        Raises:
            RuntimeError: The module is not fitted.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        path = Path(path)
        meta = {"format": "pt", "kind": _KIND, "config": json.dumps(self.config.to_json_dict())}
        meta["fit"] = json.dumps(self.fit_info, sort_keys=True)
        with fsio.atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors().items()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def from_safetensors(cls, path: str | Path, device: str | torch.device = "cpu") -> SynthAE:
        """Load ``synth_ae.safetensors`` (config from the tensor shapes, fit record from the metadata).

        Raises:
            ValueError: Not a synth autoencoder file (the message names the file and the problem).
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as handle:
                meta = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a readable safetensors file: {err}") from err
        if meta.get("kind", _KIND) != _KIND:
            raise ValueError(f"{path}: metadata kind={meta.get('kind')!r}, expected {_KIND!r}")
        try:
            base = SynthAEConfig.from_json_dict(json.loads(meta.get("config", "{}")), source=str(path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: config metadata is not JSON: {err}") from err
        config = infer_synth_ae_config({k: tuple(v.shape) for k, v in tensors.items()}, str(path), base)
        with torch.device(device):
            ae = cls(config)
        ae.load_tensors(tensors, source=str(path))
        try:
            ae.fit_info = json.loads(meta.get("fit", "{}"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: fit metadata is not JSON: {err}") from err
        return ae.eval()

    # ---------------------------------------------------------------- latent maths

    def encode(self, images: Tensor, generator: torch.Generator | None = None, sample: bool = True) -> Tensor:
        """[B, 3, H, W] pixels in [-1, 1] → [B, Z, H/p, W/p] latents with unit variance per channel.

        Args:
            images: Pixels; H and W multiples of ``patch_size``.
            generator: Ignored (the transform is deterministic); accepted so callers of ``FluxVAE`` work unchanged.
            sample: Ignored, as ``generator``.

        Raises:
            ValueError: Bad image shape.
            RuntimeError: Not fitted.
        """
        p = self.config.patch_size
        if (
            images.ndim != 4
            or images.shape[1] != self.config.in_channels
            or images.shape[-1] % p
            or images.shape[-2] % p
        ):
            raise ValueError(
                f"images must be [B, {self.config.in_channels}, H, W] with H, W multiples of {p}, "
                f"got {tuple(images.shape)}"
            )
        self._check_fitted()
        x = images.to(self.basis.dtype) - self.mean.repeat(1, images.shape[-2] // p, images.shape[-1] // p)
        z = F.conv2d(x, self.basis, stride=p)  # [B, Z, h, w] coefficients on the orthonormal basis
        return z / self.scale[:, None, None]

    def decode(self, latents: Tensor) -> Tensor:
        """[B, Z, h, w] latents → [B, 3, p·h, p·w] pixels in (about) [-1, 1], unclamped.

        Raises:
            ValueError: Wrong channel count.
            RuntimeError: Not fitted.
        """
        if latents.ndim != 4 or latents.shape[1] != self.config.z_channels:
            raise ValueError(f"latents must be [B, {self.config.z_channels}, h, w], got {tuple(latents.shape)}")
        self._check_fitted()
        z = latents.to(self.basis.dtype) * self.scale[:, None, None]
        x = F.conv_transpose2d(z, self.basis, stride=self.config.patch_size)  # [B, 3, H, W]
        return x + self.mean.repeat(1, latents.shape[-2], latents.shape[-1])


########################################################################################################################
# Fitting
########################################################################################################################


def _patches(image: Tensor, p: int) -> Tensor:
    """[C, H, W] → [N, C·p·p] non-overlapping patches, each in (channel, row, col) order (a conv weight's layout)."""
    return F.unfold(image[None].double(), kernel_size=p, stride=p)[0].T


def _check_images(images: Sequence[Tensor], config: SynthAEConfig, what: str) -> None:
    if not images:
        raise ValueError(f"{what}: no images")
    p, c = config.patch_size, config.in_channels
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[0] != c or im.shape[1] % p or im.shape[2] % p:
            raise ValueError(
                f"{what}: image {i} has shape {tuple(im.shape)}, expected [{c}, H, W] with H, W multiples of {p}"
            )
        if not bool(torch.isfinite(im).all()):
            raise ValueError(f"{what}: image {i} has non-finite pixels")


def fit_synth_ae(images: Sequence[Tensor], config: SynthAEConfig | None = None) -> SynthAE:
    """Fit the patch PCA on ``images`` (each [3, H, W] in [-1, 1]; sizes may differ), scaled as ``config.scaling``.

    Computed in float64 in a fixed order (mean, then the centred covariance summed image by image) on ONE intra-op
    thread (BLAS reductions and LAPACK's eigensolver split work differently with more threads; measured: 2 threads
    changed basis bits), then rounded to float32, so the same images give bit-identical weights on a machine. Eigenvector signs are fixed (the largest-magnitude entry of
    each basis row is positive). A component with (numerically) zero variance keeps a tiny positive scale: its latent is
    0 on the fit data and its decoded contribution vanishes.

    Raises:
        ValueError: No images, a bad shape, non-finite pixels, or fewer patches than ``z_channels``.
    """
    config = config or SynthAEConfig()
    _check_images(images, config, "fit_synth_ae")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(images, config)
    finally:
        torch.set_num_threads(threads)


def _fit(images: Sequence[Tensor], config: SynthAEConfig) -> SynthAE:
    p, P, Z = config.patch_size, config.patch_dim, config.z_channels
    n = sum((im.shape[1] // p) * (im.shape[2] // p) for im in images)
    if n < Z:
        raise ValueError(f"fit_synth_ae: {n} patches cannot determine {Z} components (need at least {Z})")
    total = torch.zeros(P, dtype=torch.float64)
    for im in images:
        total += _patches(im, p).sum(0)
    mean = total / n  # [P]
    cov = torch.zeros(P, P, dtype=torch.float64)
    for im in images:
        d = _patches(im, p) - mean  # [N_i, P]
        cov += d.T @ d
    cov /= n
    all_evals, evecs = torch.linalg.eigh(cov)  # ascending
    all_evals = all_evals.clamp_min(0.0)
    evals, evecs = all_evals.flip(0)[:Z], evecs.flip(1)[:, :Z].T  # [Z], [Z, P] leading first
    rows = torch.arange(Z)
    signs = torch.sign(evecs[rows, evecs.abs().argmax(1)])
    evecs = evecs * signs[:, None]
    std = evals.sqrt() if config.scaling == "channel" else evals.mean().sqrt().expand(Z).clone()
    std = std.clamp_min(max(float(std[0]) * 1e-6, 1e-12))
    ae = SynthAE(config)
    c = config.in_channels
    ae.load_tensors(
        {
            "mean": mean.view(c, p, p).float(),
            "basis": evecs.reshape(Z, c, p, p).float(),
            "scale": std.float(),
        },
        source="fit_synth_ae",
    )
    kept = float(evals.sum() / all_evals.sum().clamp_min(1e-30))
    ae.fit_info = {
        "num_fit_images": len(images),
        "num_fit_patches": n,
        "variance_kept": kept,
        "scaling": config.scaling,
    }
    return ae.eval()


@torch.no_grad()
def reconstruction_psnr(ae: nn.Module, images: Sequence[Tensor], batch_size: int = 64) -> float:
    """PSNR (dB) of decode(encode(x)) against x over all pixels of ``images`` pooled (as torchmetrics' PSNR with
    ``data_range=2``): 10·log10(2² / MSE); the reconstruction is clamped to [-1, 1], as an image would be.

    Args:
        ae: Anything with ``encode`` / ``decode`` (``SynthAE``, ``FluxVAE``); FLUX uses its posterior mean.
        images: [3, H, W] pixels in [-1, 1]; grouped by size into batches.
        batch_size: Images per encode call.

    Raises:
        ValueError: No images.
    """
    if not images:
        raise ValueError("reconstruction_psnr: no images")
    param = next(ae.parameters())
    by_size: dict[tuple[int, ...], list[Tensor]] = {}
    for im in images:
        by_size.setdefault(tuple(im.shape), []).append(im)
    se, count = 0.0, 0
    for group in by_size.values():
        for i in range(0, len(group), batch_size):
            x = torch.stack(group[i : i + batch_size]).to(param.device, param.dtype)
            rec = ae.decode(ae.encode(x, sample=False)).clamp(-1, 1)  # type: ignore[operator]
            se += float(((rec.double() - x.double()) ** 2).sum())
            count += x.numel()
    mse = se / count
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)
