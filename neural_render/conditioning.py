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
as 0 (sky, no motion). With `sky_at_clip` the floor (the sky) reads -clip in every source, whatever its
statistics.

A `ConditionSource` is one source (the game seen by one camera, one video, the videos pooled): its
statistics and the flags of its transform (`log_depth`, `sky_to_zero`, `car_slabs`, `clip`, `sky_at_clip`). It is
fitted here from depth and flow arrays (`fit`, `pool`) by every caller, and it is saved in the checkpoint's JSON as data
(`to_dict` / `from_dict`), never as constants elsewhere. `ConditionStats` is a checkpoint's named sources.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

__all__ = ["CAR_MASK_CHANNELS", "CONDITION_CHANNELS", "DEFAULT_CLIP", "ConditionSource", "ConditionStats"]

CONDITION_CHANNELS = 3
"""Channels of a normalised condition: depth, flow x, flow y."""
CAR_MASK_CHANNELS = CONDITION_CHANNELS + 1
"""Channels of a condition with a car mask after them: the clip (the largest value a channel reads) where a car is
(the game's own cars; a video's, as its teacher found them), else 0, so that a car moves the condition's
embedding as much as the most extreme depth or flow does."""
DEFAULT_CLIP = 4.0
"""Normalised values are clipped to [-clip, clip] standard deviations."""
DEFAULT_FLOOR_FRACTION = 1e-2
"""When fitting, the depth floor is this fraction of the 99th percentile of positive inverse depth."""
UNIT_DEPTH_FLOOR = 1e-2
"""Depth floor of the identity statistics, in the game's metres^-1 (100 m)."""
MIN_STD = 1e-6
"""Smallest standard deviation a fit may record, so that a constant stream never divides by zero."""


def _is_number(value) -> bool:
    """A finite real number (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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


def _moments(values, count: int | None = None, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (c,) over all but the last axis of (N, ..., c) values (memmaps read `chunk` at a time,
    sums in float64); `values` may be a callable giving chunk i's float64 array."""
    if not count:
        raise ValueError("cannot fit condition statistics on no frames")
    sums, squares, n = 0.0, 0.0, 0
    for start in range(0, count, chunk):
        part = values(start, start + chunk)
        part = part.reshape(-1, part.shape[-1])
        sums = sums + part.sum(axis=0)
        squares = squares + np.square(part).sum(axis=0)
        n += part.shape[0]
    mean = sums / n
    return mean, np.sqrt(np.maximum(squares / n - np.square(mean), 0.0))


