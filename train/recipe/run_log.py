"""A training run's log: one JSON line per logged step in `log.jsonl` (and TensorBoard when installed).

On resume, the lines after the checkpoint's step are dropped (they belong to steps that will run again), and
the run's wall time goes on from its last kept line.
"""

from __future__ import annotations

import json
from pathlib import Path

from spokester_env.output import atomic_write_text

__all__ = ["RunLog"]


class RunLog:
    """Appends records to `out/log.jsonl`; `elapsed` is the wall time the run had spent up to `after_step`."""

    def __init__(self, out: Path, after_step: int):
        self.path = out / "log.jsonl"
        self.elapsed = 0.0
        if self.path.is_file():
            records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            kept = [record for record in records if record.get("step", 0) <= after_step]
            times = [record["elapsed_s"] for record in kept if "elapsed_s" in record]
            self.elapsed = float(times[-1]) if times else 0.0
            atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"), purge_step=after_step + 1)
        except ImportError:
            self.board = None

    def write(self, record: dict) -> None:
        """Append one record (a dict with a "step")."""
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(key, value, record["step"])
