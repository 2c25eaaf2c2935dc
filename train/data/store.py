"""The label store: a video's pseudo-labels on disk, and reading them back.

One store folder per (video content, resolution, frame range, skips, extractors and their options), made by
`spokester_train.data.extract`::

    <root>/<video stem>-<size>px-<key>/
        manifest.json   what is in here, how far extraction got, statistics of every stream
        frames.npy      (n, s, s, 3) uint8   centre-cropped RGB clip frames
        flow_1.npy      (n, s, s, 2) float16 game flow from frame t-1 to t (zero for t < 1)
        flow_2.npy ...  one per frame skip k: flow from t-k to t, pixels per clip frame at skip k
        depth.npy       (n, s, s) float16    relative inverse depth (depth extractor)
        teacher.npy     (n, 33, 33, 128) uint8 codes, sky.npy (n, s, s) uint8 (teacher extractor "deeplab")
        sky_grown.npy   (n, s, s) uint8      the grown sky mask (`spokester_train.data.sky`), made on first use

Arrays are `.npy` files read as memory maps. Rows from `n_frames` on are unused (a container may promise
more frames than it decodes). Letters: `n` frames, `s` side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from spokester_train.data.extractors import StreamSpec

__all__ = ["DEFAULT_LABEL_ROOT", "MANIFEST", "STORE_VERSION", "LabelStore", "flow_stream", "load_manifest"]

DEFAULT_LABEL_ROOT = "runs/labels"
"""Where label stores go unless a command is told otherwise (`--labels`)."""
STORE_VERSION = 1
"""Layout version of a store; part of its identity, so a new layout extracts anew."""
MANIFEST = "manifest.json"
"""File name of a store's manifest."""


def flow_stream(skip: int) -> str:
    """The name of the stream holding the flow at frame skip `skip`."""
    return f"flow_{skip}"


def load_manifest(store_dir: str | os.PathLike) -> dict[str, Any]:
    """A store's manifest; a folder without one is a one-line FileNotFoundError."""
    path = Path(store_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no label store manifest here")
    return json.loads(path.read_text())


class LabelStore:
    """Read access to a complete label store: its manifest and memory-mapped streams."""

    def __init__(self, store_dir: str | os.PathLike):
        self.dir = Path(store_dir)
        self.manifest = load_manifest(self.dir)
        if not self.manifest["complete"]:
            done, n = self.manifest["done"], self.manifest["n_frames"]
            raise ValueError(f"{self.dir}: extraction incomplete ({done}/{n} frames); run the extraction again")
        self.n_frames: int = self.manifest["n_frames"]
        self.fps: float = self.manifest["video"]["fps"]
        self.skips: tuple[int, ...] = tuple(self.manifest["skips"])
        self.stats: dict[str, Any] = self.manifest["stats"]

    @classmethod
    def of(cls, store: LabelStore | str | os.PathLike) -> LabelStore:
        """`store` itself, or the store in that folder."""
        return store if isinstance(store, LabelStore) else cls(store)

    @property
    def streams(self) -> list[str]:
        return list(self.manifest["streams"])

    def spec(self, name: str) -> StreamSpec:
        """How stream `name` is stored; an unknown name is a KeyError listing the store's streams."""
        if name not in self.manifest["streams"]:
            raise KeyError(f"{self.dir}: no stream {name!r}; streams are {self.streams}")
        entry = self.manifest["streams"][name]
        return StreamSpec(tuple(entry["shape"]), entry["dtype"], entry["units"], entry["scale"], entry["offset"])

    def stream(self, name: str) -> np.ndarray:
        """(n_frames, ...) read-only memory map of one stream as stored (codes, for quantised streams)."""
        self.spec(name)
        return np.load(self.dir / self.manifest["streams"][name]["file"], mmap_mode="r")[: self.n_frames]
