"""Condition augmentation: random degradations of the normalised depth+flow condition, per clip.

The game's depth and flow are exact and sharp; a video's pseudo-labels are blurry, noisy and quantised
differently. Training on randomly degraded conditions (down/up-scale, blur, posterize, noise, clip) keeps
the renderer from relying on the fine texture of either. Every random draw comes from the generators that
are passed in, so augmentation is reproducible and resumes exactly: the noise from the clip's own generator,
the choices (which degradations, how strong) from `choices`, which for a clip on a GPU is a CPU generator,
so that choosing never waits for the GPU (each choice is a Python number).

A car mask (the fourth channel of a renderer told where the cars are) is scaled and blurred with the rest, as a
coarse segmentation would be, but never posterized, noised or clamped: those mimic a depth or flow network's
errors, and the game's car mask, unlike its depth, is what the renderer is asked to trust as it is.

Legend: b clips, t frames, H/W frame size, k condition channels (3, or 4 with a car mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from neural_render.conditioning import CONDITION_CHANNELS
from spokester_train.recipe.config import Augment

__all__ = ["augment_clip", "gaussian_blur"]


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, device=generator.device))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of images (m, k, H, W) with reflected borders."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    k = images.shape[1]
    padded = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    images = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)
    padded = F.pad(images, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)


def _augment_clip(
    cond: torch.Tensor, config: Augment, clip: float, generator: torch.Generator, choices: torch.Generator
) -> torch.Tensor:
    """Degrade one clip's condition (t, k, H, W); each kind happens with probability `config.prob`."""

    def happens() -> bool:
        return float(torch.rand((), generator=choices, device=choices.device)) < config.prob

    height, width = cond.shape[-2:]
    if happens():  # down- then up-scale: coarse labels, as from a network at a lower resolution
        factor = _uniform(1.0, config.max_downscale, choices)
        small = (max(1, round(height / factor)), max(1, round(width / factor)))
        cond = F.interpolate(cond, size=small, mode="area")
        cond = F.interpolate(cond, size=(height, width), mode="bilinear", align_corners=False)
    if happens():
        cond = gaussian_blur(cond, _uniform(0.0, config.max_blur_sigma, choices))
    values, mask = cond[:, :CONDITION_CHANNELS], cond[:, CONDITION_CHANNELS:]  # (t, 3, H, W), (t, 0 or 1, H, W)
    if happens():  # posterize the [-clip, clip] range into a few levels
        low, high = config.posterize_levels
        levels = int(torch.randint(low, high + 1, (), generator=choices, device=choices.device))
        unit = (values + clip) / (2 * clip)
        values = torch.round(unit * (levels - 1)) / (levels - 1) * (2 * clip) - clip
    if happens():
        sigma = _uniform(0.0, config.max_noise, choices)
        noise = torch.randn(values.shape, generator=generator, device=values.device, dtype=values.dtype)
        values = values + sigma * noise
    if happens():
        bound = _uniform(min(config.min_clip, clip), clip, choices)
        values = values.clamp(-bound, bound)
    return torch.cat([values, mask], dim=1).clamp_(-clip, clip)


def augment_clip(
    cond: torch.Tensor,
    config: Augment,
    clip: float,
    generator: torch.Generator,
    choices: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomly degraded copy of one clip's normalised condition (t, H, W, k); values stay in [-clip, clip].
    `choices` draws the choices (None = `generator`, which then draws everything)."""
    if config.prob == 0:
        return cond
    choices = generator if choices is None else choices
    out = _augment_clip(rearrange(cond, "t h w k -> t k h w"), config, clip, generator, choices)
    return rearrange(out, "t k h w -> t h w k")
