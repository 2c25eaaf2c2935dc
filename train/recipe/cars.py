"""The recipe's two car options: cars that enter (`hide_cars`) and the loss's weight on cars (`car_weights`).

Cars that enter. In a video a car is nearly always in the framelets before the one being painted as well, so a
network can paint it by carrying the context's car on, and learns little from the car mask; in the game the context
is the renderer's own picture, which has no car until the renderer paints one from the mask. `hide_cars` makes a
clip whose cars enter at a given framelet: in every frame before it the car mask's pixels, grown by `GROW`, are
filled in from the picture around them (a normalised Gaussian blur of the rest), the mask there reads "no car", and
the loss leaves those pixels out (the fill is no picture to learn). From that framelet on the clip is as it was, so
the network sees a car appear where the mask says, with no car before it, and then stay. The teacher features of
the hidden frames are left as they are (iREPA aligns a hidden layer with them, not the picture).

The loss's weight on cars. A car covers about 1 % of a training frame, so its pixels weigh about 1 % of the loss;
`car_weights` weighs the pixels of the car mask `weight` times the rest.

Legend: t frames, H/W frame size, k condition channels (the car mask last).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from spokester_train.recipe.augment import gaussian_blur

__all__ = ["FILL_SIGMA", "GROW", "car_weights", "hide_cars"]

GROW = 2
"""Pixels the car mask is grown by on every side before it is hidden (a car's edge and shadow)."""

FILL_SIGMA = 6.0
"""Standard deviation in pixels of the blur whose normalised average of the picture around a car fills it in."""


def hide_cars(x: torch.Tensor, cond: torch.Tensor, enter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clip (x (t, H, W, 3) in [-1, 1], cond (t, H, W, k) with the car mask last, > 0 on a car) with its cars
    hidden from frames [0, enter): (x, cond, weight), copies, with weight (t, H, W) the loss's per-pixel weight,
    0 where a car was hidden and 1 elsewhere."""
    if not 0 <= enter <= x.shape[0]:
        raise ValueError(f"enter={enter}: need a frame in [0, {x.shape[0]}]")
    if cond.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"a condition {tuple(cond.shape)} for frames {tuple(x.shape)}")
    weight = torch.ones(x.shape[:-1], device=x.device, dtype=torch.float32)  # (t, H, W)
    x, cond = x.clone(), cond.clone()
    cars = (cond[:enter, ..., -1] > 0).float()  # (e, H, W)
    if enter == 0 or not cars.any():
        return x, cond, weight
    grown = F.max_pool2d(cars[:, None], 2 * GROW + 1, stride=1, padding=GROW)  # (e, 1, H, W)
    kept = 1.0 - grown
    frames = rearrange(x[:enter].float(), "e h w c -> e c h w")
    around = gaussian_blur(frames * kept, FILL_SIGMA)
    share = gaussian_blur(kept, FILL_SIGMA)  # how much of the blur's reach is picture, not car
    mean = (frames * kept).sum((2, 3), keepdim=True) / kept.sum((2, 3), keepdim=True).clamp(min=1.0)
    fill = torch.where(share > 1e-3, around / share.clamp(min=1e-3), mean)  # far from any picture: its mean colour
    filled = torch.where(grown > 0, fill, frames)
    x[:enter] = rearrange(filled, "e c h w -> e h w c").to(x.dtype)
    cond[:enter, ..., -1] = 0.0
    weight[:enter] = kept[:, 0]
    return x, cond, weight


def car_weights(cond: torch.Tensor, weight: float) -> torch.Tensor:
    """The loss's per-pixel weights (..., H, W) of a condition (..., H, W, k) with the car mask last: `weight` on
    its cars (> 0), 1 elsewhere."""
    return torch.where(cond[..., -1] > 0, float(weight), 1.0).float()
