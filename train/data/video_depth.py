"""A video's depth as the renderer is taught it: the sky at the game's 0, and cars as the game draws them.

A depth network's relative inverse depth is smooth where the game's is not. Two reads of a label store's
depth bring it nearer to what the game hands the renderer:

    sky_to_zero   the sky (`spokester_train.data.sky.sky_mask`) reads 0, the game's sky (infinitely far).
    car_slabs     every car the DeepLab teacher finds (the store's ``cars`` mask) reads one inverse depth, that
                  of its lowest rows, where it stands on the road: the flat rear face of a box, as the game
                  draws its cars. PyDNet blurs a car into the road around it, so the renderer never saw a car
                  in the footage's depth, and a game car is a shape it cannot read (`condition_gap` prints what
                  a car looks like in each source's condition, with and without the slabs; the README has the
                  figures).

The slabs of a store are made once (`slab_map`, with OpenCV) and kept beside its streams as `SLABS_FILE`, so that
reading them is a lookup (a GPU host training from a pack, which carries the file, has no OpenCV). Both reads are
lazy (`VideoDepth`): slices are views, `np.asarray` (or an index array) reads only the frames asked for, so memory
maps stay on disk. Letters: ``n`` frames, ``s`` side.
"""

from __future__ import annotations

import numpy as np

from spokester_train.data.sky import sky_mask
from spokester_train.data.store import LabelStore

__all__ = [
    "SLAB_MAX_ASPECT",
    "SLAB_MAX_WIDTH",
    "SLAB_MIN_FILL",
    "SLAB_MIN_PIXELS",
    "SLABS_FILE",
    "VideoDepth",
    "car_blobs",
    "car_slabs",
    "read_depth",
    "slab_map",
    "slab_values",
]

SLABS_FILE = "car_slabs.npy"
"""A label store's car slabs (n, s, s) float16: each slab's inverse depth on its pixels, 0 elsewhere."""
SLAB_MIN_PIXELS = 8
"""A car blob smaller than this (pixels) is left as the depth network has it: too small to have a shape."""
SLAB_MIN_FILL = 0.55
"""A car blob must fill at least this share of its bounding box, and"""
SLAB_MAX_ASPECT = 2.0
"""be at most this many times as wide as it is high, and"""
SLAB_MAX_WIDTH = 0.5
"""at most this share of the frame wide. The teacher's int8 segmentation reads patches of a sunlit road as car:
wide, ragged blobs (fill 0.35-0.5, up to the frame's width), where the cars it finds are compact (fill 0.55-0.85,
1-1.6 times as wide as high)."""


def car_blobs(cars: np.ndarray) -> list[np.ndarray]:
    """The car-shaped blobs of a car mask (s, s): one (s, s) bool mask each. A blob is 8-connected and shaped
    like a car (`SLAB_MIN_PIXELS`, `SLAB_MIN_FILL`, `SLAB_MAX_ASPECT`, `SLAB_MAX_WIDTH`); a blob touching the
    frame's bottom edge is left out: it is the camera's own car (a dashcam's bonnet) or a car cut off below,
    whose contact with the road is not in the picture."""
    import cv2  # here, not at import: a GPU host training from a pack has no OpenCV

    count, labels, stats, _ = cv2.connectedComponentsWithStats(np.asarray(cars, np.uint8), connectivity=8)
    side = cars.shape[0]
    blobs = []
    for blob in range(1, count):
        top, width, height, area = (
            int(stats[blob, k]) for k in (cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA)
        )
        carlike = area / (width * height) >= SLAB_MIN_FILL and width <= SLAB_MAX_ASPECT * height
        if area >= SLAB_MIN_PIXELS and carlike and width <= SLAB_MAX_WIDTH * side and top + height < side:
            blobs.append(labels == blob)
    return blobs


