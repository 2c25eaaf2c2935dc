"""Training clips read from a label store: seeded, at their drawn skip, picklable for loader workers."""

import pickle

import numpy as np
import pytest
import torch

from spokester_train.data.clips import StoredClips
from spokester_train.data.store import LabelStore
from spokester_train.data.video import ClipSpec


def test_dataset_reads_seeded_clips_with_their_skip(small, road_clip, tmp_path):
    store_dir = small(small.depth())
    store = LabelStore(store_dir)
    data = StoredClips(store_dir, clip_len=4, seed=1, clips_per_epoch=30)
    item = data[0]
    spec = data.spec(0)
    assert item["frames"].shape == (4, small.size, small.size, 3) and item["frames"].dtype == torch.uint8
    assert item["flow"].shape == (4, small.size, small.size, 2) and item["depth"].shape == (
        4,
        small.size,
        small.size,
        1,
    )
    np.testing.assert_array_equal(item["frames"].numpy(), store.stream("frames")[spec.indices])
    flow = store.stream(f"flow_{spec.skip}")[spec.indices].astype(np.float32)
    np.testing.assert_array_equal(item["flow"].numpy(), flow)
    assert item["flow"][0].abs().sum() > 0  # the first frame's flow comes from the frame before the clip
    assert item["fps"].item() == pytest.approx(25.0 / spec.skip) and item["skip"].item() == spec.skip
    torch.testing.assert_close(data[0]["frames"], item["frames"])
    specs = [data.spec(i) for i in range(len(data))]
    assert {s.skip for s in specs} == {1, 2, 3}
    assert all(s.previous >= 0 and s.indices[-1] < small.frames for s in specs)
    data.set_epoch(1)
    assert [data.spec(i) for i in range(len(data))] != specs
    clone = pickle.loads(pickle.dumps(data))  # DataLoader workers get no copied memory maps
    assert len(pickle.dumps(data)) < 20_000
    torch.testing.assert_close(clone[3]["depth"], data[3]["depth"])
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=5)))
    assert batch["frames"].shape == (5, 4, small.size, small.size, 3)
    with pytest.raises(ValueError, match="outside the label store"):
        data.clip(ClipSpec(start=0, skip=1, length=4))  # no frame before the first: no flow for it


def test_mirrored_clips_are_the_same_clips_flipped_left_to_right_with_the_flow_x_negated(small):
    """`mirror`: the same clips are drawn (start, skip) and about half of them are mirrored: frames, depth, flow,
    teacher grid, sky and car masks flipped left to right, the flow's x component negated, every other value as
    read unmirrored."""
    store_dir = small(small.depth(), teacher="deeplab")  # its teacher grid, sky and car masks
    plain = StoredClips(store_dir, clip_len=4, seed=1, clips_per_epoch=40, car_masks=True)
    mirror = StoredClips(store_dir, clip_len=4, seed=1, clips_per_epoch=40, car_masks=True, mirror=True)
    specs = [mirror.spec(i) for i in range(len(mirror))]
    assert [(s.start, s.skip) for s in specs] == [(s.start, s.skip) for s in map(plain.spec, range(len(plain)))]
    assert 10 <= sum(s.mirrored for s in specs) <= 30 and not any(plain.spec(i).mirrored for i in range(40))
    index = next(i for i, s in enumerate(specs) if s.mirrored)
    seen, unmirrored = mirror[index], plain[index]
    assert {"frames", "depth", "teacher", "sky", "cars"} <= set(seen)
    for name in ("frames", "depth", "teacher", "sky", "cars"):
        torch.testing.assert_close(seen[name], unmirrored[name].flip(2))
    for name in ("frames", "depth", "teacher"):  # (the road clip's masks may be symmetric or empty)
        assert not torch.equal(seen[name], unmirrored[name])
    torch.testing.assert_close(seen["flow"][..., 0], -unmirrored["flow"][..., 0].flip(2))
    torch.testing.assert_close(seen["flow"][..., 1], unmirrored["flow"][..., 1].flip(2))
    assert seen["skip"] == unmirrored["skip"] and seen["start"] == unmirrored["start"]
    kept = next(i for i, s in enumerate(specs) if not s.mirrored)
    torch.testing.assert_close(mirror[kept]["frames"], plain[kept]["frames"])
