"""Fixtures for the train tests: the shipped road clip (never the shared data), label stores of it made once,
and tiny synthetic videos."""

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
def road_videos(road_clip) -> list[str]:
    """Two training videos: the first 12 and the first 9 frames of the road clip."""
    return [f"{road_clip}@0:12", f"{road_clip}@0:9"]


@pytest.fixture(scope="session")
def label_root(tmp_path_factory, road_videos):
    """A label store root holding the stores of `road_videos` at 32 px (skip 1, default extractors), made
    once for every test."""
    from spokester_train.data.extract import extract
    from spokester_train.data.video import parse_video

    root = tmp_path_factory.mktemp("labels")
    for spec in map(parse_video, road_videos):
        extract(spec.path, root, size=32, skips=(1,), start=spec.start, max_frames=spec.frames, progress=False)
    return root


@pytest.fixture
def road_stores(label_root, road_videos):
    """The `LabelStore`s of `road_videos` (found in `label_root`, not extracted again)."""
    from spokester_train.data.extract import extract
    from spokester_train.data.store import LabelStore
    from spokester_train.data.video import parse_video

    specs = [parse_video(v) for v in road_videos]
    options = dict(size=32, skips=(1,), progress=False)
    return [LabelStore(extract(s.path, label_root, start=s.start, max_frames=s.frames, **options)) for s in specs]


@pytest.fixture(scope="session")
def road_full_frames(road_clip) -> np.ndarray:
    """The first 4 full (uncropped) frames of the road clip, (4, 180, 320, 3) uint8."""
    from spokester_train.data.video import iter_frames

    return np.stack(list(iter_frames(road_clip, 0, 4)))


@pytest.fixture(scope="session")
def road_box(road_clip):
    from spokester_train.data.video import probe_video

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
