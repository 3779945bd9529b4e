"""5-point face alignment to the FFHQ template at 112 px, as facexlib's `FaceRestoreHelper` does it (§4.1).

Official (Era B/C): facexlib 0.3.0 `FaceRestoreHelper(upscale_factor=1, face_size=112)`; `align_warp_face()`
estimates a similarity transform (rotation, uniform scale, translation) from the 5 landmarks (eyes, nose,
mouth corners) to the FFHQ 512-px template scaled by 112/512 with `cv2.estimateAffinePartial2D(method=LMEDS)`,
then `cv2.warpAffine` (bilinear, constant border (135, 133, 132)) to a 112×112 crop. No OpenCV here:

- the similarity is the closed-form least-squares (Umeyama, no reflection) fit. For 5 consistent landmarks it
  equals the LMEDS result; with a landmark outlier LMEDS may down-weight it and the two differ (approximation);
- the warp is `torch.nn.functional.grid_sample` on pixel-centre coordinates (OpenCV's convention: pixel i is at
  coordinate i), bilinear, and the constant border is made by warping `image − border` with zero padding and
  adding the border back, which blends edges with the border colour as OpenCV does. OpenCV interpolates in
  5-bit fixed point, so values can differ by ~1 grey level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: facexlib's standard 5 landmarks of an FFHQ-aligned 512×512 face (left eye, right eye, nose, mouth L, mouth R).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)
ALIGNED_SIZE = 112
BORDER_VALUE = (135, 133, 132)  # facexlib's grey border, in the channel order of the image it warps


def face_template(size: int = ALIGNED_SIZE) -> np.ndarray:
    """The FFHQ template scaled to a `size`-px crop: [5, 2] (x, y)."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping points `src` onto `dst` (Umeyama 1991, no reflection).

    Args:
        src: [P, 2] source points (landmarks in the image).
        dst: [P, 2] target points (the template).

    Returns:
        [2, 3] matrix M with dst ≈ M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching [P>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d.T @ s / len(src)  # [2, 2]
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign)) / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int, border: tuple[int, int, int]) -> np.ndarray:
    """`cv2.warpAffine(image, matrix, (size, size), INTER_LINEAR, BORDER_CONSTANT, border)` in torch.

    Args:
        image: [H, W, 3] uint8.
        matrix: [2, 3] forward map, output pixel = matrix @ (input pixel, 1).
        size: output side in pixels.
        border: constant border value per channel.

    Returns:
        [size, size, 3] uint8 (rounded to nearest like OpenCV's saturate_cast).
    """
    h, w = image.shape[:2]
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]  # output pixel → input pixel
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    src_x = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]  # [size, size]
    src_y = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    # grid_sample with align_corners=True maps -1/+1 to the centres of the first/last pixels.
    gx = 2.0 * src_x / max(w - 1, 1) - 1.0
    gy = 2.0 * src_y / max(h - 1, 1) - 1.0
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)).float()[None]  # [1, size, size, 2]
    fill = torch.tensor(border, dtype=torch.float32).view(1, 3, 1, 1)
    img = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1)[None]  # [1, 3, H, W]
    out = F.grid_sample(img - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + fill
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Warp `image` so its 5 `landmarks` land on the FFHQ template at `size` px (facexlib `align_warp_face`).

    Args:
        image: [H, W, 3] uint8 in any channel order (the official pipeline passes BGR; the border follows it).
        landmarks: [5, 2] (x, y) pixel coordinates, in template order.
        size: crop side (112 for the CIDS face ensemble).

    Returns:
        [size, size, 3] uint8 aligned crop, same channel order as `image`.
    """
    matrix = estimate_similarity(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), face_template(size))
    return warp_affine(image, matrix, size, BORDER_VALUE)
