"""Atomic file output, the one home for it: write beside the target, then move into place.

A reader — or a resumed run, or a user who pressed Ctrl-C — sees the old file or the new one, never half of
one. Used by checkpoints here and by `train` and `agents` (they import it from here). No torch import.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "temporary_path", "publish"]


def temporary_path(path: str | os.PathLike) -> Path:
    """A new empty hidden file beside `path`, with the same extension (writers that go by the extension,
    like OpenCV, PyAV or SB3, keep working)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(handle)
    return Path(temporary)


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
        yield temporary
        publish(temporary, path, sync=sync)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    with atomic_path(path, sync=sync) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, sync: bool = True) -> None:
    with atomic_path(path, sync=sync) as temporary:
        temporary.write_text(text)
