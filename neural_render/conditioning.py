"""Condition normalisation: the one home of every constant that turns depth and flow into network inputs.

Inputs, for every source:
    depth: inverse depth (N, ..., 1), >= 0, larger = nearer, 0 = sky. The game gives metres^-1; a video's
        depth network gives relative inverse depth of unknown scale.
    flow: optical flow (N, ..., 2) in pixels per frame, x right and y down, position now minus position
        one frame earlier.
Output: (N, ..., 3) float32 = (depth, flow x, flow y), each standardised with its source's statistics and
clipped to [-clip, clip].

Depth is raised to the source's floor (so sky and anything farther than the floor read the same), then
with `log_depth` (the default) its logarithm is taken: an unknown scale of relative inverse depth becomes
an additive offset that the source's mean removes, so the video's and the game's depth land on one scale.
Every value is clamped to mean +- clip * std BEFORE it is standardised, so any finite or infinite input
(a camera inside a car: inverse depth 1e6, flow 1e6) gives bounded values and never overflows; NaNs read
as 0 (sky, no motion).

The statistics live in the checkpoint (`to_dict` / `from_dict`), never as constants elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

__all__ = ["CONDITION_CHANNELS", "SourceStats", "ConditionStats", "fit_source_stats"]

CONDITION_CHANNELS = 3
"""Channels of a normalised condition: depth, flow x, flow y."""
DEFAULT_CLIP = 4.0
"""Normalised values are clipped to [-clip, clip] standard deviations."""
DEFAULT_FLOOR_FRACTION = 1e-2
"""When fitting, the depth floor is this fraction of the 99th percentile of positive inverse depth."""
UNIT_DEPTH_FLOOR = 1e-2
"""Depth floor of the identity statistics, in the game's metres^-1 (100 m)."""
MIN_STD = 1e-6
"""Smallest standard deviation a fit may record, so that a constant stream never divides by zero."""


@dataclass(frozen=True)
class SourceStats:
    """Statistics of one condition source (e.g. "game", "video"), in that source's units."""

    depth_floor: float
    """Inverse depth below this (sky, very far) is raised to it before the transform."""
    depth_mean: float
    """Mean of the transformed depth (its log with `log_depth`)."""
    depth_std: float
    """Standard deviation of the transformed depth."""
    flow_mean: tuple[float, float]
    """Mean flow (x, y) in pixels per frame."""
    flow_std: tuple[float, float]
    """Standard deviation of the flow (x, y) in pixels per frame."""
    frames: int = 0
    """Number of frames the statistics were fitted on (0 = set by hand)."""

    def __post_init__(self):
        values = (self.depth_floor, self.depth_mean, self.depth_std, *self.flow_mean, *self.flow_std)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"condition statistics must be finite: {self}")
        if self.depth_floor <= 0 or self.depth_std <= 0 or min(self.flow_std) <= 0:
            raise ValueError(f"depth floor and standard deviations must be positive: {self}")
        object.__setattr__(self, "flow_mean", tuple(float(v) for v in self.flow_mean))
        object.__setattr__(self, "flow_std", tuple(float(v) for v in self.flow_std))


def _transform_depth(depth, floor: float, log_depth: bool):
    """Raise inverse depth (NaN read as 0) to the floor and take its log if asked; numpy or torch."""
    if isinstance(depth, torch.Tensor):
        depth = torch.nan_to_num(depth, nan=0.0, neginf=0.0).clamp(min=floor)
        return depth.log() if log_depth else depth
    depth = np.maximum(np.nan_to_num(depth, nan=0.0, neginf=0.0), floor)
    return np.log(depth) if log_depth else depth


def _standardise(value: torch.Tensor, mean, std, clip: float) -> torch.Tensor:
    """Clamp to mean +- clip*std first (so nothing overflows), then standardise to [-clip, clip]."""
    mean = torch.as_tensor(mean, dtype=value.dtype, device=value.device)
    std = torch.as_tensor(std, dtype=value.dtype, device=value.device)
    value = torch.minimum(torch.maximum(value, mean - clip * std), mean + clip * std)
    return ((value - mean) / std).clamp(-clip, clip)  # the clamp again only fixes rounding at the bounds


