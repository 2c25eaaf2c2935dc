"""iREPA: align a hidden layer of the denoiser with a frozen teacher's patch features.

The teacher's features (stored per frame in the label store, e.g. DeepLab's 33 x 33 x 128) are normalised
per sample over all its tokens (every frame and grid cell of the clip: zero mean, unit std per channel),
which keeps their spatial structure and drops their global offset. A one-layer 3D convolution maps the denoiser's
tokens, laid out as a (framelet, row, column) volume, to the teacher's channels for each frame of the
framelet; bilinear resampling puts them on the teacher's grid. The loss is 1 - cosine similarity,
averaged over every token.

Legend: b clips, n framelets, f frames per framelet, t = n*f frames, y/x token rows/cols, s = y*x,
d width, c teacher channels, gh/gw teacher grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["TEACHER_CHANNELS", "TEACHER_GRID", "Projector", "normalise_teacher", "irepa_loss"]

EPS = 1e-6
TEACHER_CHANNELS = 128
"""Channels of the default teacher's features (DeepLab's concat_projection)."""
TEACHER_GRID = (33, 33)
"""Grid of the default teacher's features per frame."""


class Projector(nn.Module):
    """One 3D convolution from denoiser tokens (b, n, s, d) to teacher features (b, t, gh, gw, c)."""

    def __init__(self, width: int, frames_per_framelet: int, teacher_channels: int, kernel: int = 3):
        super().__init__()
        self.frames = frames_per_framelet
        self.channels = teacher_channels
        self.conv = nn.Conv3d(width, frames_per_framelet * teacher_channels, kernel, padding=kernel // 2)

    def forward(self, hidden: torch.Tensor, grid: tuple[int, int], teacher_grid: tuple[int, int]) -> torch.Tensor:
        rows, cols = grid
        b = hidden.shape[0]
        volume = rearrange(hidden, "b n (y x) d -> b d n y x", y=rows, x=cols)
        out = self.conv(volume)  # (b, f*c, n, y, x)
        out = rearrange(out, "b (f c) n y x -> (b n f) c y x", f=self.frames)
        out = F.interpolate(out, size=teacher_grid, mode="bilinear", align_corners=False)  # (b*t, c, gh, gw)
        return rearrange(out, "(b t) c gh gw -> b t gh gw c", b=b)


def normalise_teacher(features: torch.Tensor) -> torch.Tensor:
    """Teacher features (b, t, gh, gw, c) standardised per sample and channel over all t*gh*gw tokens."""
    tokens = rearrange(features.float(), "b t gh gw c -> b (t gh gw) c")
    mean = tokens.mean(dim=1, keepdim=True)
    std = tokens.std(dim=1, keepdim=True)
    return ((tokens - mean) / (std + EPS)).reshape(features.shape)


def irepa_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity of projected (b, t, gh, gw, c) and normalised teacher features."""
    if projected.shape != teacher.shape:
        raise ValueError(f"projected {tuple(projected.shape)} and teacher {tuple(teacher.shape)} differ in shape")
    return 1.0 - F.cosine_similarity(projected.float(), teacher.float(), dim=-1, eps=EPS).mean()
