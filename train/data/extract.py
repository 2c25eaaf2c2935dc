"""Pseudo-label extraction: decode a video once and write its label store (`spokester_train.data.store`).

    python -m spokester_train.data.extract VIDEO[@START[:END]] [...] --labels runs/labels --size 256 [--depth pydnet]

Frames are decoded from the first unfinished one, labelled chunk by chunk, and each chunk is flushed before
the manifest's `done` count advances (the manifest is replaced atomically), so a killed extraction resumes
at the first unfinished chunk and a complete store is found again, not redone. A store whose files fail
verification (`spokester_train.data.store.verify_streams`: truncated, empty, missing) is extracted anew,
with one line on stderr naming the damaged file. The command prints each store folder and a summary of its
manifest as one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spokester_env.commandline import CommandLine, at_least, user_errors
from spokester_env.output import atomic_write_text
from spokester_train.data.extractors import DEFAULT_EXTRACTORS, ExtractorSpec, FrameLabeler, StreamSpec, build_extractor
from spokester_train.data.store import (
    LABEL_ROOT_HELP,
    MANIFEST,
    STORE_VERSION,
    LabelStore,
    LabelStoreError,
    default_label_root,
    flow_stream,
    load_manifest,
    planned_rows,
    verify_streams,
)
from spokester_train.data.stream_stats import stream_stats
from spokester_train.data.video import DEFAULT_SKIPS, VideoError, crop_resize, iter_frames, parse_video, probe_video

__all__ = ["extract", "extractor_specs", "file_record", "file_sha256", "main"]

FLOW_UNITS = "pixels per clip frame at skip k; position at t minus position at t-k, on frame t's grid"


def file_sha256(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """Content hash of a file (a store follows the video's bytes, not its name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """{"file": name, "bytes": size, "sha256": content hash, **extra} of a file (of every file in a folder,
    hashed in name order, for a folder)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        digest = _folder_sha256(files, path)
        return {"file": path.name, "bytes": sum(p.stat().st_size for p in files), "sha256": digest, **extra}
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path), **extra}


def _folder_sha256(files: Sequence[Path], root: Path) -> str:
    """One sha256 over the relative names and content hashes of `files`."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(root)}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Replace the manifest atomically: a reader (or a resumed run) sees the old one or the new one."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _stream_kind(name: str) -> str:
    return "flow" if name.startswith("flow_") else name


def extract(
    video: str | os.PathLike,
    root: str | os.PathLike | None = None,
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
    """Extract (or find) the label store of `video` at `size` x `size` under `root` (None: the per-user cache,
    `default_label_root()`); return its folder. A store made anew is named in one line on stderr.

    Extractors are names, `{"name": ..., **options}` dicts or instances (None leaves that stream out).
    `start`/`max_frames` choose a frame range. A complete store is returned untouched; an incomplete one (a
    killed run) is resumed; a damaged one (a file fails `verify_streams`) is extracted anew.
    """
    info = probe_video(video)
    skips = tuple(sorted({int(k) for k in skips})) if flow is not None else ()
    if skips and skips[0] < 1:
        raise ValueError(f"frame skips must be >= 1, got {skips}")
    flow_ex = build_extractor("flow", flow) if flow is not None else None
    labelers = [build_extractor(k, s) for k, s in (("depth", depth), ("teacher", teacher)) if s is not None]
    n_planned = planned_rows(info.n_frames, start, max_frames)
    if n_planned < 2:
        raise VideoError(video, f"too short: {max(n_planned, 0)} frames from frame {start}, need at least 2")

    streams = _streams(size, skips, labelers)
    extractors = {"flow": flow_ex.config() if flow_ex else None}
    extractors |= {lab.kind: lab.config() for lab in labelers}
    identity = {
        "version": STORE_VERSION,
        "video_sha256": file_sha256(video),
        "size": size,
        "start": start,
        "max_frames": max_frames,
        "skips": list(skips),
        "extractors": extractors,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    store_dir = Path(root if root is not None else default_label_root()) / f"{Path(video).stem}-{size}px-{key}"
    manifest_path = store_dir / MANIFEST

    manifest = _reusable_manifest(store_dir, identity)
    if manifest is not None and manifest["complete"]:
        return store_dir
    if manifest is not None:
        arrays = {name: np.lib.format.open_memmap(store_dir / f"{name}.npy", mode="r+") for name in streams}
    else:
        store_dir.mkdir(parents=True, exist_ok=True)
        arrays = {
            name: np.lib.format.open_memmap(
                store_dir / f"{name}.npy", mode="w+", dtype=spec.dtype, shape=(n_planned, *spec.shape)
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
            "rows": n_planned,
            "n_frames": n_planned,
            "done": 0,
            "complete": False,
            "ms_per_frame": {},
            "stats": None,
        }
        _write_manifest(manifest_path, manifest)

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
    manifest["stats"] = _store_stats(arrays, streams, manifest["n_frames"])
    manifest["complete"] = True
    _write_manifest(manifest_path, manifest)
    print(f"{Path(video).name}: labels written to {store_dir}", file=sys.stderr)
    return store_dir


def _reusable_manifest(store_dir: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of the store already in `store_dir` (to return, or to resume), or None to extract it anew:
    there is none, or one of its files is damaged. A damaged store is said on stderr in one line and its
    manifest and arrays are removed (the manifest first: a killed re-extraction never looks complete), the
    files made from its streams (the grown sky mask) with them."""
    if not (store_dir / MANIFEST).is_file():
        return None
    try:
        manifest = load_manifest(store_dir)
        if manifest.get("identity") != identity:
            raise ValueError(f"{store_dir}: manifest does not match this request; delete the folder")
        verify_streams(store_dir, manifest)
        return manifest
    except LabelStoreError as error:
        sys.stderr.write(f"{error.path}: {error.reason}; extracting the store again\n")
    (store_dir / MANIFEST).unlink()
    for array in store_dir.glob("*.npy"):
        if not array.name.startswith("."):  # not another writer's temporary
            array.unlink()
    return None


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
        with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
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
                _write_manifest(manifest_path, manifest)
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


