"""Flow matching for the renderer: time sampling, noising, x-prediction -> velocity loss, Euler sampling.

The network predicts clean frames (x-prediction) and knows nothing of what follows; this object owns the
schedule. Conventions (as in JiT):
    clean-time t in [0, 1]: t = 0 is pure noise, t = 1 is clean data;
    z_t = t * x + (1 - t) * noise,  true velocity v = dz/dt = x - noise = (x - z_t) / (1 - t);
    the network's x_hat becomes a velocity (x_hat - z_t) / max(1 - t, min_gap), and the loss is the mean
    squared error of velocities (the clamp keeps the weight of nearly clean samples finite).
Each framelet has its own time (diffusion forcing): t has shape (b, n) and covers the f frames of its
framelet.

The timestep schedule is the resolution shift of SD3 as the seed uses it: uniform times are moved towards
noise by shift = sqrt(dim / BASE_DIM), where dim is the number of values in a framelet. A larger framelet
keeps more signal at a given noise level, so it needs noisier times to learn the same coarse structure.
With noise level sigma = 1 - t, the shift maps sigma -> shift * sigma / (1 + (shift - 1) * sigma), so the
median noise level of sampled training times is shift / (1 + shift) (> 1/2 for shift > 1).

Legend: b batch, n framelets, f frames per framelet, H/W frame size, K sampling steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import repeat

from neural_render.model import RendererConfig

__all__ = ["BASE_DIM", "FlowMatching", "DiffusionLoss"]

BASE_DIM = 2 * 64 * 64 * 3
"""Values in a framelet at which the schedule is not shifted: two 64x64 RGB frames."""
MIN_GAP = 0.05
"""Smallest 1 - t used to turn an x-prediction into a velocity in the loss."""


def per_frame(t: torch.Tensor, frames: int) -> torch.Tensor:
    """Broadcast per-framelet times (b, n) over the frames of a video (b, n*f, H, W, k): (b, n*f, 1, 1, 1)."""
    return repeat(t, "b n -> b (n f) 1 1 1", f=frames // t.shape[1])


@dataclass(frozen=True)
class DiffusionLoss:
    """The loss of one batch and what produced it."""

    loss: torch.Tensor
    t: torch.Tensor
    hidden: dict


@dataclass(frozen=True)
class FlowMatching:
    """Flow-matching schedule, loss and Euler sampler for an x-predicting network."""

    shift: float = 1.0
    """Resolution shift of the timestep schedule (> 1 favours noise)."""
    min_gap: float = MIN_GAP
    """Clamp of 1 - t when turning x-predictions into velocities for the loss."""

    def __post_init__(self):
        if not self.shift > 0 or not 0 < self.min_gap < 1:
            raise ValueError(f"need shift > 0 and 0 < min_gap < 1, got {self}")

    @classmethod
    def for_config(cls, config: RendererConfig, base_dim: int = BASE_DIM) -> FlowMatching:
        """The schedule for a network: shift = sqrt(values per framelet / base_dim)."""
        dim = config.patch_frames * config.image_size**2 * config.channels
        return cls(shift=math.sqrt(dim / base_dim))

    def shift_time(self, t: torch.Tensor) -> torch.Tensor:
        """Move clean-times towards noise: sigma = 1 - t becomes shift*sigma / (1 + (shift-1)*sigma)."""
        sigma = 1.0 - t
        return 1.0 - self.shift * sigma / (1.0 + (self.shift - 1.0) * sigma)

    def sample_time(self, batch: int, framelets: int, *, generator=None, device=None) -> torch.Tensor:
        """Independent shifted training times for every framelet (diffusion forcing), (b, n)."""
        u = torch.rand(batch, framelets, generator=generator, device=device)
        return self.shift_time(u)

    def add_noise(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """z_t = t x + (1 - t) noise for videos (b, n*f, H, W, k) and times (b, n)."""
        tt = per_frame(t, x.shape[1]).to(x.dtype)
        return tt * x + (1.0 - tt) * noise

    def velocity(self, z: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Velocity (x - z_t) / max(1 - t, min_gap) implied by clean frames x (true or predicted)."""
        gap = (1.0 - per_frame(t, z.shape[1])).clamp(min=self.min_gap).to(z.dtype)
        return (x - z) / gap

    def loss(
        self,
        model: Callable,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        *,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        drop_cond: torch.Tensor | None = None,
        window: int | None = None,
        return_layers=(),
        look: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> DiffusionLoss:
        """Velocity loss of x-predictions for clean videos x (b, n*f, H, W, 3) in [-1, 1].

        `model` (a Renderer) is called as model(z, t, cond, drop_cond=, window=, return_layers=), and with
        look= when `look` (each clip's look row, -1 for none) is given; the framelets of `x` get independent
        times unless `t` (b, n) is given, fresh noise unless `noise` is. `weight` (b, n*f, H, W) weighs each
        pixel's squared error (None: all 1); the loss is the mean of the weighted squares.
        """
        if t is None:
            framelets = x.shape[1] // model.config.patch_frames
            t = self.sample_time(x.shape[0], framelets, generator=generator, device=x.device)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        z = self.add_noise(x, t, noise)
        looks = {} if look is None else {"look": look}
        out = model(z, t, cond, drop_cond=drop_cond, window=window, return_layers=return_layers, **looks)
        x_hat, hidden = out if isinstance(out, tuple) else (out, {})
        squares = (self.velocity(z, x_hat.float(), t) - self.velocity(z, x, t)).square()  # (b, n*f, H, W, 3)
        loss = squares.mean() if weight is None else (squares * weight[..., None]).mean()
        return DiffusionLoss(loss=loss, t=t, hidden=hidden)

    def time_grid(self, num_steps: int, device=None) -> torch.Tensor:
        """Sampling times (K + 1,) from 0 (noise) to 1 (clean), uniform then shifted like training."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        return self.shift_time(torch.linspace(0.0, 1.0, num_steps + 1, device=device, dtype=torch.float64))

    @staticmethod
    def euler_step(z: torch.Tensor, x_hat: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
        """One Euler step of dz/dt = (x_hat - z) / (1 - t) from t to t_next (< 1 - t never clamped here,
        so a last step to t_next = 1 lands exactly on x_hat)."""
        return z + ((t_next - t) / (1.0 - t)) * (x_hat - z)

    def sample(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        num_steps: int,
        framelets: int,
    ) -> torch.Tensor:
        """Euler-sample whole clips at once from noise (b, n*f, H, W, k): `denoise(z, t)` maps noisy
        frames and times (b, n) to x_hat; every framelet shares the time of the step."""
        z = noise
        grid = self.time_grid(num_steps).tolist()
        for t, t_next in zip(grid[:-1], grid[1:], strict=True):
            x_hat = denoise(z, torch.full((noise.shape[0], framelets), t, device=noise.device))
            z = self.euler_step(z, x_hat, t, t_next)
        return z
