"""Random training clips read from a pseudo-label cache, with the seed's random frame skip.

Channel-last like ``neural_render`` videos. Letters: ``t`` clip frames, ``s`` side, ``gh``/``gw``/``c``
teacher grid and channels. Values keep their cache units (uint8 RGB, relative inverse depth, flow in
pixels per clip frame): normalising them is ``neural_render.conditioning``'s job, with statistics fitted
by ``train.stats.video_source_stats``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from train.cache import Cache, flow_stream
from train.sky import cached_depth
from train.video import ClipSpec, sample_clip


class CachedClips(Dataset):
    """Clips of ``clip_len`` frames from a cache, each at a random skip drawn from ``skips``.

    Item ``i`` of epoch ``e`` is drawn by ``np.random.default_rng([seed, e, i])``, so a run is reproducible
    across DataLoader workers and resumes. An item is a dict of tensors:

    - ``frames`` (t, s, s, 3) uint8 RGB;
    - ``flow`` (t, s, s, 2) float32, pixels per clip frame (the flow at the clip's skip; frame 0's flow
      is its motion from the source frame one skip before the clip, which always exists);
    - ``depth`` (t, s, s, 1) float32 relative inverse depth, if cached (0 at the sky with `sky_to_zero`);
    - ``teacher`` (t, gh, gw, c) float32 and ``sky`` (t, s, s, 1) bool, if cached;
    - ``skip``, ``start`` (int64) and ``fps`` (float32: source fps / skip, the clip's frame rate).

    Args:
        cache_dir: a complete cache from ``train.cache.extract``.
        clip_len: frames per clip.
        skips: frame skips to draw from (default: all the cache has flow for).
        seed: base seed of the clip draws.
        clips_per_epoch: ``len()``; default: as many clips as fit end to end at skip 1.
        sky_to_zero: read depth as 0 where the cached sky mask says sky (``train.sky``).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        clip_len: int,
        skips: Sequence[int] | None = None,
        seed: int = 0,
        clips_per_epoch: int | None = None,
        sky_to_zero: bool = False,
    ):
        self.cache = Cache(cache_dir)
        self.sky_to_zero = sky_to_zero
        if sky_to_zero and "sky" not in self.cache.streams:
            raise ValueError(f"{self.cache.dir}: sky_to_zero needs a cached sky mask (extract with teacher deeplab)")
        self.cache_dir = self.cache.dir
        self.skips = tuple(skips) if skips is not None else self.cache.skips
        missing = [k for k in self.skips if flow_stream(k) not in self.cache.streams]
        if missing or not self.skips:
            raise ValueError(f"{self.cache_dir}: no cached flow for skips {missing or '()'}")
        self.clip_len, self.seed, self.epoch = clip_len, seed, 0
        sample_clip(self.cache.n_frames, clip_len, np.random.default_rng(0), self.skips, name=str(cache_dir))
        self.clips_per_epoch = clips_per_epoch or max(1, (self.cache.n_frames - 1) // clip_len)
        self._arrays: dict[str, np.ndarray] | None = None  # opened lazily in each worker process

    def __len__(self) -> int:
        return self.clips_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of clips (call once per epoch, like a DistributedSampler)."""
        self.epoch = epoch

    def spec(self, index: int, epoch: int | None = None) -> ClipSpec:
        """The clip of item `index` in `epoch` (default: the epoch last set)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        return sample_clip(self.cache.n_frames, self.clip_len, rng, self.skips, name=str(self.cache_dir))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.clip(self.spec(index))

    def clip(self, spec: ClipSpec) -> dict[str, torch.Tensor]:
        """The streams of one clip (any spec inside the cache, e.g. from ``cut_clips`` for evaluation)."""
        item = self.raw_clip(spec)
        item["flow"] = item["flow"].float()
        if "depth" in item:
            item["depth"] = item["depth"].float()
        if "teacher" in item:
            item["teacher"] = torch.from_numpy(self.cache.spec("teacher").decode(item["teacher"].numpy()))
        return item

    def raw_clip(self, spec: ClipSpec) -> dict[str, torch.Tensor]:
        """`clip` with every stream as stored (e.g. teacher features as their uint8 codes, flow in the
        cache's dtype), for batching that decodes on the training device: fewer bytes to gather and move."""
        if spec.skip not in self.cache.skips or spec.previous < 0 or spec.indices[-1] >= self.cache.n_frames:
            raise ValueError(f"{self.cache_dir}: clip {spec} is outside the cache ({self.cache.n_frames} frames)")
        arrays = self._open()
        idx = spec.indices  # (t,)
        item: dict[str, Any] = {
            "frames": torch.from_numpy(arrays["frames"][idx]),  # (t, s, s, 3)
            "flow": torch.from_numpy(np.asarray(arrays[flow_stream(spec.skip)][idx])),  # (t, s, s, 2)
            "skip": torch.tensor(spec.skip),
            "start": torch.tensor(spec.start),
            "fps": torch.tensor(self.cache.fps / spec.skip, dtype=torch.float32),
        }
        if "depth" in arrays:
            item["depth"] = torch.from_numpy(np.asarray(arrays["depth"][idx]))  # (t, s, s, 1)
        if "teacher" in arrays:
            item["teacher"] = torch.from_numpy(np.asarray(arrays["teacher"][idx]))  # (t, gh, gw, c) as stored
        if "sky" in arrays:
            item["sky"] = torch.from_numpy(arrays["sky"][idx][..., None] > 0)  # (t, s, s, 1)
        return item

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {name: self.cache.stream(name) for name in self.cache.streams}
            if "depth" in self._arrays:  # (n, s, s, 1), the sky at 0 with sky_to_zero
                self._arrays["depth"] = cached_depth(self.cache, self.sky_to_zero)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None  # memory maps are reopened by each worker, never pickled as copies
        return state
