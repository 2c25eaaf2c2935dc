"""Pictures of depth and flow for people: a depth colour map and the standard optical-flow colour wheel."""

from __future__ import annotations

import numpy as np

# Anchor colours of a dark-to-bright "inferno"-like ramp, sampled evenly from far (0) to near (1).
_RAMP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    np.float32,
)


def depth_to_rgb(inv_depth: np.ndarray, max_inv_depth: float | None = None) -> np.ndarray:
    """Inverse depth (H, W) or (H, W, 1), 1/m -> uint8 (H, W, 3); near is bright, sky (0) is black.

    The scale is logarithmic so that both the near rider and the far buildings are readable;
    `max_inv_depth` fixes the top of the scale (default: the 99th percentile of the image).
    """
    d = np.asarray(inv_depth, np.float32).reshape(inv_depth.shape[:2])
    top = max_inv_depth if max_inv_depth is not None else float(np.percentile(d[d > 0], 99)) if (d > 0).any() else 1.0
    bottom = top / 200.0  # two decades and a bit: 200 m to 1 m when top = 1/m
    x = np.clip(np.log(np.maximum(d, 1e-12) / bottom) / np.log(top / bottom), 0.0, 1.0)
    pos = x * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(np.int64).clip(0, len(_RAMP) - 2)
    w = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - w) + _RAMP[lo + 1] * w
    rgb[d <= 0] = 0
    return rgb.round().astype(np.uint8)


def _colour_wheel() -> np.ndarray:
    """The Middlebury flow colour wheel (Baker et al. 2011): 55 hues, red-yellow-green-cyan-blue-magenta."""
    segments = [
        (15, (255, 0, 0), (255, 255, 0)),
        (6, (255, 255, 0), (0, 255, 0)),
        (4, (0, 255, 0), (0, 255, 255)),
        (11, (0, 255, 255), (0, 0, 255)),
        (13, (0, 0, 255), (255, 0, 255)),
        (6, (255, 0, 255), (255, 0, 0)),
    ]
    rows = []
    for n, a, b in segments:
        t = np.arange(n)[:, None] / n
        rows.append(np.array(a) * (1 - t) + np.array(b) * t)
    return np.concatenate(rows).astype(np.float32)


_WHEEL = _colour_wheel()


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Flow (H, W, 2), pixels -> uint8 (H, W, 3): hue is direction, saturation is magnitude, zero is white.

    `max_magnitude` sets full saturation (default: the largest magnitude in the image).
    """
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag = np.hypot(u, v)
    top = max_magnitude if max_magnitude is not None else max(float(mag.max()), 1e-6)
    r = np.clip(mag / top, 0.0, 1.0)[..., None]
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    pos = (angle + 1) / 2 * (len(_WHEEL) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = (lo + 1) % len(_WHEEL)
    w = (pos - lo)[..., None]
    hue = _WHEEL[lo] * (1 - w) + _WHEEL[hi] * w
    rgb = 255 - r * (255 - hue)
    return rgb.round().astype(np.uint8)
