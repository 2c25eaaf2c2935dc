"""Fixtures for the data tests: small extractions of the road clip with cheap extractors that count their calls."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from spokester_train.data.extract import extract
from spokester_train.data.extractors import FlowEstimator, FrameLabeler, StreamSpec, build_extractor
from spokester_train.data.video import crop_resize


class CountingDepth(FrameLabeler):
    """A cheap deterministic depth stand-in that counts its calls and can die after some of them."""

    kind, name = "depth", "test-counting-depth"

    def __init__(self, fail_after_calls: int | None = None):
        self.calls = 0
        self.fail_after_calls = fail_after_calls  # not in config(): a dying run keys the same store

    def streams(self, size):
        return {"depth": StreamSpec((size, size), "float32", "test: brightness + 0.1")}

    def __call__(self, frames, box, size):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated kill")
        self.calls += 1
        squares = np.stack([crop_resize(f, box, size) for f in frames]).astype(np.float32)
        return {"depth": squares.mean(axis=-1) / 255.0 + 0.1}


class CountingFlow(FlowEstimator):
    """DIS, counting the frame pairs it was asked for."""

    name = "dis"

    def __init__(self):
        self.dis, self.pairs = build_extractor("flow", "dis"), 0

    def config(self):
        return self.dis.config()

    def __call__(self, previous, current):
        self.pairs += len(current)
        return self.dis(previous, current)


@dataclass(frozen=True)
class SmallExtraction:
    """`extract` of the first `frames` frames of the road clip at `size` px, in chunks of `chunk`, without a
    teacher, into `root` (or another root)."""

    video: Path
    root: Path
    size: int = 32
    frames: int = 20
    chunk: int = 8
    depth: ClassVar[type] = CountingDepth
    flow: ClassVar[type] = CountingFlow

    def __call__(self, depth: FrameLabeler, flow="dis", root: Path | None = None, **kwargs) -> Path:
        options = dict(size=self.size, max_frames=self.frames, chunk_frames=self.chunk, teacher=None, progress=False)
        return extract(self.video, root or self.root, flow=flow, depth=depth, **(options | kwargs))


@pytest.fixture
def small(road_clip, tmp_path) -> SmallExtraction:
    return SmallExtraction(road_clip, tmp_path)
