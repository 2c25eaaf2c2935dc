"""Extract pseudo-labels from a video once, into a resumable on-disk cache that training memory-maps.

One cache directory per (video content, resolution, frame range, skips, extractors and their options)::

    <root>/<video stem>-<size>px-<key>/
        manifest.json   what is in here, how far extraction got, statistics of every stream
        frames.npy      (n, s, s, 3) uint8   centre-cropped RGB clip frames
        flow_1.npy      (n, s, s, 2) float16 game flow from frame t-1 to t (zero for t < 1)
        flow_2.npy ...  one per frame skip k: flow from t-k to t, pixels per clip frame at skip k
        depth.npy       (n, s, s) float16    relative inverse depth (depth extractor)
        teacher.npy     (n, 33, 33, 128) float16, sky.npy (n, s, s) uint8 (teacher extractor "deeplab")

Arrays are ``.npy`` files opened with ``np.lib.format.open_memmap``; frames are written in chunks, each
chunk flushed before the manifest's ``done`` count advances (the manifest is replaced atomically, temp
file then rename), so a killed extraction resumes at the first unfinished chunk. Rows from ``n_frames``
on are unused (a container may promise more frames than it decodes). Letters: ``n`` frames, ``s`` side.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neural_render.conditioning import SourceStats, fit_source_stats
from neural_render.files import atomic_write_text
from train.extractors import DEFAULT_EXTRACTORS, ExtractorSpec, FrameLabeler, StreamSpec, build_extractor
from train.sky import cached_depth
from train.stats import stream_stats
from train.video import DEFAULT_SKIPS, VideoError, crop_resize, iter_frames, probe_video

CACHE_VERSION = 1
MANIFEST = "manifest.json"
FLOW_UNITS = "pixels per clip frame at skip k; position at t minus position at t-k, on frame t's grid"


def file_sha256(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """Content hash of a file (the cache follows the video's bytes, not its name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader (or a resumed run) sees the old file or the new one, never half."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def load_manifest(cache_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cache manifest here")
    return json.loads(path.read_text())


def flow_stream(skip: int) -> str:
    """The name of the stream holding the flow at frame skip ``skip``."""
    return f"flow_{skip}"


def _stream_kind(name: str) -> str:
    return "flow" if name.startswith("flow_") else name


def extract(
    video: str | os.PathLike,
    cache_root: str | os.PathLike,
    size: int = 256,
    flow: ExtractorSpec | None = DEFAULT_EXTRACTORS["flow"],
    depth: ExtractorSpec | None = DEFAULT_EXTRACTORS["depth"],
    teacher: ExtractorSpec | None = DEFAULT_EXTRACTORS["teacher"],
    skips: Sequence[int] = DEFAULT_SKIPS,
    start: int = 0,
    max_frames: int | None = None,
    chunk_frames: int = 16,
    progress: bool = True,
) -> Path:
    """Extract (or find) the cache of ``video`` at ``size`` x ``size``; return its directory.

    Extractors are names, ``{"name": ..., **options}`` dicts or instances (``None`` leaves that stream
    out). ``start``/``max_frames`` choose a frame range. A complete cache is returned untouched; an
    incomplete one (killed run) is resumed.
    """
    info = probe_video(video)
    skips = tuple(sorted({int(k) for k in skips})) if flow is not None else ()
    if skips and skips[0] < 1:
        raise ValueError(f"frame skips must be >= 1, got {skips}")
    flow_ex = build_extractor("flow", flow) if flow is not None else None
    labelers = [build_extractor(k, s) for k, s in (("depth", depth), ("teacher", teacher)) if s is not None]
    n_planned = info.n_frames - start if max_frames is None else min(max_frames, info.n_frames - start)
    if n_planned < 2:
        raise VideoError(video, f"too short: {max(n_planned, 0)} frames from frame {start}, need at least 2")

    streams = _streams(size, skips, labelers)
    extractors = {"flow": flow_ex.config() if flow_ex else None}
    extractors |= {lab.kind: lab.config() for lab in labelers}
    identity = {
        "version": CACHE_VERSION,
        "video_sha256": file_sha256(video),
        "size": size,
        "start": start,
        "max_frames": max_frames,
        "skips": list(skips),
        "extractors": extractors,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_root) / f"{Path(video).stem}-{size}px-{key}"
    manifest_path = cache_dir / MANIFEST

    if manifest_path.is_file():
        manifest = load_manifest(cache_dir)
        if manifest.get("identity") != identity:
            raise ValueError(f"{cache_dir}: manifest does not match this request; delete the directory")
        if manifest["complete"]:
            return cache_dir
        arrays = {name: np.lib.format.open_memmap(cache_dir / f"{name}.npy", mode="r+") for name in streams}
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        arrays = {
            name: np.lib.format.open_memmap(
                cache_dir / f"{name}.npy", mode="w+", dtype=spec.dtype, shape=(n_planned, *spec.shape)
            )
            for name, spec in streams.items()
        }
        manifest = {
            "identity": identity,
            "video": {
                "path": str(Path(video).resolve()),
                "sha256": identity["video_sha256"],
                "bytes": Path(video).stat().st_size,
                "width": info.width,
                "height": info.height,
                "codec": info.codec,
                "fps": info.fps,
                "frames_in_container": info.n_frames,
            },
            "resolution": size,
            "crop": {"x0": info.box.x0, "y0": info.box.y0, "side": info.box.side},
            "start_frame": start,
            "skips": list(skips),
            "extractors": extractors,
            "streams": {
                name: {
                    "file": f"{name}.npy",
                    "dtype": spec.dtype,
                    "shape": list(spec.shape),
                    "units": spec.units,
                    "scale": spec.scale,
                    "offset": spec.offset,
                }
                for name, spec in streams.items()
            },
            "n_frames": n_planned,
            "done": 0,
            "complete": False,
            "ms_per_frame": {},
            "stats": None,
        }
        write_json_atomic(manifest_path, manifest)

    _run_chunks(
        video,
        info.box,
        size,
        start,
        manifest,
        manifest_path,
        arrays,
        flow_ex,
        labelers,
        chunk_frames,
        progress,
    )
    manifest["stats"] = _cache_stats(arrays, streams, manifest["n_frames"])
    manifest["complete"] = True
    write_json_atomic(manifest_path, manifest)
    return cache_dir


def _streams(size: int, skips: Sequence[int], labelers: Sequence[FrameLabeler]) -> dict[str, StreamSpec]:
    streams = {"frames": StreamSpec((size, size, 3), "uint8", "RGB, centre-cropped square")}
    streams |= {flow_stream(k): StreamSpec((size, size, 2), "float16", FLOW_UNITS) for k in skips}
    for labeler in labelers:
        for name, spec in labeler.streams(size).items():
            if name in streams:
                raise ValueError(f"stream {name!r} of {labeler.kind} extractor {labeler.name!r} is taken")
            streams[name] = spec
    return streams


def _run_chunks(video, box, size, start, manifest, manifest_path, arrays, flow_ex, labelers, chunk, progress):
    """Decode from the first unfinished frame, extract chunk by chunk, advance ``done`` after each."""
    done, n = manifest["done"], manifest["n_frames"]
    history = max(manifest["skips"], default=0)
    previous = np.asarray(arrays["frames"][max(0, done - history) : done])  # (<=history, s, s, 3)
    seconds = {name: 0.0 for name in ["decode", *(["flow"] if flow_ex else []), *(x.kind for x in labelers)]}
    timed = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    decoded = iter_frames(video, start + done, start + n)
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task(f"extract {Path(video).name} @ {size}px", total=n, completed=done)
            while done < n:
                tick = time.perf_counter()
                full = [f for _, f in zip(range(min(chunk, n - done)), decoded, strict=False)]
                if not full:  # the container promised more frames than it holds
                    manifest["n_frames"] = n = done
                    break
                full = np.stack(full)  # (c, h, w, 3)
                squares = np.stack([crop_resize(f, box, size) for f in full])  # (c, s, s, 3)
                seconds["decode"] += time.perf_counter() - tick
                window = np.concatenate([previous, squares])  # frames done - len(previous) .. done + c - 1
                out = _label_chunk(
                    window, len(previous), full, box, size, manifest["skips"], flow_ex, labelers, seconds
                )
                lo, hi = done, done + len(full)
                for name, values in out.items():
                    arrays[name][lo:hi] = values
                    arrays[name].flush()  # the chunk is on disk before the manifest says so
                previous = window[len(window) - history :]
                done = manifest["done"] = hi
                timed += hi - lo
                manifest["ms_per_frame"] = {k: round(1000 * v / timed, 2) for k, v in seconds.items()}
                write_json_atomic(manifest_path, manifest)
                bar.update(task, completed=done)
    finally:
        decoded.close()  # closes the container now, not at garbage collection
    if n < 2:
        raise VideoError(video, f"too short: decoded {n} frames from frame {start}, need at least 2")


def _label_chunk(window, first, full, box, size, skips, flow_ex, labelers, seconds) -> dict[str, np.ndarray]:
    """All streams of one chunk. ``window`` (first + c, s, s, 3) holds ``first`` earlier clip frames and
    then the chunk's; ``full`` (c, h, w, 3) the chunk's source frames. Frames with no frame ``k`` before
    them (the video's first) get zero flow at skip ``k``."""
    c = len(full)
    out = {"frames": window[first:]}
    for k in skips:
        tick = time.perf_counter()
        flow = np.zeros((c, size, size, 2), np.float32)  # (c, s, s, 2)
        valid = min(c, max(0, first + c - k))  # the last `valid` chunk frames have a frame k before them
        if valid:
            cur = window[len(window) - valid :]
            flow[c - valid :] = flow_ex(window[len(window) - valid - k : len(window) - k], cur)
        out[flow_stream(k)] = flow
        seconds["flow"] += time.perf_counter() - tick
    for labeler in labelers:
        tick = time.perf_counter()
        out |= labeler(full, box, size)
        seconds[labeler.kind] += time.perf_counter() - tick
    return out


def _cache_stats(arrays: dict[str, np.ndarray], streams: dict[str, StreamSpec], n: int, batch: int = 64):
    """Statistics of every stream's values over the valid frames (flow at skip k from frame k on)."""
    stats = {}
    for name, array in arrays.items():
        first = int(name.split("_")[1]) if name.startswith("flow_") else 0
        decode = streams[name].decode
        batches = (decode(np.asarray(array[i : min(i + batch, n)])) for i in range(first, n, batch))
        stats[name] = stream_stats(_stream_kind(name), batches)
    return stats


class Cache:
    """Read access to a complete cache directory: its manifest and memory-mapped streams."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        self.manifest = load_manifest(self.dir)
        if not self.manifest["complete"]:
            done, n = self.manifest["done"], self.manifest["n_frames"]
            raise ValueError(f"{self.dir}: extraction incomplete ({done}/{n} frames); run extract() again")
        self.n_frames: int = self.manifest["n_frames"]
        self.fps: float = self.manifest["video"]["fps"]
        self.skips: tuple[int, ...] = tuple(self.manifest["skips"])
        self.stats: dict[str, Any] = self.manifest["stats"]

    @property
    def streams(self) -> list[str]:
        return list(self.manifest["streams"])

    def spec(self, name: str) -> StreamSpec:
        if name not in self.manifest["streams"]:
            raise KeyError(f"{self.dir}: no stream {name!r}; streams are {self.streams}")
        entry = self.manifest["streams"][name]
        return StreamSpec(tuple(entry["shape"]), entry["dtype"], entry["units"], entry["scale"], entry["offset"])

    def stream(self, name: str) -> np.ndarray:
        """(n_frames, ...) read-only memory map of one stream as stored (codes, for quantised streams)."""
        self.spec(name)
        return np.load(self.dir / self.manifest["streams"][name]["file"], mmap_mode="r")[: self.n_frames]


def video_source_stats(
    cache: Cache | str | os.PathLike,
    skips: Sequence[int] | None = None,
    log_depth: bool = True,
    sky_to_zero: bool = False,
):
    """The renderer's conditioning statistics of a cached video (``neural_render`` source "video").

    Depth is fitted on every frame (with the sky at 0 if `sky_to_zero`: see `train.sky`); flow is the
    mixture the dataset draws (skips equally likely), so its mean and std come from each skip's fit:
    mean = avg(m_k), var = avg(s_k^2 + m_k^2) - mean^2.
    """
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    skips = tuple(skips) if skips is not None else cache.skips
    depth = cached_depth(cache, sky_to_zero)  # (n, s, s, 1)
    fits = [fit_source_stats(depth[k:], cache.stream(flow_stream(k))[k:], log_depth=log_depth) for k in skips]
    means = np.array([f.flow_mean for f in fits])  # (skips, 2)
    stds = np.array([f.flow_std for f in fits])
    mean = means.mean(axis=0)
    std = np.sqrt(np.maximum((stds**2 + means**2).mean(axis=0) - mean**2, 0.0))
    whole = fit_source_stats(depth, cache.stream(flow_stream(min(skips))), log_depth=log_depth)  # every frame
    return SourceStats(
        depth_floor=whole.depth_floor,
        depth_mean=whole.depth_mean,
        depth_std=whole.depth_std,
        flow_mean=tuple(mean),
        flow_std=tuple(std),
        frames=cache.n_frames,
    )
