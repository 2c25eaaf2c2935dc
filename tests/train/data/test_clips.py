"""Training clips read from a label store: seeded, at their drawn skip, picklable for loader workers."""

import pickle

import numpy as np
import pytest
import torch

from train.data.clips import StoredClips
from train.data.extract import extract
from train.data.extractors import FrameLabeler, StreamSpec
from train.data.store import LabelStore
from train.data.video import ClipSpec, crop_resize

SIZE, FRAMES, CHUNK = 32, 20, 8


class CountingDepth(FrameLabeler):
    """A cheap deterministic depth stand-in that counts its calls and can die after some of them."""

    kind, name = "depth", "test-counting-depth"

    def __init__(self, fail_after_calls: int | None = None):
        self.calls = 0
        self.fail_after_calls = fail_after_calls  # not in config(): a dying run keys the same cache

    def streams(self, size):
        return {"depth": StreamSpec((size, size), "float32", "test: brightness + 0.1")}

    def __call__(self, frames, box, size):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated kill")
        self.calls += 1
        squares = np.stack([crop_resize(f, box, size) for f in frames]).astype(np.float32)
        return {"depth": squares.mean(axis=-1) / 255.0 + 0.1}


def _extract(road_clip, root, depth, flow="dis", **kwargs):
    options = dict(size=SIZE, max_frames=FRAMES, chunk_frames=CHUNK, teacher=None, progress=False)
    return extract(road_clip, root, flow=flow, depth=depth, **(options | kwargs))


def test_dataset_reads_seeded_clips_with_their_skip(road_clip, tmp_path):
    store_dir = _extract(road_clip, tmp_path, CountingDepth())
    store = LabelStore(store_dir)
    data = StoredClips(store_dir, clip_len=4, seed=1, clips_per_epoch=30)
    item = data[0]
    spec = data.spec(0)
    assert item["frames"].shape == (4, SIZE, SIZE, 3) and item["frames"].dtype == torch.uint8
    assert item["flow"].shape == (4, SIZE, SIZE, 2) and item["depth"].shape == (4, SIZE, SIZE, 1)
    np.testing.assert_array_equal(item["frames"].numpy(), store.stream("frames")[spec.indices])
    flow = store.stream(f"flow_{spec.skip}")[spec.indices].astype(np.float32)
    np.testing.assert_array_equal(item["flow"].numpy(), flow)
    assert item["flow"][0].abs().sum() > 0  # the first frame's flow comes from the frame before the clip
    assert item["fps"].item() == pytest.approx(25.0 / spec.skip) and item["skip"].item() == spec.skip
    torch.testing.assert_close(data[0]["frames"], item["frames"])
    specs = [data.spec(i) for i in range(len(data))]
    assert {s.skip for s in specs} == {1, 2, 3}
    assert all(s.previous >= 0 and s.indices[-1] < FRAMES for s in specs)
    data.set_epoch(1)
    assert [data.spec(i) for i in range(len(data))] != specs
    clone = pickle.loads(pickle.dumps(data))  # DataLoader workers get no copied memory maps
    assert len(pickle.dumps(data)) < 20_000
    torch.testing.assert_close(clone[3]["depth"], data[3]["depth"])
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=5)))
    assert batch["frames"].shape == (5, 4, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="outside the label store"):
        data.clip(ClipSpec(start=0, skip=1, length=4))  # no frame before the first: no flow for it
