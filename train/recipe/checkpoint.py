"""Training checkpoints: the whole state of a run in one file, written atomically.

`checkpoint.pt` (a `torch.save` dict, loadable with `weights_only=True`) holds the model, its EMA, the
iREPA projector, the optimiser, the step, the resolved config, the conditioning statistics, the clip order
(dataset epoch and cursor) and every random state (the run's generator, torch, CUDA, numpy, python). It
is written to a temporary file in the same directory, flushed to disk and then renamed over the old one,
so a crash at any moment leaves either the previous checkpoint or the new one, never a broken file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spokester_env.output import atomic_path

__all__ = ["CHECKPOINT", "TrainingStateError", "save_state", "load_state", "capture_rng", "restore_rng"]

CHECKPOINT = "checkpoint.pt"
"""File name of the training checkpoint inside a run directory."""


class TrainingStateError(ValueError):
    """A training checkpoint cannot be used; the message is one line naming the file."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically (temporary file beside it, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        torch.save(state, file)
    return path


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint; a missing or damaged file is a one-line TrainingStateError."""
    path = Path(path)
    if not path.is_file():
        raise TrainingStateError(path, "no training checkpoint here (nothing to resume)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise TrainingStateError(
            path, f"cannot read the training checkpoint ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, dict) or "step" not in state or "config" not in state:
        raise TrainingStateError(path, "not a Spokester training checkpoint (no step and config)")
    return state


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a run touches, in types that `weights_only` loading accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (legacy state)
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what `capture_rng` saved."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    legacy = (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached)
    np.random.set_state(legacy)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
