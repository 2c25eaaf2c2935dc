"""Decode any video into square RGB frames and cut clips with a random frame skip.

Frames are uint8 RGB arrays. Letters in shape comments: ``t`` frames, ``h``/``w`` source height and
width, ``s`` the side of the square clip frames.

Every failure to read a file raises :class:`VideoError`, whose message is one line naming the file and
the reason, e.g. ``clip.mp4: too short: 12 frames, need at least 17 (16 frames at skip 1 + 1 previous)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
DEFAULT_SKIPS = (1, 2, 3)  # the seed's random frame skip: 1 to 3 source frames per clip frame


class VideoError(ValueError):
    """An unreadable, undecodable or too-short video; the message is one line: ``path: reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the decoder said
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class CropBox:
    """The centred square of a ``width`` x ``height`` frame, in source pixels."""

    x0: int
    y0: int
    side: int
    width: int
    height: int

    @classmethod
    def centred(cls, width: int, height: int) -> CropBox:
        side = min(width, height)
        return cls((width - side) // 2, (height - side) // 2, side, width, height)

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """(h, w, ...) -> (side, side, ...)."""
        return frame[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]

    def affine_from(self, grid_w: int, grid_h: int, size: int) -> np.ndarray:
        """2x3 map from a ``size``-square output pixel to a pixel of a grid covering the full frame.

        For ``cv2.warpAffine(..., flags=WARP_INVERSE_MAP)``: an extractor that saw the whole frame at
        ``grid_w`` x ``grid_h`` (e.g. a depth net at 640x192) is cropped and resized to the clip square
        in one resampling, pixel centres aligned.
        """
        sx, sy = grid_w / self.width, grid_h / self.height
        step = self.side / size  # source pixels per output pixel
        # output centre u+0.5 -> source x0 + (u+0.5)*step -> grid (that)*sx - 0.5
        return np.array(
            [
                [step * sx, 0.0, (self.x0 + 0.5 * step) * sx - 0.5],
                [0.0, step * sy, (self.y0 + 0.5 * step) * sy - 0.5],
            ]
        )


def crop_resize(frame: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (s, s, 3) uint8: centre crop then area (down) or linear (up) resize."""
    import cv2

    square = box.crop(frame)
    if box.side == size:
        return np.ascontiguousarray(square)
    interp = cv2.INTER_AREA if box.side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


@dataclass(frozen=True)
class VideoInfo:
    """What a video container says about its first video stream."""

    path: str
    width: int
    height: int
    fps: float
    n_frames: int  # from the container, or by counting packets when it does not say (webm, mkv)
    codec: str

    @property
    def box(self) -> CropBox:
        return CropBox.centred(self.width, self.height)


def _open(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(path, f"cannot open as a video ({type(exc).__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(path, "no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the header (and, where it has no frame count, the packet index) of ``path``."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise VideoError(path, "unknown frame rate")
        n_frames = int(stream.frames or 0)
        if n_frames == 0:
            try:
                n_frames = sum(1 for p in container.demux(stream) if p.size)
            except av.error.FFmpegError as exc:
                raise VideoError(path, f"cannot read packets ({type(exc).__name__}: {exc})") from exc
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoError(path, f"bad frame size {width}x{height}")
        return VideoInfo(str(path), width, height, float(rate), n_frames, stream.codec_context.name)


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield full RGB frames (h, w, 3) uint8 with index in [start, stop), decoding from the beginning."""
    import av

    container = _open(path)
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise VideoError(path, f"decode failed after frame {index} ({type(exc).__name__}: {exc})") from exc
    finally:
        container.close()
    if index < 0:
        raise VideoError(path, "no decodable frames")


@dataclass(frozen=True)
class Video:
    """Decoded square frames of a video and its source frame rate."""

    frames: np.ndarray  # (t, s, s, 3) uint8
    fps: float
    info: VideoInfo


def read_video(
    path: str | os.PathLike, size: int, start: int = 0, max_frames: int | None = None, min_frames: int = 1
) -> Video:
    """Decode ``path`` into centre-cropped ``size`` x ``size`` frames, recording the source fps."""
    info = probe_video(path)
    stop = None if max_frames is None else start + max_frames
    frames = [crop_resize(f, info.box, size) for f in iter_frames(path, start, stop)]
    if len(frames) < min_frames:
        raise VideoError(path, f"too short: {len(frames)} frames from {start}, need at least {min_frames}")
    return Video(np.stack(frames), info.fps, info)


@dataclass(frozen=True)
class ClipSpec:
    """A clip of a video: source frames ``start, start+skip, ...`` (``length`` of them), ``mirrored`` left to
    right when asked (`StoredClips` with ``mirror``)."""

    start: int
    skip: int
    length: int
    mirrored: bool = False

    @property
    def indices(self) -> np.ndarray:
        return self.start + self.skip * np.arange(self.length)

    @property
    def previous(self) -> int:
        """The source frame one clip step before the first; its motion gives the first frame's flow."""
        return self.start - self.skip


def min_frames_for(length: int, skip: int, with_previous: bool = True) -> int:
    """Source frames a clip of ``length`` frames at ``skip`` spans (plus the one before it for flow)."""
    return (length - 1) * skip + 1 + (skip if with_previous else 0)


def sample_clip(
    n_frames: int,
    length: int,
    rng: np.random.Generator,
    skips: Sequence[int] = DEFAULT_SKIPS,
    with_previous: bool = True,
    name: str = "video",
) -> ClipSpec:
    """Draw a skip uniformly from those that fit, then a start uniformly; ``name`` labels errors."""
    if length < 1 or not skips or min(skips) < 1:
        raise ValueError(f"bad clip request: length {length}, skips {tuple(skips)}")
    fitting = [k for k in skips if min_frames_for(length, k, with_previous) <= n_frames]
    if not fitting:
        k = min(skips)
        need = min_frames_for(length, k, with_previous)
        extra = f" + {k} previous" if with_previous else ""
        raise VideoError(
            name, f"too short: {n_frames} frames, need at least {need} ({length} frames at skip {k}{extra})"
        )
    skip = int(rng.choice(fitting))
    first = skip if with_previous else 0
    last = n_frames - (length - 1) * skip - 1  # inclusive
    return ClipSpec(int(rng.integers(first, last + 1)), skip, length)


def cut_clips(n_frames: int, length: int, skip: int = 1, with_previous: bool = True) -> list[ClipSpec]:
    """Consecutive non-overlapping clips covering the video (e.g. for evaluation)."""
    span = (length - 1) * skip + 1
    start = skip if with_previous else 0
    return [ClipSpec(s, skip, length) for s in range(start, n_frames - span + 1, length * skip)]


def read_clip(
    path: str | os.PathLike,
    size: int,
    length: int,
    rng: np.random.Generator,
    skips: Sequence[int] = DEFAULT_SKIPS,
) -> tuple[np.ndarray, ClipSpec, float]:
    """Decode one random clip straight from a file: ((t, s, s, 3) uint8, its spec, clip fps = fps/skip).

    The frame before the clip is not returned; it is only reserved so that a flow for frame 0 exists.
    """
    info = probe_video(path)
    spec = sample_clip(info.n_frames, length, rng, skips, name=str(path))
    wanted = set(spec.indices.tolist())
    frames = [
        crop_resize(f, info.box, size)
        for i, f in enumerate(iter_frames(path, spec.start, int(spec.indices[-1]) + 1), start=spec.start)
        if i in wanted
    ]
    if len(frames) < length:  # the container's count was too optimistic
        raise VideoError(path, f"too short: decoding stopped at {len(frames)} of {length} clip frames")
    return np.stack(frames), spec, info.fps / spec.skip


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