def fit_source_stats(
    depth: np.ndarray,
    flow: np.ndarray,
    *,
    log_depth: bool = True,
    floor_fraction: float = DEFAULT_FLOOR_FRACTION,
    chunk: int = 64,
) -> SourceStats:
    """Fit one source's statistics from depth (N, H, W, 1) and flow (N, H, W, 2) arrays (memmaps welcome:
    they are read `chunk` frames at a time, with sums in float64)."""
    if depth.shape[:-1] != flow.shape[:-1] or depth.shape[-1] != 1 or flow.shape[-1] != 2:
        raise ValueError(f"need depth (N, H, W, 1) and flow (N, H, W, 2), got {depth.shape} and {flow.shape}")
    step = max(1, depth.shape[0] // 16)
    sample = np.nan_to_num(np.asarray(depth[::step], dtype=np.float64))
    positive = sample[sample > 0]
    if positive.size == 0:
        raise ValueError("cannot fit depth statistics: no positive inverse depth in the sample")
    floor = floor_fraction * float(np.percentile(positive, 99))

    sums = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for start in range(0, depth.shape[0], chunk):
        d = _transform_depth(np.asarray(depth[start : start + chunk], dtype=np.float64), floor, log_depth)
        v = np.nan_to_num(np.asarray(flow[start : start + chunk], dtype=np.float64))
        values = np.concatenate([d, v], axis=-1).reshape(-1, 3)
        sums += values.sum(axis=0)
        squares += np.square(values).sum(axis=0)
        count += values.shape[0]
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std = np.maximum(std, MIN_STD)
    return SourceStats(
        depth_floor=floor,
        depth_mean=float(mean[0]),
        depth_std=float(std[0]),
        flow_mean=(float(mean[1]), float(mean[2])),
        flow_std=(float(std[1]), float(std[2])),
        frames=int(depth.shape[0]),
    )


@dataclass(frozen=True)
class ConditionStats:
    """How conditions are normalised: the shared transform and each source's statistics."""

    sources: Mapping[str, SourceStats] = field(default_factory=dict)
    """Statistics by source name, e.g. {"game": ..., "video": ...}."""
    log_depth: bool = True
    """Take the log of (floored) inverse depth before standardising."""
    clip: float = DEFAULT_CLIP
    """Normalised values are clipped to [-clip, clip]."""

    def __post_init__(self):
        if not self.clip > 0:
            raise ValueError(f"clip must be positive, got {self.clip}")
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    @classmethod
    def unit(cls, source: str = "game") -> ConditionStats:
        """Identity statistics (mean 0, std 1, floor 1/100 m): for untrained models and tests only."""
        stats = SourceStats(
            depth_floor=UNIT_DEPTH_FLOOR,
            depth_mean=0.0,
            depth_std=1.0,
            flow_mean=(0.0, 0.0),
            flow_std=(1.0, 1.0),
        )
        return cls(sources={source: stats})

    @classmethod
    def fit(
        cls,
        arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
        *,
        log_depth: bool = True,
        clip: float = DEFAULT_CLIP,
    ) -> ConditionStats:
        """Fit statistics for each source from {name: (depth (N, H, W, 1), flow (N, H, W, 2))}."""
        fitted = {name: fit_source_stats(d, v, log_depth=log_depth) for name, (d, v) in arrays.items()}
        return cls(sources=fitted, log_depth=log_depth, clip=clip)

    def with_source(self, name: str, depth: np.ndarray, flow: np.ndarray) -> ConditionStats:
        """A copy with `name`'s statistics fitted (or refitted) from arrays, under this transform."""
        fitted = fit_source_stats(depth, flow, log_depth=self.log_depth)
        return dataclasses.replace(self, sources={**self.sources, name: fitted})

    def normalize(self, depth, flow, source: str = "game") -> torch.Tensor:
        """Normalised condition (..., 3) float32 from depth (..., 1) and flow (..., 2), arrays or tensors
        (tensors stay on their device)."""
        if source not in self.sources:
            raise KeyError(f"no condition statistics for source {source!r}; have {sorted(self.sources)}")
        stats = self.sources[source]
        depth = torch.as_tensor(depth, dtype=torch.float32)
        flow = torch.as_tensor(flow, dtype=torch.float32, device=depth.device)
        if depth.shape[-1] != 1 or flow.shape[-1] != 2 or depth.shape[:-1] != flow.shape[:-1]:
            shapes = f"{tuple(depth.shape)} and {tuple(flow.shape)}"
            raise ValueError(f"need depth (..., 1) and flow (..., 2), got {shapes}")
        d = _transform_depth(depth, stats.depth_floor, self.log_depth)
        d = _standardise(d, stats.depth_mean, stats.depth_std, self.clip)
        v = torch.nan_to_num(flow, nan=0.0)
        v = _standardise(v, stats.flow_mean, stats.flow_std, self.clip)
        return torch.cat([d, v], dim=-1)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "log_depth": self.log_depth,
            "clip": self.clip,
            "sources": {name: dataclasses.asdict(stats) for name, stats in self.sources.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ConditionStats:
        """Inverse of `to_dict`; unknown or missing fields are errors."""
        if set(data) != {"log_depth", "clip", "sources"}:
            raise ValueError(f"condition statistics need fields log_depth, clip, sources; got {sorted(data)}")
        names = {f.name for f in dataclasses.fields(SourceStats)}
        sources = {}
        for name, fields in data["sources"].items():
            if set(fields) - names:
                raise ValueError(f"statistics of source {name!r} have unknown fields {sorted(set(fields) - names)}")
            sources[name] = SourceStats(**fields)
        return cls(sources=sources, log_depth=bool(data["log_depth"]), clip=float(data["clip"]))
