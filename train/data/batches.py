"""Batches of training clips from several label stores, in a reproducible, resumable order.

Each store's clips are normalised with its video's own condition source (`spokester_train.data.sources`), whose
`sky_to_zero` and `car_slabs` flags also say how the store's depth is read. With `balance`, every video gives the same
number of clips per epoch (the mean over the videos), so a long video does not outweigh the others;
otherwise each video gives as many clips as fit end to end in it.

The clip order is a fixed function of (seed, epoch): epoch e visits every clip index of every video once, in
the permutation drawn by `np.random.default_rng([seed, e])`. The state of the order is two integers (epoch,
cursor), saved in training checkpoints.

Under distributed training every process walks the same order: a batch of B clips is the next B keys, and
process `rank` of `world_size` reads only its share of them (`batch_share`: contiguous rows, the first
B mod world_size processes one more), so no clip is read twice in a step and the union of the shares is the
batch one process would read.

Legend: b clips, t frames, s side, gh/gw/c teacher grid and channels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from neural_render import ConditionStats
from neural_render.layout import from_uint8
from spokester_train.data.clips import StoredClips
from spokester_train.data.store import LabelStore

__all__ = ["ClipBatches", "batch_share"]


def batch_share(batch_size: int, rank: int, world_size: int) -> range:
    """The rows of a global batch of `batch_size` clips that process `rank` of `world_size` trains."""
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class _RawClips(torch.utils.data.Dataset):
    """Clips as stored, keyed by (epoch, global index) over several label stores: what loader workers gather."""

    def __init__(self, datasets: Sequence[StoredClips], offsets: np.ndarray, teacher: bool):
        self.datasets, self.offsets, self.teacher = list(datasets), offsets, teacher

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        video = int(np.searchsorted(self.offsets, index, side="right") - 1)
        dataset = self.datasets[video]
        item = dataset.raw_clip(dataset.spec(index - int(self.offsets[video]), epoch))
        keys = (
            ("frames", "depth", "flow")
            + (("teacher",) if self.teacher else ())
            + (("cars",) if dataset.car_masks else ())
        )
        return {**{k: item[k] for k in keys}, "video": torch.tensor(video)}


class _Keys(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys in the run's clip order, from a given (epoch, cursor) on, forever."""

    def __init__(self, order, batch_size: int, epoch: int, cursor: int, rows: range):
        self.order, self.batch_size, self.start, self.rows = order, batch_size, (epoch, cursor), rows

    def __iter__(self):
        epoch, cursor = self.start
        while True:
            keys, epoch, cursor = _take(self.order, self.batch_size, epoch, cursor)
            yield keys[self.rows.start : self.rows.stop]


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
    """Batches of training clips drawn in a reproducible, resumable order from several label stores.

    With `workers` > 0 a torch DataLoader gathers the clips of the next batches in that many worker
    processes (pinned memory on CUDA) while the current step runs; the order and the clips are the same
    as without, and `state()` counts only the batches handed out, so a resume continues exactly.
    """

    def __init__(
        self,
        stores: Sequence[LabelStore | str | os.PathLike],
        sources: Sequence[str],
        stats: ConditionStats,
        clip_frames: int,
        skips: Sequence[int],
        seed: int,
        teacher: bool,
        *,
        balance: bool = False,
        workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        car_masks: bool = False,
        mirror: bool = False,
    ):
        """`sources[i]` names the condition source in `stats` that normalises the clips of `stores[i]`;
        process `rank` of `world_size` gets its share of every batch (`batch_share`); with `car_masks` every
        clip's condition ends with its car mask, with `mirror` half the clips are mirrored (`StoredClips`)."""
        if workers < 0:
            raise ValueError(f"workers={workers}: must be >= 0")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world size {world_size}")
        self.rank, self.world_size = rank, world_size
        if len(stores) != len(sources):
            raise ValueError(f"{len(stores)} label stores but {len(sources)} condition source names")
        self.datasets = []
        for i, (store, name) in enumerate(zip(stores, sources, strict=True)):
            source = stats.source(name)
            flags = {"sky_to_zero": source.sky_to_zero, "car_slabs": source.car_slabs}
            flags |= {"car_masks": car_masks, "mirror": mirror}
            self.datasets.append(StoredClips(store, clip_frames, skips=skips, seed=seed + i, **flags))
        if balance:  # every video the same number of clips per epoch: the mean of what they hold
            clips = max(1, round(float(np.mean([len(d) for d in self.datasets]))))
            for dataset in self.datasets:
                dataset.clips_per_epoch = clips
        self.sources = list(sources)
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
        """The raw clips of this process's share of the next batch on `device` (each with its "video" index);
        advances the state by the whole batch."""
        rows = batch_share(batch_size, self.rank, self.world_size)
        if self.workers == 0:
            keys, _, _ = _take(self.order, batch_size, self.epoch, self.cursor)
            clips = [
                {k: v if k == "video" else v.to(device) for k, v in self._raw[key].items()}
                for key in keys[rows.start : rows.stop]
            ]
        else:
            if self._loader is None or self._loader[0] != batch_size:
                loader = torch.utils.data.DataLoader(
                    self._raw,
                    batch_sampler=_Keys(self.order, batch_size, self.epoch, self.cursor, rows),
                    num_workers=self.workers,
                    pin_memory=device.type == "cuda",
                    persistent_workers=True,
                )
                self._loader = (batch_size, iter(loader))
            stacked = next(self._loader[1])  # collated in the workers, (b, ...) each
            pinned = device.type == "cuda"
            stacked = {k: v if k == "video" else v.to(device, non_blocking=pinned) for k, v in stacked.items()}
            clips = [{k: v[row] for k, v in stacked.items()} for row in range(len(rows))]
        self.epoch, self.cursor = _advance(int(self.offsets[-1]), batch_size, self.epoch, self.cursor)
        return clips

    def next(self, batch_size: int, device) -> dict[str, torch.Tensor]:
        """This process's share of the next batch of `batch_size` clips (all of it in one process): "x"
        (b, t, s, s, 3) in [-1, 1], "cond" (b, t, s, s, 3) normalised (4 channels with `car_masks`), "video" (b,)
        each clip's store (its index in `stores`), and "teacher" (b, t, gh, gw, c) when asked for.

        The host only gathers the clips' streams as stored (uint8 frames and teacher codes, depth and flow
        in the store's dtype) and moves them; decoding and normalisation run on `device`, clip by clip,
        which on a GPU keeps the host from becoming the bottleneck (a float32 teacher clip is 4x its
        codes)."""
        device = torch.device(device)
        batch: dict[str, torch.Tensor] = {}
        clips = self._gather(batch_size, device)
        for row, clip in enumerate(clips):
            video = int(clip["video"])
            decoded = {
                "x": from_uint8(clip["frames"]),  # (t, s, s, 3)
                "cond": self.stats.normalize(
                    clip["depth"].float(), clip["flow"].float(), self.sources[video], clip.get("cars")
                ),
            }
            if self.teacher:
                spec = self.datasets[video].store.spec("teacher")
                codes = clip["teacher"].float()  # (t, gh, gw, c)
                decoded["teacher"] = codes if spec.scale is None else codes.mul_(spec.scale).add_(spec.offset)
            for key, value in decoded.items():
                if key not in batch:
                    batch[key] = torch.empty((len(clips), *value.shape), dtype=value.dtype, device=device)
                batch[key][row] = value
        batch["video"] = torch.tensor([int(clip["video"]) for clip in clips], device=device)
        return batch
