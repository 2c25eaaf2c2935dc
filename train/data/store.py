"""The label store: a video's pseudo-labels on disk, and reading them back.

One store folder per (video content, resolution, frame range, skips, extractors and their options), made by
`spokester_train.data.extract`::

    <root>/<video stem>-<size>px-<key>/
        manifest.json   what is in here (every stream's file, shape and dtype, `rows`), how far extraction got,
                        statistics of every stream
        frames.npy      (n, s, s, 3) uint8   centre-cropped RGB clip frames
        flow_1.npy      (n, s, s, 2) float16 game flow from frame t-1 to t (zero for t < 1)
        flow_2.npy ...  one per frame skip k: flow from t-k to t, pixels per clip frame at skip k
        depth.npy       (n, s, s) float16    relative inverse depth (depth extractor)
        teacher.npy     (n, 33, 33, 128) uint8 codes, sky.npy (n, s, s) uint8 (teacher extractor "deeplab")
        sky_grown.npy   (n, s, s) uint8      the grown sky mask (`spokester_train.data.sky`), made on first use

Arrays are `.npy` files read as memory maps, each of `rows` rows (the frames extraction set out to label);
rows from `n_frames` on are unused (a container may promise more frames than it decodes). Letters: `n`
frames, `s` side.

Opening a store verifies every stream file against the manifest without reading its data: the `.npy`
header must hold the manifest's shape (`rows`, then the stream's `shape`) and `dtype`, and the file's size
must be the header's length plus the data's. A damaged file (truncated, empty, missing, of another shape)
is a `LabelStoreError`, one line naming the file and what is wrong, e.g. ``.../depth.npy: 1234 bytes,
expected 41088 for (20, 32, 32) float16; run the extraction again`` (extraction re-extracts such a store).
Manifests written before `rows` was recorded are verified all the same: their `rows` is derived from the
frames in the container, the start frame and the requested frame count, as extraction chose it.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spokester_env.output import atomic_path
from spokester_train.data.extractors import StreamSpec

__all__ = [
    "LABEL_ROOT_HELP",
    "default_label_root",
    "MANIFEST",
    "STORE_VERSION",
    "LabelStore",
    "LabelStoreError",
    "flow_stream",
    "load_manifest",
    "planned_rows",
    "verify_array",
    "verify_streams",
]


def default_label_root() -> Path:
    """Where label stores go unless a command is told otherwise (`--labels`): a per-user cache, never the
    folder a command happens to run in — `$SPOKESTER_CACHE/labels` when that variable is set, else
    `$XDG_CACHE_HOME/spokester/labels`, else `~/.cache/spokester/labels`."""
    cache = os.environ.get("SPOKESTER_CACHE")
    if cache:
        return Path(cache) / "labels"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spokester" / "labels"


LABEL_ROOT_HELP = "label store root (default: $SPOKESTER_CACHE/labels, else ~/.cache/spokester/labels)"
"""The `--labels` help of every command that extracts."""
STORE_VERSION = 1
"""Layout version of a store; part of its identity, so a new layout extracts anew."""
MANIFEST = "manifest.json"
"""File name of a store's manifest."""


class LabelStoreError(ValueError):
    """A damaged file of a label store; the message is one line: ``path: what is wrong; run the extraction
    again``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}; run the extraction again")


def flow_stream(skip: int) -> str:
    """The name of the stream holding the flow at frame skip `skip`."""
    return f"flow_{skip}"


def planned_rows(frames_in_container: int, start: int, max_frames: int | None) -> int:
    """Rows of every stream file: the frames that extraction sets out to label (it may decode fewer)."""
    available = frames_in_container - start
    return available if max_frames is None else min(max_frames, available)


def load_manifest(store_dir: str | os.PathLike) -> dict[str, Any]:
    """A store's manifest; a folder without one is a one-line FileNotFoundError, an unreadable one a
    `LabelStoreError`."""
    path = Path(store_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no label store manifest here")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LabelStoreError(path, f"not a readable manifest ({error})") from None


def _npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Length of the header that numpy writes for an array of `shape` and `dtype` (version 1.0)."""
    header = io.BytesIO()
    fields = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(header, fields)
    return header.tell()


def verify_array(path: str | os.PathLike, shape: tuple[int, ...], dtype: str | np.dtype) -> None:
    """Check that `path` is a complete `.npy` array of `shape` and `dtype` from its header and size alone (the
    data is not read); a `LabelStoreError` naming the file and what is wrong otherwise."""
    path, shape, dtype = Path(path), tuple(shape), np.dtype(dtype)
    expected = f"{shape} {dtype.name}"
    data_bytes = math.prod(shape) * dtype.itemsize
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LabelStoreError(path, f"missing, expected {expected}") from None
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version not in readers:
                raise ValueError(f".npy format version {version}")
            found_shape, fortran_order, found_dtype = readers[version](file)
            header_bytes = file.tell()
    except ValueError:  # empty, cut inside the header, or not a .npy file
        raise LabelStoreError(
            path, f"{size} bytes, expected {_npy_header_bytes(shape, dtype) + data_bytes} for {expected}"
        ) from None
    if found_shape != shape or found_dtype != dtype or fortran_order:
        order = " in Fortran order" if fortran_order else ""
        raise LabelStoreError(path, f"holds {found_shape} {found_dtype.name}{order}, expected {expected}")
    if size != header_bytes + data_bytes:
        raise LabelStoreError(path, f"{size} bytes, expected {header_bytes + data_bytes} for {expected}")


def verify_streams(store_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Check every stream file of a store against its manifest (`verify_array`); the first damaged one is a
    `LabelStoreError`. Manifests without `rows` (written before it was recorded) get it derived."""
    rows = manifest.get("rows")
    if rows is None:
        rows = planned_rows(
            manifest["video"]["frames_in_container"], manifest["start_frame"], manifest["identity"]["max_frames"]
        )
    for entry in manifest["streams"].values():
        verify_array(Path(store_dir) / entry["file"], (rows, *entry["shape"]), entry["dtype"])


class LabelStore:
    """Read access to a complete label store: its manifest and memory-mapped streams, verified on opening
    (`verify_streams`)."""

    def __init__(self, store_dir: str | os.PathLike):
        self.dir = Path(store_dir)
        self.manifest = load_manifest(self.dir)
        if not self.manifest["complete"]:
            done, n = self.manifest["done"], self.manifest["n_frames"]
            raise ValueError(f"{self.dir}: extraction incomplete ({done}/{n} frames); run the extraction again")
        verify_streams(self.dir, self.manifest)
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

    def derived(
        self, file: str, shape: tuple[int, ...], dtype: str | np.dtype, make: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """A read-only memory map (n_frames, *shape) of an array made from the store's streams and kept beside them
        as `file`: made by `make()` on first use and written atomically; a damaged one (`verify_array`) is said on
        stderr in one line and made again."""
        path = self.dir / file
        if path.is_file():
            try:
                verify_array(path, (self.n_frames, *shape), dtype)
            except LabelStoreError as error:
                sys.stderr.write(f"{error.path}: {error.reason}; making it again\n")
            else:
                return np.load(path, mmap_mode="r")
        array = np.asarray(make(), dtype=dtype)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, array)
        return np.load(path, mmap_mode="r")