def _mixture(means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (c,) of a mixture of parts (p, c) drawn with (unnormalised) weights (p,):
    mean = sum w m / sum w, var = sum w (s^2 + m^2) / sum w - mean^2."""
    total = weights.sum()
    mean = (weights[:, None] * means).sum(axis=0) / total
    var = (weights[:, None] * (np.square(stds) + np.square(means))).sum(axis=0) / total - np.square(mean)
    return mean, np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True)
class ConditionSource:
    """One condition source (the game, a video, the videos pooled): its statistics, in the source's own
    units, and the flags of its transform."""

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
    log_depth: bool = True
    """Take the log of (floored) inverse depth before standardising: an unknown scale becomes an offset."""
    sky_to_zero: bool = False
    """The source's depth was read as 0 where its sky mask says sky (a video's, `spokester_train.data.sky`) when these
    statistics were fitted, and must be read so wherever the source is used again (evaluation). The game's
    sky is 0 already."""
    car_slabs: bool = False
    """The source's depth was read with each car its teacher found as a flat slab at the depth where it meets the
    road (a video's, `spokester_train.data.video_depth`), and must be read so wherever the source is used again.
    The game's cars are boxes already."""
    clip: float = DEFAULT_CLIP
    """Normalised values are clipped to [-clip, clip] standard deviations."""
    sky_at_clip: bool = False
    """Depth at or below the floor (the sky, and anything farther) reads -clip, the same in every source. Without
    it the floor reads its standardised log, which differs from source to source: the shipped default's videos
    read their sky as -0.92 to -4.0 and the game its sky as -1.17, so one value meant sky in one video and
    distant trees in another. The statistics are fitted the same either way."""

    def __post_init__(self):
        """Refuse nonsense (one ValueError naming the field and what it must be); normalise numpy scalars
        to Python ones, so that every source can be written as JSON."""

        def refuse(name: str, rule: str):
            raise ValueError(f"{name} = {getattr(self, name)!r}; must be {rule}")

        for name, positive in (("depth_floor", True), ("depth_mean", False), ("depth_std", True), ("clip", True)):
            value = getattr(self, name)
            if not _is_number(value) or (positive and value <= 0):
                refuse(name, "a finite number > 0" if positive else "a finite number")
            object.__setattr__(self, name, float(value))
        for name, positive in (("flow_mean", False), ("flow_std", True)):
            pair = getattr(self, name)
            pair = tuple(pair) if isinstance(pair, (Sequence, np.ndarray)) and not isinstance(pair, str) else ()
            if len(pair) != 2 or not all(_is_number(v) and (v > 0 or not positive) for v in pair):
                refuse(name, "(x, y): two finite numbers > 0" if positive else "(x, y): two finite numbers")
            object.__setattr__(self, name, tuple(float(v) for v in pair))
        if not isinstance(self.frames, numbers.Integral) or isinstance(self.frames, bool) or self.frames < 0:
            refuse("frames", "an integer >= 0")
        object.__setattr__(self, "frames", int(self.frames))
        for name in ("log_depth", "sky_to_zero", "car_slabs", "sky_at_clip"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                refuse(name, "true or false")
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def flags(self) -> dict:
        """The transform's flags: what two sources must share to be pooled."""
        return {
            "log_depth": self.log_depth,
            "sky_to_zero": self.sky_to_zero,
            "car_slabs": self.car_slabs,
            "clip": self.clip,
            "sky_at_clip": self.sky_at_clip,
        }

    @classmethod
    def unit(cls) -> ConditionSource:
        """Identity statistics (mean 0, std 1, floor 1/100 m): for untrained models and tests only."""
        return cls(depth_floor=UNIT_DEPTH_FLOOR, depth_mean=0.0, depth_std=1.0, flow_mean=(0, 0), flow_std=(1, 1))

    @classmethod
    def fit(
        cls,
        depth: np.ndarray,
        flow: np.ndarray | Sequence[np.ndarray],
        *,
        floor_fraction: float = DEFAULT_FLOOR_FRACTION,
        chunk: int = 64,
        **flags,
    ) -> ConditionSource:
        """Fit a source from its depth (N, H, W, 1) and flow (N', H, W, 2) (memmaps welcome: read `chunk`
        frames at a time, sums in float64). `flow` may be a list of arrays, the equally likely parts of a
        mixture (a video's flow at each frame skip a training clip may be drawn with); its statistics are
        the mixture's. `flags` are the transform's (`log_depth`, `sky_to_zero`, `car_slabs`, `clip`, `sky_at_clip`;
        the fields' defaults where not given); `sky_to_zero=True` records that `depth` already reads 0 at the sky,
        `car_slabs=True` that its cars are already slabs."""
        unknown = sorted(set(flags) - set(cls.unit().flags))
        if unknown:
            raise TypeError(f"ConditionSource.fit: unknown flags {unknown}; the flags are {sorted(cls.unit().flags)}")
        log_depth = flags.get("log_depth", cls.log_depth)
        flows = [flow] if isinstance(flow, np.ndarray) or not isinstance(flow, Sequence) else list(flow)
        if len(depth.shape) < 2 or depth.shape[-1] != 1 or not flows:
            raise ValueError(f"need depth (N, H, W, 1) and flow (N, H, W, 2), got {depth.shape}")
        for part in flows:
            if part.shape[-1] != 2 or part.shape[1:-1] != depth.shape[1:-1]:
                raise ValueError(f"need depth (N, H, W, 1) and flow (N, H, W, 2), got {depth.shape} and {part.shape}")
        step = max(1, depth.shape[0] // 16)
        sample = np.nan_to_num(np.asarray(depth[::step], dtype=np.float64))
        positive = sample[sample > 0]
        if positive.size == 0:
            raise ValueError("cannot fit depth statistics: no positive inverse depth in the sample")
        floor = floor_fraction * float(np.percentile(positive, 99))

        def depth_chunk(lo, hi):
            return _transform_depth(np.asarray(depth[lo:hi], dtype=np.float64), floor, log_depth)

        depth_mean, depth_std = _moments(depth_chunk, depth.shape[0], chunk)
        parts = [_moments(lambda lo, hi, f=f: np.nan_to_num(np.asarray(f[lo:hi], dtype=np.float64)), len(f), chunk)
                 for f in flows]  # fmt: skip
        means = np.array([m for m, _ in parts])  # (parts, 2)
        stds = np.maximum(np.array([s for _, s in parts]), MIN_STD)
        flow_mean, flow_std = (means[0], stds[0]) if len(parts) == 1 else _mixture(means, stds, np.ones(len(parts)))
        return cls(
            depth_floor=floor,
            depth_mean=float(depth_mean[0]),
            depth_std=float(max(depth_std[0], MIN_STD)),
            flow_mean=tuple(flow_mean),
            flow_std=tuple(np.maximum(flow_std, MIN_STD)),
            frames=int(depth.shape[0]),
            **flags,
        )

    @classmethod
    def pool(cls, parts: Sequence[ConditionSource]) -> ConditionSource:
        """Several sources as one (the moments of their mixture, weighted by their frames); their flags
        must agree."""
        if not parts:
            raise ValueError("pool: need at least one condition source")
        flags = {tuple(p.flags.items()) for p in parts}
        if len(flags) > 1:
            raise ValueError(f"cannot pool condition sources with different transforms: {sorted(flags)}")
        weights = np.array([max(p.frames, 1) for p in parts], dtype=np.float64)
        means = np.array([[p.depth_mean, *p.flow_mean] for p in parts])  # (parts, 3)
        stds = np.array([[p.depth_std, *p.flow_std] for p in parts])
        mean, std = _mixture(means, stds, weights)
        std = np.maximum(std, MIN_STD)
        return cls(
            depth_floor=float(weights @ np.array([p.depth_floor for p in parts]) / weights.sum()),
            depth_mean=float(mean[0]),
            depth_std=float(std[0]),
            flow_mean=(float(mean[1]), float(mean[2])),
            flow_std=(float(std[1]), float(std[2])),
            frames=int(sum(p.frames for p in parts)),
            **parts[0].flags,
        )

    def normalize(self, depth, flow, cars=None) -> torch.Tensor:
        """Normalised condition (..., 3) float32 from depth (..., 1) and flow (..., 2), arrays or tensors
        (tensors stay on their device); with a car mask `cars` (..., 1), (..., 4): the mask after them (`clip` on a
        car, else 0: `CAR_MASK_CHANNELS`)."""
        depth = torch.as_tensor(depth, dtype=torch.float32)
        flow = torch.as_tensor(flow, dtype=torch.float32, device=depth.device)
        if depth.shape[-1] != 1 or flow.shape[-1] != 2 or depth.shape[:-1] != flow.shape[:-1]:
            shapes = f"{tuple(depth.shape)} and {tuple(flow.shape)}"
            raise ValueError(f"need depth (..., 1) and flow (..., 2), got {shapes}")
        if cars is not None:
            cars = torch.as_tensor(cars, device=depth.device)
            if cars.shape != depth.shape:
                raise ValueError(f"need a car mask of the depth's shape {tuple(depth.shape)}, got {tuple(cars.shape)}")
            return torch.cat([self.normalize(depth, flow), (cars > 0).to(torch.float32) * self.clip], dim=-1)
        d = _transform_depth(depth, self.depth_floor, self.log_depth)
        d = _standardise(d, self.depth_mean, self.depth_std, self.clip)
        if self.sky_at_clip:
            d = torch.where(torch.nan_to_num(depth, nan=0.0, neginf=0.0) <= self.depth_floor, -self.clip, d)
        v = torch.nan_to_num(flow, nan=0.0)
        v = _standardise(v, self.flow_mean, self.flow_std, self.clip)
        return torch.cat([d, v], dim=-1)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ConditionSource:
        """Inverse of `to_dict`; unknown fields are errors, and so are missing statistics."""
        if not isinstance(data, Mapping):
            raise ValueError(f"must be an object of fields, got {data!r}")
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        if set(data) - names:
            raise ValueError(f"unknown fields {sorted(set(data) - names)}")
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ValueError(f"missing fields {missing}")
        return cls(**data)


@dataclass(frozen=True)
class ConditionStats:
    """The named condition sources a renderer knows, e.g. {"game": ..., "video": ..., "video/<stem>": ...}."""

    sources: Mapping[str, ConditionSource] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    @classmethod
    def unit(cls, source: str = "game") -> ConditionStats:
        """Identity statistics for one source: for untrained models and tests only."""
        return cls(sources={source: ConditionSource.unit()})

    @property
    def clip(self) -> float:
        """The clip of the normalised condition, which every source shares (the network saw one range)."""
        clips = {s.clip for s in self.sources.values()}
        if len(clips) > 1:
            raise ValueError(f"condition sources disagree on the clip: {sorted(clips)}")
        return clips.pop() if clips else DEFAULT_CLIP

    def source(self, name: str) -> ConditionSource:
        """The source named `name`; an unknown name is a KeyError listing the known ones."""
        if name not in self.sources:
            raise KeyError(f"no condition statistics for source {name!r}; have {sorted(self.sources)}")
        return self.sources[name]

    def with_source(self, name: str, source: ConditionSource) -> ConditionStats:
        """A copy with `name` added (or replaced)."""
        return ConditionStats(sources={**self.sources, name: source})

    def normalize(self, depth, flow, source: str = "game", cars=None) -> torch.Tensor:
        """Normalised condition (..., 3) float32 from depth (..., 1) and flow (..., 2) of `source`; (..., 4) with
        a car mask `cars` (..., 1) (`ConditionSource.normalize`)."""
        return self.source(source).normalize(depth, flow, cars)

    def to_dict(self) -> dict:
        """A JSON-ready dict: {"sources": {name: every field of the source}}."""
        return {"sources": {name: source.to_dict() for name, source in self.sources.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> ConditionStats:
        """Inverse of `to_dict`; unknown or missing fields are errors naming the source."""
        if not isinstance(data, Mapping) or set(data) != {"sources"}:
            got = sorted(data) if isinstance(data, Mapping) else repr(data)
            raise ValueError(f"condition statistics need the field sources only; got {got}")
        if not isinstance(data["sources"], Mapping):
            raise ValueError(f"sources = {data['sources']!r}; must be an object {{name: statistics}}")
        sources = {}
        for name, fields in data["sources"].items():
            try:
                sources[name] = ConditionSource.from_dict(fields)
            except (TypeError, ValueError) as error:
                raise ValueError(f"source {name!r}: {error}") from None
        return cls(sources=sources)

    @classmethod
    def from_version_1(cls, data: Mapping, sky_to_zero_videos: bool = False) -> ConditionStats:
        """Statistics as checkpoints of format version 1 saved them: the flags `log_depth` and `clip` once
        for all sources, no `sky_to_zero` (its training config said it; pass it for the video sources)."""
        if set(data) != {"log_depth", "clip", "sources"}:
            raise ValueError(f"condition statistics need fields log_depth, clip, sources; got {sorted(data)}")
        flags = {"log_depth": bool(data["log_depth"]), "clip": float(data["clip"])}
        sources = {}
        for name, fields in data["sources"].items():
            video = name == "video" or name.startswith("video/")
            fields = {**fields, **flags, "sky_to_zero": video and sky_to_zero_videos}
            try:
                sources[name] = ConditionSource.from_dict(fields)
            except (TypeError, ValueError) as error:
                raise ValueError(f"source {name!r}: {error}") from None
        return cls(sources=sources)
