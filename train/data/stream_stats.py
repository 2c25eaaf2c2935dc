"""Summaries of a label store's streams, written into its manifest: what the extracted labels look like.

Every summary has the same fields: ``count``, ``mean``, ``std``, ``min``, ``max`` (exact, accumulated in
float64 over every value) and ``percentiles`` {"p1", "p5", "p25", "p50", "p75", "p95", "p99"} (from an
evenly strided sample of up to ``SAMPLES_PER_FRAME`` values of each frame, so that hour-long videos fit
in memory).

- depth (relative inverse depth from a video, or the game's inverse depth in 1/m): ``inverse_depth`` and
  ``log_inverse_depth`` (natural log, over values > 0 only), plus ``zero_fraction`` (the game's sky is
  0);
- flow (pixels per frame): ``x``, ``y`` and ``magnitude``;
- anything else (frames, teacher features, masks): ``values``.

These are descriptions for people and tools, not the renderer's normalisation: that is a
`neural_render.ConditionSource`, fitted by `spokester_train.data.sources` (log inverse depth floored and standardised
with the source's own mean and standard deviation, so that relative depth's unknown scale cancels; flow over
the mixture of frame skips that training draws).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
SAMPLES_PER_FRAME = 4096


class Accumulator:
    """Streaming exact moments and a strided per-frame sample (for percentiles) of one quantity."""

    def __init__(self, samples_per_frame: int = SAMPLES_PER_FRAME):
        self.samples_per_frame = samples_per_frame
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low, self.high = np.inf, -np.inf
        self.samples: list[np.ndarray] = []

    def add(self, values: np.ndarray) -> None:
        """Add a batch of frames: (n, ...) values; NaNs are not expected and would poison the mean."""
        if values.size == 0:
            return
        frames = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # (n, m)
        self.count += frames.size
        self.total += float(frames.sum())
        self.total_sq += float(np.square(frames).sum())
        self.low, self.high = min(self.low, float(frames.min())), max(self.high, float(frames.max()))
        pick = np.unique(np.linspace(0, frames.shape[1] - 1, self.samples_per_frame).astype(np.int64))
        self.samples.append(frames[:, pick].astype(np.float32).ravel())

    def add_values(self, values: np.ndarray, frames: int) -> None:
        """Add the flat values picked from ``frames`` frames (e.g. their positive pixels), sampled alike."""
        spf = self.samples_per_frame
        self.samples_per_frame = spf * frames
        try:
            self.add(np.asarray(values).reshape(1, -1))
        finally:
            self.samples_per_frame = spf

    def summary(self) -> dict[str, Any]:
        if self.count == 0:
            return {"count": 0}
        mean = self.total / self.count
        var = max(self.total_sq / self.count - mean * mean, 0.0)
        sample = np.concatenate(self.samples)
        cuts = np.percentile(sample, PERCENTILES)
        return {
            "count": self.count,
            "mean": mean,
            "std": float(np.sqrt(var)),
            "min": self.low,
            "max": self.high,
            "percentiles": {f"p{p}": float(c) for p, c in zip(PERCENTILES, cuts, strict=True)},
        }


def depth_stats(batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """Summaries of (n, h, w) inverse depth batches: raw, log of the positive values, zero fraction."""
    raw, log = Accumulator(), Accumulator()
    zeros = total = 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float32)
        raw.add(batch)
        positive = batch > 0
        zeros += int((~positive).sum())
        total += batch.size
        if positive.all():
            log.add(np.log(batch))
        elif positive.any():
            log.add_values(np.log(batch[positive]), frames=len(batch))
    return {
        "inverse_depth": raw.summary(),
        "log_inverse_depth": log.summary(),
        "zero_fraction": zeros / total if total else 0.0,
    }


def flow_stats(batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """Summaries of (n, h, w, 2) flow batches: each component and the magnitude."""
    x, y, magnitude = Accumulator(), Accumulator(), Accumulator()
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float32)
        x.add(batch[..., 0])
        y.add(batch[..., 1])
        magnitude.add(np.hypot(batch[..., 0], batch[..., 1]))
    return {"x": x.summary(), "y": y.summary(), "magnitude": magnitude.summary()}


def value_stats(batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """Summary of any other stream, over all its values."""
    values = Accumulator()
    for batch in batches:
        values.add(np.asarray(batch, dtype=np.float32))
    return {"values": values.summary()}


def stream_stats(kind: str, batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """The summary for a stream of a kind: "depth", "flow", or anything else."""
    if kind == "depth":
        return depth_stats(batches)
    if kind == "flow":
        return flow_stats(batches)
    return value_stats(batches)
