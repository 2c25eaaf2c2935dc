"""Random training clips read from a label store, with the seed's random frame skip.

Channel-last like `neural_render` videos. Letters: `t` clip frames, `s` side, `gh`/`gw`/`c` teacher grid
and channels. Values keep their stored units (uint8 RGB, relative inverse depth, flow in pixels per clip
frame): normalising them is the job of the video's `neural_render.ConditionSource` (`spokester_train.data.sources`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from spokester_train.data.store import LabelStore, flow_stream
from spokester_train.data.video import ClipSpec, sample_clip
from spokester_train.data.video_depth import read_depth, slab_map


class StoredClips(Dataset):
    """Clips of ``clip_len`` frames from a label store, each at a random skip drawn from ``skips``.

    Item ``i`` of epoch ``e`` is drawn by ``np.random.default_rng([seed, e, i])``, so a run is reproducible
    across DataLoader workers and resumes. An item is a dict of tensors:

    - ``frames`` (t, s, s, 3) uint8 RGB;
    - ``flow`` (t, s, s, 2) float32, pixels per clip frame (the flow at the clip's skip; frame 0's flow
      is its motion from the source frame one skip before the clip, which always exists);
    - ``depth`` (t, s, s, 1) float32 relative inverse depth, if stored (0 at the sky with `sky_to_zero`, its
      cars as slabs with `car_slabs`);
    - ``teacher`` (t, gh, gw, c) float32 and ``sky`` (t, s, s, 1) bool, if stored;
    - ``cars`` (t, s, s, 1) bool with `car_masks`: the car-shaped blobs of the store's car mask (where
      `spokester_train.data.video_depth.slab_map` has a slab);
    - ``skip``, ``start`` (int64) and ``fps`` (float32: source fps / skip, the clip's frame rate).

    With ``mirror`` half the clips (drawn with the clip) are seen in a mirror: every image and map flipped left to
    right and the flow's x component negated. The footage's cars keep to their side of the road (the dashcams drive
    in the left lane and pass cars on their right), and a renderer that learns "a car on the right" paints it there
    whatever the game's condition says; mirrored, a car is on either side and only the condition tells which.

    Args:
        store: a complete label store (or its folder) from `spokester_train.data.extract`.
        clip_len: frames per clip.
        skips: frame skips to draw from (default: all the store has flow for).
        seed: base seed of the clip draws.
        clips_per_epoch: ``len()``; default: as many clips as fit end to end at skip 1.
        sky_to_zero: read depth as 0 where the store's sky mask says sky (`spokester_train.data.sky`).
        car_slabs: read each car of the store's car mask as a slab (`spokester_train.data.video_depth`).
        car_masks: give each clip its car mask (``cars``).
        mirror: mirror half the clips left to right.
    """

    def __init__(
        self,
        store: LabelStore | str | os.PathLike,
        clip_len: int,
        skips: Sequence[int] | None = None,
        seed: int = 0,
        clips_per_epoch: int | None = None,
        sky_to_zero: bool = False,
        car_slabs: bool = False,
        car_masks: bool = False,
        mirror: bool = False,
    ):
        self.store = LabelStore.of(store)
        self.sky_to_zero, self.car_slabs, self.car_masks, self.mirror = sky_to_zero, car_slabs, car_masks, mirror
        read_depth(self.store, sky_to_zero, car_slabs or car_masks)  # a missing mask is said here, not in a worker
        self.skips = tuple(skips) if skips is not None else self.store.skips
        missing = [k for k in self.skips if flow_stream(k) not in self.store.streams]
        if missing or not self.skips:
            raise ValueError(f"{self.store.dir}: no stored flow for skips {missing or '()'}")
        self.clip_len, self.seed, self.epoch = clip_len, seed, 0
        sample_clip(self.store.n_frames, clip_len, np.random.default_rng(0), self.skips, name=str(self.store.dir))
        self.clips_per_epoch = clips_per_epoch or max(1, (self.store.n_frames - 1) // clip_len)
        self._arrays: dict[str, np.ndarray] | None = None  # opened lazily in each worker process

    def __len__(self) -> int:
        return self.clips_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of clips (call once per epoch, like a DistributedSampler)."""
        self.epoch = epoch

    def spec(self, index: int, epoch: int | None = None) -> ClipSpec:
        """The clip of item `index` in `epoch` (default: the epoch last set)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        spec = sample_clip(self.store.n_frames, self.clip_len, rng, self.skips, name=str(self.store.dir))
        return dataclasses.replace(spec, mirrored=bool(rng.random() < 0.5)) if self.mirror else spec

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.clip(self.spec(index))

    def clip(self, spec: ClipSpec) -> dict[str, torch.Tensor]:
        """The streams of one clip (any spec inside the store, e.g. from ``cut_clips`` for evaluation)."""
        item = self.raw_clip(spec)
        item["flow"] = item["flow"].float()
        if "depth" in item:
            item["depth"] = item["depth"].float()
        if "teacher" in item:
            item["teacher"] = torch.from_numpy(self.store.spec("teacher").decode(item["teacher"].numpy()))
        return item

    def raw_clip(self, spec: ClipSpec) -> dict[str, torch.Tensor]:
        """`clip` with every stream as stored (e.g. teacher features as their uint8 codes, flow in the
        store's dtype), for batching that decodes on the training device: fewer bytes to gather and move."""
        if spec.skip not in self.store.skips or spec.previous < 0 or spec.indices[-1] >= self.store.n_frames:
            raise ValueError(f"{self.store.dir}: clip {spec} is outside the label store ({self.store.n_frames} frames)")
        arrays = self._open()
        idx = spec.indices  # (t,)
        item: dict[str, Any] = {
            "frames": torch.from_numpy(arrays["frames"][idx]),  # (t, s, s, 3)
            "flow": torch.from_numpy(np.asarray(arrays[flow_stream(spec.skip)][idx])),  # (t, s, s, 2)
            "skip": torch.tensor(spec.skip),
            "start": torch.tensor(spec.start),
            "fps": torch.tensor(self.store.fps / spec.skip, dtype=torch.float32),
        }
        if "depth" in arrays:
            item["depth"] = torch.from_numpy(np.asarray(arrays["depth"][idx]))  # (t, s, s, 1)
        if "teacher" in arrays:
            item["teacher"] = torch.from_numpy(np.asarray(arrays["teacher"][idx]))  # (t, gh, gw, c) as stored
        if "sky" in arrays:
            item["sky"] = torch.from_numpy(arrays["sky"][idx][..., None] > 0)  # (t, s, s, 1)
        if "car_slabs" in arrays:
            item["cars"] = torch.from_numpy(np.asarray(arrays["car_slabs"][idx])[..., None] > 0)  # (t, s, s, 1)
        if spec.mirrored:  # every image and map (t, s, s, k), the teacher's grid (t, gh, gw, c), left to right
            for name in ("frames", "flow", "depth", "teacher", "sky", "cars"):
                if name in item:
                    item[name] = item[name].flip(2)
            item["flow"][..., 0] = -item["flow"][..., 0]  # the x component (a copy: flip copies)
        return item

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {name: self.store.stream(name) for name in self.store.streams}
            if "depth" in self._arrays:  # (n, s, s, 1), the sky at 0 with sky_to_zero, cars as slabs with car_slabs
                self._arrays["depth"] = read_depth(self.store, self.sky_to_zero, self.car_slabs)
            if self.car_masks:
                self._arrays["car_slabs"] = slab_map(self.store)  # (n, s, s): > 0 on the car-shaped blobs
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None  # memory maps are reopened by each worker, never pickled as copies
        return state
