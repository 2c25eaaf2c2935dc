"""Training batches from several cached videos: caches, per-video statistics, a resumable clip order.

Each video is extracted once per frame size (`train.cache.extract`) and normalised with its own
conditioning statistics (source "video/<stem>"): relative inverse depth has an unknown scale per video,
and its own log-depth mean and spread remove it, exactly as a new video is normalised at evaluation. The
statistics of all videos pooled are stored as source "video".

With `balance`, every video gives the same number of clips per epoch (the mean over the videos), so a long
video does not outweigh the others; otherwise each video gives as many clips as fit end to end in it.

The clip order is a fixed function of (seed, epoch): epoch e visits every clip index of every video once,
in the permutation drawn by `np.random.default_rng([seed, e])`, and `CachedClips.set_epoch(e)` draws the
clips themselves. The state of the order is two integers (epoch, cursor), saved in training checkpoints.

Legend: b clips, t frames, s side, gh/gw/c teacher grid and channels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neural_render import ConditionStats, SourceStats
from neural_render.layout import from_uint8
from train.cache import Cache, extract, video_source_stats
from train.dataset import CachedClips

__all__ = ["VideoSpec", "parse_video", "prepare_caches", "video_stats", "pool_stats", "ClipBatches"]


@dataclass(frozen=True)
class VideoSpec:
    """A video file, the source frame it starts at and how many frames to use (None = to the end)."""

    path: Path
    start: int = 0
    frames: int | None = None

    @property
    def name(self) -> str:
        return self.path.stem


def parse_video(spec: str | os.PathLike) -> VideoSpec:
    """`PATH`, `PATH@START` or `PATH@START:END` (END exclusive) -> VideoSpec; a bad range is a one-line
    error naming it."""
    text = str(spec)
    if "@" not in text:
        return VideoSpec(Path(text))
    path, _, frames = text.rpartition("@")
    start, _, end = frames.partition(":")
    if not start.isdigit() or not (end == "" or (end.isdigit() and int(end) > int(start) + 1)):
        raise ValueError(f"video {text!r}: write PATH@START or PATH@START:END with frame numbers 0 <= START < END - 1")
    return VideoSpec(Path(path), int(start), int(end) - int(start) if end else None)


def prepare_caches(videos: Sequence[str], size: int, *, cache_root, extractors, skips, progress=True) -> list[Path]:
    """Extract (or find) the pseudo-label cache of each video at `size` x `size`."""
    caches = []
    for spec in map(parse_video, videos):
        caches.append(
            extract(
                spec.path,
                cache_root,
                size=size,
                flow=extractors.get("flow"),
                depth=extractors.get("depth"),
                teacher=extractors.get("teacher"),
                skips=skips,
                start=spec.start,
                max_frames=spec.frames,
                progress=progress,
            )
        )
    return caches


def pool_stats(parts: Sequence[SourceStats]) -> SourceStats:
    """Statistics of several sources pooled, weighted by their frames (moments of the mixture)."""
    weights = np.array([max(p.frames, 1) for p in parts], dtype=np.float64)
    weights /= weights.sum()
    means = np.array([[p.depth_mean, *p.flow_mean] for p in parts])  # (videos, 3)
    stds = np.array([[p.depth_std, *p.flow_std] for p in parts])
    mean = weights @ means
    std = np.sqrt(np.maximum(weights @ (stds**2 + means**2) - mean**2, 1e-12))
    return SourceStats(
        depth_floor=float(weights @ np.array([p.depth_floor for p in parts])),
        depth_mean=float(mean[0]),
        depth_std=float(std[0]),
        flow_mean=(float(mean[1]), float(mean[2])),
        flow_std=(float(std[1]), float(std[2])),
        frames=int(sum(p.frames for p in parts)),
    )


def video_stats(
    caches: Sequence[Path], videos: Sequence[str], skips, sky_to_zero: bool = False
) -> dict[str, SourceStats]:
    """{"video/<stem>": each video's statistics, "video": all of them pooled}."""
    sources = {}
    for cache, video in zip(caches, videos, strict=True):
        name = f"video/{parse_video(video).name}"
        if name in sources:
            raise ValueError(f"video {video!r}: two training videos share the name {name!r}; rename one")
        sources[name] = video_source_stats(cache, skips, sky_to_zero=sky_to_zero)
    sources["video"] = pool_stats(list(sources.values()))
    return sources


class _RawClips(torch.utils.data.Dataset):
    """Clips as stored, keyed by (epoch, global index) over several caches: what loader workers gather."""

    def __init__(self, datasets: Sequence[CachedClips], offsets: np.ndarray, teacher: bool):
        self.datasets, self.offsets, self.teacher = list(datasets), offsets, teacher

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        video = int(np.searchsorted(self.offsets, index, side="right") - 1)
        dataset = self.datasets[video]
        item = dataset.raw_clip(dataset.spec(index - int(self.offsets[video]), epoch))
        keys = ("frames", "depth", "flow") + (("teacher",) if self.teacher else ())
        return {**{k: item[k] for k in keys}, "video": torch.tensor(video)}


class _Keys(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys in the run's clip order, from a given (epoch, cursor) on, forever."""

    def __init__(self, order, batch_size: int, epoch: int, cursor: int):
        self.order, self.batch_size, self.start = order, batch_size, (epoch, cursor)

    def __iter__(self):
        epoch, cursor = self.start
        while True:
            keys, epoch, cursor = _take(self.order, self.batch_size, epoch, cursor)
            yield keys


def _advance(total: int, count: int, epoch: int, cursor: int) -> tuple[int, int]:
    """(epoch, cursor) after `count` more clips of epochs of `total` clips, as `_take` moves."""
    while count:
        if cursor == total:
            epoch, cursor = epoch + 1, 0
        step = min(count, total - cursor)
        cursor, count = cursor + step, count - step
    return epoch, cursor


def _take(order, count: int, epoch: int, cursor: int) -> tuple[list[tuple[int, int]], int, int]:
    """`count` keys from (epoch, cursor) on, moving to the next epoch's permutation at its end; returns
    the keys and the (epoch, cursor) after them."""
    keys, permutation = [], order(epoch)
    for _ in range(count):
        if cursor == len(permutation):
            epoch, cursor = epoch + 1, 0
            permutation = order(epoch)
        keys.append((epoch, int(permutation[cursor])))
        cursor += 1
    return keys, epoch, cursor


class ClipBatches:
    """Batches of training clips drawn in a reproducible, resumable order from several caches.

    With `workers` > 0 a torch DataLoader gathers the clips of the next batches in that many worker
    processes (pinned memory on CUDA) while the current step runs; the order and the clips are the same
    as without, and `state()` counts only the batches handed out, so a resume continues exactly.
    """

    def __init__(
        self,
        caches: Sequence[Path],
        videos: Sequence[str],
        stats: ConditionStats,
        clip_frames: int,
        skips: Sequence[int],
        seed: int,
        teacher: bool,
        *,
        sky_to_zero: bool = False,
        balance: bool = False,
        workers: int = 0,
    ):
        if workers < 0:
            raise ValueError(f"workers={workers}: must be >= 0")
        self.datasets = [
            CachedClips(c, clip_frames, skips=skips, seed=seed + i, sky_to_zero=sky_to_zero)
            for i, c in enumerate(caches)
        ]
        if balance:  # every video the same number of clips per epoch: the mean of what they hold
            clips = max(1, round(float(np.mean([len(d) for d in self.datasets]))))
            for dataset in self.datasets:
                dataset.clips_per_epoch = clips
        self.sources = [f"video/{parse_video(v).name}" for v in videos]
        self.stats, self.seed, self.teacher, self.workers = stats, seed, teacher, workers
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])
        self._raw = _RawClips(self.datasets, self.offsets, teacher)
        self.epoch, self.cursor = 0, 0
        self._loader: tuple[int, object] | None = None  # (batch size, iterator over the DataLoader)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of every clip index that epoch `epoch` visits."""
        return np.random.default_rng([self.seed, epoch]).permutation(int(self.offsets[-1]))

    @property
    def _order(self) -> np.ndarray:
        return self.order(self.epoch)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.close()  # its workers ran ahead from the old position

    def close(self) -> None:
        """Stop the loader's worker processes now (they are started again by the next `next`)."""
        if self._loader is not None:
            iterator = self._loader[1]
            self._loader = None
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def __enter__(self) -> ClipBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _gather(self, batch_size: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """The raw clips of the next batch on `device` (each with its "video" index); advances the state."""
        if self.workers == 0:
            keys, _, _ = _take(self.order, batch_size, self.epoch, self.cursor)
            clips = [{k: v if k == "video" else v.to(device) for k, v in self._raw[key].items()} for key in keys]
        else:
            if self._loader is None or self._loader[0] != batch_size:
                loader = torch.utils.data.DataLoader(
                    self._raw,
                    batch_sampler=_Keys(self.order, batch_size, self.epoch, self.cursor),
                    num_workers=self.workers,
                    pin_memory=device.type == "cuda",
                    persistent_workers=True,
                )
                self._loader = (batch_size, iter(loader))
            stacked = next(self._loader[1])  # collated in the workers, (b, ...) each
            pinned = device.type == "cuda"
            stacked = {k: v if k == "video" else v.to(device, non_blocking=pinned) for k, v in stacked.items()}
            clips = [{k: v[row] for k, v in stacked.items()} for row in range(batch_size)]
        self.epoch, self.cursor = _advance(int(self.offsets[-1]), batch_size, self.epoch, self.cursor)
        return clips

    def next(self, batch_size: int, device) -> dict[str, torch.Tensor]:
        """The next batch: "x" (b, t, s, s, 3) in [-1, 1], "cond" (b, t, s, s, 3) normalised, and
        "teacher" (b, t, gh, gw, c) when asked for.

        The host only gathers the clips' streams as stored (uint8 frames and teacher codes, depth and flow
        in the cache's dtype) and moves them; decoding and normalisation run on `device`, clip by clip,
        which on a GPU keeps the host from becoming the bottleneck (a float32 teacher clip is 4x its
        codes)."""
        device = torch.device(device)
        batch: dict[str, torch.Tensor] = {}
        for row, clip in enumerate(self._gather(batch_size, device)):
            video = int(clip["video"])
            decoded = {
                "x": from_uint8(clip["frames"]),  # (t, s, s, 3)
                "cond": self.stats.normalize(clip["depth"].float(), clip["flow"].float(), self.sources[video]),
            }
            if self.teacher:
                spec = self.datasets[video].cache.spec("teacher")
                codes = clip["teacher"].float()  # (t, gh, gw, c)
                decoded["teacher"] = codes if spec.scale is None else codes.mul_(spec.scale).add_(spec.offset)
            for key, value in decoded.items():
                if key not in batch:
                    batch[key] = torch.empty((batch_size, *value.shape), dtype=value.dtype, device=device)
                batch[key][row] = value
        return batch


def cache_provenance(caches: Sequence[Path], videos: Sequence[str]) -> list[dict]:
    """What each training video was: file, hash, frames used, extractors (for checkpoint provenance)."""
    entries = []
    for cache_dir, video in zip(caches, videos, strict=True):
        manifest = Cache(cache_dir).manifest
        entries.append(
            {
                "video": parse_video(video).path.name,
                "sha256": manifest["video"]["sha256"],
                "start_frame": manifest["start_frame"],
                "frames": manifest["n_frames"],
                "fps": manifest["video"]["fps"],
                "size": manifest["resolution"],
                "extractors": manifest["extractors"],
            }
        )
    return entries