def slab_values(depth: np.ndarray, cars: np.ndarray) -> np.ndarray:
    """(s, s) float32: on every car blob (`car_blobs`) of `cars` (s, s), one inverse depth, the median of `depth`
    (s, s) over the blob's lowest eighth of rows (at least one row), where it meets the road; 0 elsewhere."""
    values = np.zeros(depth.shape, np.float32)
    for blob in car_blobs(cars):
        rows = np.flatnonzero(blob.any(axis=1))
        low = blob.copy()
        low[: rows[-1] + 1 - max(1, len(rows) // 8)] = False
        values[blob] = np.median(np.asarray(depth, np.float32)[low])
    return values


def car_slabs(depth: np.ndarray, cars: np.ndarray) -> np.ndarray:
    """Depth (s, s) float32 with every car blob of `cars` (s, s) a slab (`slab_values`)."""
    values = slab_values(depth, cars)
    return np.where(values > 0, values, np.asarray(depth, np.float32))


def slab_map(store: LabelStore) -> np.ndarray:
    """The car slabs (n, s, s) float16 of a label store (`slab_values` of its depth and car mask), computed once and
    stored beside it as `SLABS_FILE` (`LabelStore.derived`)."""
    if "cars" not in store.streams:
        raise ValueError(
            f"{store.dir}: car_slabs needs a cars mask in the label store (extract it again with teacher deeplab)"
        )

    def make():
        depth, cars = store.stream("depth"), store.stream("cars")
        slabs = np.zeros(depth.shape, np.float16)
        for frame in np.flatnonzero(np.asarray(cars).reshape(len(cars), -1).any(axis=1)):
            slabs[frame] = slab_values(depth[frame], cars[frame] > 0)
        return slabs

    return store.derived(SLABS_FILE, store.spec("depth").shape, np.float16, make)


class VideoDepth:
    """A label store's depth stream (n, s, s, 1) read as float32, with the sky (a mask (n, s, s)) at 0 and the cars
    as slabs (a `slab_map` (n, s, s): its value where it is > 0) where given."""

    def __init__(self, depth: np.ndarray, sky: np.ndarray | None = None, slabs: np.ndarray | None = None):
        for name, part in (("sky mask", sky), ("slab map", slabs)):
            if part is not None and part.shape != depth.shape:
                raise ValueError(f"depth {depth.shape} and {name} {part.shape} differ in shape")
        self.depth, self.sky, self.slabs = depth, sky, slabs
        self.shape = (*depth.shape, 1)

    def __len__(self) -> int:
        return self.shape[0]

    def _part(self, index) -> VideoDepth:
        def pick(part):
            return None if part is None else part[index]

        return VideoDepth(self.depth[index], pick(self.sky), pick(self.slabs))

    def __getitem__(self, index):
        return self._part(index) if isinstance(index, slice) else np.asarray(self._part(index))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        depth = np.asarray(self.depth, dtype=np.float32)
        if self.slabs is not None:
            slabs = np.asarray(self.slabs, dtype=np.float32)
            depth = np.where(slabs > 0, slabs, depth)
        if self.sky is not None:
            depth = np.where(np.asarray(self.sky) > 0, np.float32(0), depth)
        return depth[..., None] if dtype is None else depth[..., None].astype(dtype)


def read_depth(store: LabelStore, sky_to_zero: bool, car_slabs: bool = False):
    """A label store's depth (n, s, s, 1): as stored, or a `VideoDepth` with the sky at 0 and / or the cars as
    slabs; a mask the store lacks is one ValueError naming the store and how to get it."""
    if sky_to_zero and "sky" not in store.streams:
        raise ValueError(
            f"{store.dir}: sky_to_zero needs a sky mask in the label store (extract it again with teacher deeplab)"
        )
    if not (sky_to_zero or car_slabs):
        return store.stream("depth")[..., None]
    return VideoDepth(
        store.stream("depth"), sky_mask(store) if sky_to_zero else None, slab_map(store) if car_slabs else None
    )
