"""Fixtures for the train tests: the shipped road clip (never the shared data) and tiny synthetic videos."""

from pathlib import Path

import numpy as np
import pytest

ROAD_CLIP = Path(__file__).resolve().parents[1] / "data" / "road_clip.mp4"


@pytest.fixture(scope="session")
def road_clip() -> Path:
    """The 64-frame, 320x180, 25 fps freeway clip shipped in tests/data (MIT, Udacity)."""
    assert ROAD_CLIP.is_file(), ROAD_CLIP
    return ROAD_CLIP


@pytest.fixture(scope="session")
def road_full_frames(road_clip) -> np.ndarray:
    """The first 4 full (uncropped) frames of the road clip, (4, 180, 320, 3) uint8."""
    from train.video import iter_frames

    return np.stack(list(iter_frames(road_clip, 0, 4)))


@pytest.fixture(scope="session")
def road_box(road_clip):
    from train.video import probe_video

    return probe_video(road_clip).box


def _banded_frames(n: int = 12, width: int = 96, height: int = 64) -> np.ndarray:
    """Synthetic frames: red left and blue right bands outside the centre square, whose green level
    encodes the frame index (20 + 15 i), so crops and frame picks can be read back after lossy coding."""
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    band = (width - height) // 2
    frames[:, :, :band] = (255, 0, 0)
    frames[:, :, width - band :] = (0, 0, 255)
    for i in range(n):
        frames[i, :, band : width - band, 1] = 20 + 15 * i
    return frames


def _frame_index(frames: np.ndarray) -> np.ndarray:
    """Read back the index that ``banded_frames`` encoded in the green level of each frame."""
    return np.round((frames[..., 1].astype(np.float64).mean(axis=(1, 2)) - 20) / 15).astype(int)


@pytest.fixture
def banded_frames():
    """Factory of synthetic banded frames (see ``_banded_frames``)."""
    return _banded_frames


@pytest.fixture
def frame_index():
    """Reader of the frame index encoded by ``banded_frames``."""
    return _frame_index
