"""The sky of a real video at inverse depth 0, as in the game.

A depth network's relative inverse depth does not reach 0 at the sky (PyDNet puts it a little nearer than
the horizon), while the game's sky is exactly 0 (infinitely far). Training with `sky_to_zero` reads a
video's depth as 0 wherever its sky mask says sky (`spokester_train.data.video_depth.read_depth`), so that both
sources meet the conditioning's depth floor there and the renderer learns "floor = sky".

The mask starts from the DeepLab teacher's Cityscapes segmentation (the label store's `sky` stream), which
finds hazy and cloudy skies but misses much of a deep blue one (Cityscapes has few). `grow_sky` extends it
by colour continuity into neighbouring far pixels; the grown mask is computed once per label store and
stored beside it as `sky_grown.npy`, made again on the next use when that file is damaged (truncated, empty).

Letters: ``n`` frames, ``s`` side.
"""

from __future__ import annotations

import numpy as np

from spokester_train.data.store import LabelStore

__all__ = ["GROWN_SKY_FILE", "grow_sky", "sky_mask"]

GROWN_SKY_FILE = "sky_grown.npy"
"""The grown sky mask of a label store, (n, s, s) uint8, written beside its streams on first use."""


def grow_sky(
    frame: np.ndarray, sky: np.ndarray, depth: np.ndarray, *, tolerance: float = 8.0, iterations: int = 128
) -> np.ndarray:
    """Grow a sky mask (s, s) by colour continuity: (s, s) bool.

    A pixel joins when it touches the mask, its colour is within `tolerance` (per RGB channel, 0-255) of the
    mean colour of the mask pixels around it (5 x 5), and its inverse depth is no nearer than 1.25 x the 99th
    percentile of the seed sky's (so the fill cannot run down into the road or onto near objects). Smooth
    gradients of a clear sky are followed; the edges of hills, trees and buildings stop it.
    """
    import cv2  # here, not at import: a GPU host training from a pack has no OpenCV

    mask = sky.astype(bool)
    if not mask.any():
        return mask
    image = frame.astype(np.float32)
    allowed = depth <= 1.25 * np.percentile(depth[mask], 99)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(iterations):
        weight = mask.astype(np.float32)
        mean = cv2.blur(image * weight[..., None], (5, 5)) / np.maximum(cv2.blur(weight, (5, 5)), 1e-6)[..., None]
        ring = (cv2.dilate(mask.astype(np.uint8), kernel) > 0) & ~mask & allowed
        new = ring & (np.abs(image - mean).max(axis=-1) <= tolerance)
        if not new.any():
            break
        mask = mask | new
    return mask


def sky_mask(store: LabelStore) -> np.ndarray:
    """The grown sky mask (n, s, s) uint8 of a label store, computed once and stored beside it
    (`LabelStore.derived`)."""
    if "sky" not in store.streams:
        raise ValueError(f"{store.dir}: no sky mask in this label store (extract it with the deeplab teacher)")

    def make():
        frames, sky, depth = store.stream("frames"), store.stream("sky"), store.stream("depth")
        return np.stack([grow_sky(frames[i], sky[i], depth[i].astype(np.float32)) for i in range(store.n_frames)])

    return store.derived(GROWN_SKY_FILE, store.spec("sky").shape, np.uint8, make)