def _store_stats(arrays: dict[str, np.ndarray], streams: dict[str, StreamSpec], n: int, batch: int = 64):
    """Statistics of every stream's values over the valid frames (flow at skip k from frame k on)."""
    stats = {}
    for name, array in arrays.items():
        first = int(name.split("_")[1]) if name.startswith("flow_") else 0
        decode = streams[name].decode
        batches = (decode(np.asarray(array[i : min(i + batch, n)])) for i in range(first, n, batch))
        stats[name] = stream_stats(_stream_kind(name), batches)
    return stats


def extractor_specs(flow: str | None, depth: str | None, teacher: str | None, weights: str | None = None) -> dict:
    """{kind: spec} from extractor names ("none" or None leaves a kind out); `weights` is the local weights
    folder that the extractors other than the shipped offline ones need."""
    shipped = {DEFAULT_EXTRACTORS["depth"], DEFAULT_EXTRACTORS["teacher"], DEFAULT_EXTRACTORS["flow"]}
    specs = {}
    for kind, name in (("flow", flow), ("depth", depth), ("teacher", teacher)):
        if name is None or name.lower() == "none":
            continue
        specs[kind] = name if weights is None or name in shipped else {"name": name, "weights": weights}
    return specs


def add_extractor_options(parser) -> None:
    """The extractor options of every command that extracts (this one, training, evaluation)."""
    parser.add_argument("--flow", default=None, help=f"flow extractor name (default {DEFAULT_EXTRACTORS['flow']})")
    parser.add_argument("--depth", default=None, help=f"depth extractor name (default {DEFAULT_EXTRACTORS['depth']})")
    parser.add_argument("--teacher", default=None,
                        help=f"teacher extractor name, or none (default {DEFAULT_EXTRACTORS['teacher']})")  # fmt: skip
    parser.add_argument("--weights", default=None, help="local weights folder for extractors that need one")


def main(argv: Sequence[str] | None = None) -> list[str]:
    parser = CommandLine(prog="python -m spokester_train.data.extract", description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files (mp4, webm, mkv, avi), PATH[@START[:END]]")
    parser.add_argument("--labels", default=None, help=LABEL_ROOT_HELP)
    parser.add_argument("--size", type=at_least(16), default=256, help="side of the square clip frames, pixels")
    add_extractor_options(parser)
    parser.add_argument("--skips", default="1,2,3", help="frame skips to store flow for, comma-separated")
    parser.add_argument("--start", type=at_least(0), default=0, help="first source frame")
    parser.add_argument("--max-frames", type=at_least(2), default=None, help="at most this many frames")
    parser.add_argument("--chunk", type=at_least(1), default=16, help="frames per written chunk")
    args = parser.parse_args(argv)
    if not all(k.strip().isdigit() and int(k) >= 1 for k in args.skips.split(",") if k.strip()):
        parser.error(f"--skips {args.skips!r}: comma-separated integers >= 1")
    names = {kind: getattr(args, kind) or DEFAULT_EXTRACTORS[kind] for kind in ("flow", "depth", "teacher")}
    specs = extractor_specs(**names, weights=args.weights)
    done = []
    with user_errors(parser.prog):
        for video in args.videos:
            spec = parse_video(video)  # PATH@START[:END] chooses its own range, as in training
            ranged = "@" in str(video)
            store_dir = extract(
                spec.path,
                args.labels,
                size=args.size,
                flow=specs.get("flow"),
                depth=specs.get("depth"),
                teacher=specs.get("teacher"),
                skips=[int(k) for k in args.skips.split(",") if k.strip()],
                start=spec.start if ranged else args.start,
                max_frames=spec.frames if ranged else args.max_frames,
                chunk_frames=args.chunk,
            )
            store = LabelStore(store_dir)
            summary = {
                "labels": str(store_dir),
                "frames": store.n_frames,
                "fps": store.fps,
                "ms_per_frame": store.manifest["ms_per_frame"],
            }
            print(json.dumps(summary))
            done.append(str(store_dir))
    return done


if __name__ == "__main__":
    main()
