"""Writing files, the project's one home for it: atomic replacement, the H.264 video writer, PNG pictures.

Atomic output: write beside the target, flush to disk, then move into place (`os.replace`), so a reader — or
a resumed run, or a user who pressed Ctrl-C, or a kill -9 — sees the old file or the new one, never half of
one. Every package writes through here (env, renderer checkpoints, training, recordings). A temporary file is
named `.NAME.PID.XXXXXXXX.EXT` after its target and the process writing it; one left by a killed process is
removed the next time anything writes the same target. An OSError while writing (a full disk, a read-only
folder) names the file it was for. `check_output` checks a command's output path before any work starts.
Nothing here imports torch; PyAV and OpenCV are imported when a video or a picture is written.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "VIDEO_CRF",
    "VideoWriter",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output",
    "naming_errors",
    "publish",
    "remove_stale_temporaries",
    "temporary_path",
    "write_png",
    "write_video",
]

VIDEO_CRF = 18
"""H.264 constant rate factor of every mp4 the project writes (18: visually lossless for these frames)."""


def temporary_path(path: str | os.PathLike) -> Path:
    """A new empty hidden file beside `path`, with the same extension (writers that go by the extension,
    like OpenCV, PyAV or SB3, keep working). Temporaries of `path` left by processes that no longer run are
    removed first."""
    path = Path(path)
    with naming_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        prefix = f".{path.name}.{os.getpid()}."
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=path.suffix or ".tmp")
    os.close(handle)
    return Path(temporary)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of `path` (`temporary_path`'s names, files or folders: `.NAME.PID.*`) whose
    writing process has ended; returns them. Those of live processes (another writer of the same file) are left
    alone."""
    path = Path(path)
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def naming_errors(path: str | os.PathLike) -> Iterator[None]:
    """An OSError inside that names no file (a full disk while writing: "[Errno 28] No space left on device")
    is raised again naming `path`."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror, str(path)) from error


def check_output(path: str | os.PathLike, *, folder: bool = False, option: str = "--out") -> Path:
    """Before any work: make sure `path` can be written — as a file (not a folder; its folder exists or can be
    made, and takes files) or, with `folder`, as a folder — and that its disk is not full. Raises one-line
    OSErrors naming `option` and the path; creates nothing."""
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if folder and path.exists() and not path.is_dir():
        raise FileExistsError(f"{where}: is a file, not a folder")
    if not folder and path.is_dir():
        raise IsADirectoryError(f"{where}: is a folder; give a file name")
    existing = (path if folder else path.parent).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{where}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".spokester-write-check.")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise type(error)(f"{where}: cannot write in {existing} ({error.strerror or error})") from None
    if shutil.disk_usage(existing).free == 0:
        raise OSError(f"{where}: no space left on the disk of {existing}")
    return path


def publish(temporary: str | os.PathLike, path: str | os.PathLike, *, sync: bool = True) -> None:
    """Flush a finished temporary file to disk, give it an ordinary file's permissions, move it to `path`."""
    if sync:
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600 files
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is deleted."""
    temporary = temporary_path(path)
    try:
        with naming_errors(path):
            yield temporary
            publish(temporary, path, sync=sync)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data`, atomically."""
    with atomic_path(path, sync=sync) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, sync: bool = True) -> None:
    """Replace `path` with `text`, atomically."""
    with atomic_path(path, sync=sync) as temporary:
        temporary.write_text(text)


class VideoWriter:
    """A video written frame by frame with PyAV: H.264 (crf `VIDEO_CRF`, yuv420p) by default.

    Frames are (h, w, 3) uint8 RGB; odd sizes are padded to even by repeating the last row or column (yuv420p
    needs even sides). Writes `path` itself: wrap it in `atomic_path` (as `write_video` does) for a file that
    appears only when complete. Other codecs ("libvpx-vp9", "ffv1", "mpeg4") take their own defaults.
    """

    def __init__(self, path: str | os.PathLike, fps: float, codec: str = "libx264", crf: int = VIDEO_CRF):
        import av

        self._av = av
        self.container = av.open(str(path), mode="w")
        self.fps, self.codec, self.crf = fps, codec, crf
        self.stream = None

    def write(self, frame: np.ndarray) -> None:
        """Encode one (h, w, 3) uint8 RGB frame."""
        frame = np.asarray(frame, dtype=np.uint8)
        lossless = self.codec == "ffv1"
        h, w = frame.shape[:2]
        if not lossless and (h % 2 or w % 2):
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height = frame.shape[1], frame.shape[0]
            self.stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
            if self.codec == "libx264":
                self.stream.options = {"crf": str(self.crf)}
        picture = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        self.container.mux(self.stream.encode(picture))

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self.stream is not None:
            self.container.mux(self.stream.encode())
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, codec: str = "libx264", crf: int = VIDEO_CRF
) -> Path:
    """Write frames (t, h, w, 3) uint8 RGB as a video (H.264 mp4 by default), atomically."""
    path = Path(path)
    with atomic_path(path) as temporary, VideoWriter(temporary, fps, codec, crf) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (h, w, 3) uint8 RGB image as a PNG, atomically (needs OpenCV: the `train` extra)."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError('writing PNGs needs OpenCV: pip install "spokester[train]"') from error
    path = Path(path)
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), np.ascontiguousarray(np.asarray(image)[..., ::-1])):
            raise OSError(f"{path}: could not write the PNG")
    return path
