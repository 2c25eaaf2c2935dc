"""Optical flow in the game's units and sign, and the warp that checks it.

The game's flow (the one home of this convention for video pseudo-labels): pixels per frame, x right and
y down, on the CURRENT frame's grid, equal to the position now minus the position one frame earlier.
So a point seen at pixel ``p`` now was at ``p - flow(p)`` in the previous frame, and sampling the
previous frame at ``p - flow(p)`` reproduces the current one (:func:`warp_previous`).

OpenCV's ``calc(I0, I1)`` returns ``g`` on I0's grid with ``I0(p) ~ I1(p + g(p))``. With ``I0`` the
current frame and ``I1`` the previous one, the previous position is ``p + g``, so the game's flow is
``-g``. Letters: ``n`` frames, ``s`` side (any ``h`` x ``w`` works too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spokester_train.data.extractors.base import FlowEstimator, register

DIS_PRESETS = ("ultrafast", "fast", "medium")
"""OpenCV's DIS presets (cv2.DISOPTICAL_FLOW_PRESET_<NAME>)."""


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


@register("flow", "dis")
class DISFlow(FlowEstimator):
    """OpenCV's Dense Inverse Search flow (Kroeger et al. 2016) on grey frames; CPU, no weights.

    Args:
        preset: "ultrafast", "fast" or "medium" (OpenCV's presets; medium adds variational refinement).
    """

    def __init__(self, preset: str = "medium"):
        import cv2

        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(DIS_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset}

    def __call__(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """(n, s, s, 3) uint8 twice -> (n, s, s, 2) float32 game flow."""
        if previous.shape != current.shape:
            raise ValueError(f"frame shapes differ: {previous.shape} vs {current.shape}")
        out = np.empty((*current.shape[:3], 2), dtype=np.float32)  # (n, s, s, 2)
        for i, (prev, cur) in enumerate(zip(previous, current, strict=True)):
            backward = self._dis.calc(_gray(cur), _gray(prev), None)  # (s, s, 2): cur(p) ~ prev(p + g)
            out[i] = -backward
        return out


def warp_previous(previous: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predict the current frame from the previous one: sample ``previous`` at ``pixel - flow``.

    (s, s, c) or (s, s) frame and (s, s, 2) flow -> (warped like the frame, (s, s) bool mask of samples
    that fell inside the frame).
    """
    import cv2

    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xs - flow[..., 0].astype(np.float32)
    map_y = ys - flow[..., 1].astype(np.float32)
    warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return warped, inside


def warp_error(previous: np.ndarray, current: np.ndarray, flow: np.ndarray, border: int = 0) -> float:
    """Mean absolute error (frame units) between ``current`` and ``previous`` warped by ``flow``.

    Only pixels whose sample fell inside the frame and that lie ``border`` pixels from the edge count.
    """
    warped, inside = warp_previous(previous, flow)
    if border:
        edge = np.zeros_like(inside)
        edge[border:-border, border:-border] = True
        inside &= edge
    diff = np.abs(warped.astype(np.float32) - current.astype(np.float32))
    if diff.ndim == 3:
        diff = diff.mean(axis=-1)
    return float(diff[inside].mean()) if inside.any() else float("nan")
