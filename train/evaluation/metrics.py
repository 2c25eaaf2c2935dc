"""Figures of rendered frames: reconstruction, steadiness, tiles and framelet jumps.

Every function takes uint8 RGB frames (t, s, s, 3) (or one frame where it says so) and returns a float.

- `psnr`, `ar_loss`: reconstruction of real frames, raw;
- `colour_matched`: the rendered frames after a per-channel affine colour match to the real ones (least
  squares over the whole clip), to judge structure on a scene whose palette the renderer cannot know;
- `temporal_warp_error`: frame-to-frame steadiness along the condition flow (lower is steadier);
- `seam_ratio`: mean |gradient| of luminance across patch boundaries / elsewhere (about 1 for real footage,
  far above 1 for a picture made of visible tiles);
- `boundary_ratio`: mean |difference| of consecutive frames across a framelet boundary / within a framelet
  (about 1 when the picture does not jump as each new framelet starts);
- `blurred`, `detail_share`: the frames without their detail (a Gaussian blur), and the share of a rendering's
  squared error that lies in detail finer than such a blur: what PSNR can and cannot ask of a renderer that
  paints detail of its own (see `spokester_train.evaluation.evaluate`).

Legend: t frames, s side.
"""

from __future__ import annotations

import numpy as np

from spokester_train.data.extractors import warp_error

__all__ = [
    "MAX_PSNR",
    "WARP_BORDER",
    "ar_loss",
    "BLUR_SIGMAS",
    "DETAIL_SIGMA",
    "blurred",
    "boundary_ratio",
    "colour_matched",
    "detail_share",
    "luminance",
    "psnr",
    "seam_ratio",
    "temporal_warp_error",
]

MAX_PSNR = 100.0
"""PSNR of identical frames (instead of infinity, which JSON cannot hold)."""
WARP_BORDER = 2
"""Pixels at the frame's edge left out of the warp error."""
LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights of R, G, B."""
BLUR_SIGMAS = (2.0, 4.0, 8.0)
"""Gaussian sigmas (px) of the blurred real frames evaluation scores as references (`blurred`)."""
DETAIL_SIGMA = 4.0
"""Gaussian sigma (px) finer than which an error counts as detail (`detail_share`)."""


def psnr(generated: np.ndarray, real: np.ndarray) -> float:
    """Peak signal-to-noise ratio of uint8 frames in dB, over all of them, capped at MAX_PSNR."""
    mse = float(np.mean((generated.astype(np.float64) - real.astype(np.float64)) ** 2))
    return MAX_PSNR if mse <= 255.0**2 * 10 ** (-MAX_PSNR / 10) else float(10 * np.log10(255.0**2 / mse))


def ar_loss(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean squared error of uint8 frames mapped to [-1, 1]."""
    return float(np.mean(((generated.astype(np.float64) - real.astype(np.float64)) / 127.5) ** 2))


def colour_matched(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """`generated` (t, s, s, 3) with each channel mapped by the affine a x + b that best fits `real` (least
    squares over every pixel of the clip), rounded and clipped to uint8."""
    out = np.empty(generated.shape, np.uint8)
    for channel in range(generated.shape[-1]):
        x = generated[..., channel].astype(np.float64).ravel()
        y = real[..., channel].astype(np.float64).ravel()
        variance = x.var()
        slope = ((x - x.mean()) * (y - y.mean())).mean() / variance if variance > 0 else 0.0
        fitted = slope * (x - x.mean()) + y.mean()
        out[..., channel] = np.clip(np.round(fitted), 0, 255).reshape(generated.shape[:-1])
    return out


def temporal_warp_error(frames: np.ndarray, flow: np.ndarray) -> float:
    """Mean over t >= 1 of the warp error of frame t against frame t-1 moved by flow t (t, s, s, 2)."""
    errors = [warp_error(frames[t - 1], frames[t], flow[t], border=WARP_BORDER) for t in range(1, len(frames))]
    return float(np.nanmean(errors))


def luminance(frames: np.ndarray) -> np.ndarray:
    """Luma (..., s, s) float64 of RGB frames (..., s, s, 3)."""
    return frames.astype(np.float64) @ LUMA


def seam_ratio(frames: np.ndarray, patch: int) -> float:
    """Mean |luminance gradient| between neighbouring pixels on either side of a patch boundary (every
    `patch` pixels, across rows and columns) / the mean between all other neighbouring pixels."""
    y = luminance(frames)  # (..., s, s)
    across = [np.abs(np.diff(y, axis=axis)) for axis in (-1, -2)]  # differences between pixel k and k + 1
    steps = [np.arange(y.shape[axis] - 1) for axis in (-1, -2)]
    seams = [(k + 1) % patch == 0 for k in steps]  # pixel k + 1 starts a new patch
    on = np.concatenate([across[0][..., seams[0]].ravel(), across[1][..., seams[1], :].ravel()])
    off = np.concatenate([across[0][..., ~seams[0]].ravel(), across[1][..., ~seams[1], :].ravel()])
    return float(on.mean() / max(off.mean(), 1e-12))


def boundary_ratio(frames: np.ndarray, patch_frames: int) -> float:
    """Mean |difference| of consecutive frames where frame t starts a framelet (t a multiple of
    `patch_frames`) / where it does not; NaN for a clip without both kinds (fewer than 2 framelets)."""
    change = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))  # (t - 1,): frame t vs t - 1
    starts = np.arange(1, len(frames)) % patch_frames == 0
    if not starts.any() or starts.all():
        return float("nan")
    return float(change[starts].mean() / max(change[~starts].mean(), 1e-12))


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Frames (t, s, s, c) blurred by a Gaussian of `sigma` px (reflected borders), float64."""
    import torch

    from spokester_train.recipe.augment import gaussian_blur

    images = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float64)).permute(0, 3, 1, 2)
    return gaussian_blur(images, sigma).permute(0, 2, 3, 1).numpy()


def blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    """The frames blurred by a Gaussian of `sigma` px, rounded to uint8: the picture without its detail."""
    return np.clip(np.round(_blur(frames, sigma)), 0, 255).astype(np.uint8)


def detail_share(generated: np.ndarray, real: np.ndarray, sigma: float = DETAIL_SIGMA) -> float:
    """Share of the squared error of `generated` against `real` that a Gaussian blur of `sigma` px takes away
    from both: 1 - mse(blurred) / mse. Near 0 the error is coarse (layout, regional colour); near 1 it is
    detail (edges, texture). 0 for identical frames."""
    error = generated.astype(np.float64) - real.astype(np.float64)
    mse = float(np.mean(error**2))
    if mse == 0.0:
        return 0.0
    return float(1.0 - np.mean(_blur(error, sigma) ** 2) / mse)  # the blur is linear: blur(g) - blur(r)
