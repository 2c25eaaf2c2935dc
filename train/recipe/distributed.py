"""Training on several processes with PyTorch's own launcher: `torchrun --nproc_per_node N -m spokester_train ...`.

torchrun starts N processes and tells each its `RANK`, `LOCAL_RANK` and `WORLD_SIZE` (environment
variables); `join` reads them and joins the process group (NCCL on CUDA, one GPU per process by its local
rank; gloo on the CPU). Without them (a plain `python -m spokester_train`) the run is one process and nothing here
does anything. The network and the iREPA projector are wrapped in `DistributedDataParallel`, which averages
the gradients; everything else follows from three rules:

- the global batch is the preset's: process r trains rows `batch_share(B, r, N)` of every batch (contiguous,
  the first B mod N processes one clip more) and scales its loss by its share (b_r N / B), so the gradient
  DDP averages is that of the mean over all B clips, even when B does not divide by N;
- every random draw of a clip comes from a generator seeded by (seed, step, row) (`clip_generators`), and
  every process walks the same clip order, so the run does not depend on N beyond float rounding: a
  checkpoint resumes with any number of processes (tested: 2 processes -> 1);
- process 0 alone extracts label stores (the others wait at a barrier, then read them), writes checkpoints,
  exports the renderer, evaluates, logs and shows progress. The others write nothing and print only errors.

When one process fails it prints its own one-line error; the others, which then lose their peer in a
collective or are stopped by torchrun (SIGTERM), raise `Stopped` and leave without a word, so a failed run
shows that one line and torchrun's own report of which rank failed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Ranks", "Stopped", "join"]

PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote worker crashing")
"""How gloo says that another process of the group has gone."""


class Stopped(Exception):
    """This process of a distributed run stopped because another one failed (which said why)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: `rank` of `world_size` (one process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """`values` summed over every process (the values themselves in one process)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def decide(self, flag: bool, device: torch.device) -> bool:
        """Process 0's `flag`, on every process (e.g. "out of time", which each clock would judge differently)."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([float(flag)], device=device)
        dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def wrap(self, module: torch.nn.Module | None, device: torch.device):
        """`module` in DistributedDataParallel (the gradients averaged over the processes), or as it is."""
        if module is None or not self.distributed:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def device(self, name: str) -> torch.device:
        """The torch device of this process for the run's `name`: `cuda` means this process's own GPU."""
        device = torch.device(name)
        if device.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank)
        return device

    @contextlib.contextmanager
    def stopping_with_peers(self) -> Iterator[None]:
        """Inside: losing a peer, or torchrun's SIGTERM (KeyboardInterrupt under `user_errors`), raises
        `Stopped` in a distributed run."""
        try:
            yield
        except KeyboardInterrupt:
            if self.distributed:
                raise Stopped(f"rank {self.rank}: stopped") from None
            raise
        except RuntimeError as error:
            if self.distributed and any(text in str(error) for text in PEER_LOST):
                raise Stopped(f"rank {self.rank}: another process of the run failed") from None
            raise

    def leave(self) -> None:
        """Leave the process group. A finished run's processes meet at a `barrier()` first: one that tears
        its gloo group down while a peer still talks to it can abort the peer at exit ("terminate called
        without an active exception"). A failed run leaves at once (its peers may be gone)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def join(device: str) -> Ranks:
    """This process's `Ranks` from torchrun's environment, joined to the process group (none without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return ranks
