"""Batches from several label stores: balanced videos, decoded on the device, loader workers, exact resume."""

import shutil

import pytest
import torch

from neural_render import ConditionStats
from neural_render.layout import from_uint8
from spokester_train.data.batches import ClipBatches
from spokester_train.data.extract import extract
from spokester_train.data.sources import video_source, video_source_name
from spokester_train.data.store import LabelStore

SIZE = 32
NAMES = ["video/road_clip", "video/road_clip"]  # both stores are cut from the road clip: one source
on_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _stats(stores) -> ConditionStats:
    return ConditionStats(sources={"video/road_clip": video_source(stores[0], (1,), sky_to_zero=True)})


def test_balanced_batches_draw_every_video_equally(road_stores):
    """Stores of 12 and 9 frames hold 5 and 4 clips of 2 frames; balanced, each gives 4 (the mean, rounded)."""
    stats = _stats(road_stores)
    plain = ClipBatches(road_stores, NAMES, stats, clip_frames=2, skips=(1,), seed=0, teacher=False)
    assert [len(d) for d in plain.datasets] == [5, 4] and plain.offsets[-1] == 9
    balanced = ClipBatches(road_stores, NAMES, stats, 2, (1,), 0, False, balance=True)
    assert [len(d) for d in balanced.datasets] == [4, 4] and balanced.offsets[-1] == 8
    assert sorted(int(i >= 4) for i in balanced._order) == [0] * 4 + [1] * 4
    batch = balanced.next(8, "cpu")  # one epoch; the sky sits at the depth floor, far below the mean
    assert batch["cond"].shape == (8, 2, SIZE, SIZE, 3) and float(batch["cond"][..., 0].min()) < -1.0
    assert all(d.sky_to_zero for d in balanced.datasets)  # read as the source says its depth was fitted
    with pytest.raises(ValueError, match="2 label stores but 1 condition source names"):
        ClipBatches(road_stores, NAMES[:1], stats, 2, (1,), 0, False)


def test_batches_decode_on_the_device_what_the_clips_decode_on_the_host(label_root, road_clip, road_stores, tmp_path):
    """A batch gathered as stored and decoded at the end equals each clip decoded by `StoredClips`
    (uint8 frames to [-1, 1], depth and flow normalised with that video's own statistics, teacher codes
    dequantised), across two videos with different statistics."""
    other = tmp_path / "other_road.mp4"
    shutil.copy(road_clip, other)
    stores = [road_stores[0], LabelStore(extract(other, label_root, size=SIZE, skips=(1,), start=3, max_frames=9))]
    sources = [video_source_name("road_clip"), video_source_name("other_road")]
    parts = [video_source(store, (1,), sky_to_zero=True) for store in stores]
    assert parts[0].depth_mean != parts[1].depth_mean  # different frames, different statistics
    stats = ConditionStats(sources=dict(zip(sources, parts, strict=True)))
    batches = ClipBatches(stores, sources, stats, 2, (1,), seed=3, teacher=True)
    order = [int(i) for i in batches._order[:8]]
    assert {int(i >= batches.offsets[1]) for i in order} == {0, 1}  # both videos in the batch
    batch = batches.next(8, "cpu")
    for row, index in enumerate(order):
        video = int(index >= batches.offsets[1])
        clip = batches.datasets[video][index - int(batches.offsets[video])]
        torch.testing.assert_close(batch["x"][row], from_uint8(clip["frames"]))
        torch.testing.assert_close(batch["cond"][row], stats.normalize(clip["depth"], clip["flow"], sources[video]))
        torch.testing.assert_close(batch["teacher"][row], clip["teacher"])
    assert batch["teacher"].dtype == torch.float32 and float(batch["teacher"].std()) > 0


def test_loader_workers_give_the_same_batches_and_resume_exactly(road_stores):
    """With DataLoader workers running ahead, the batches (across an epoch boundary) and the saved state
    are those of the synchronous path, and a resumed loader continues with the same next batch."""
    stats = _stats(road_stores)

    def make(workers):
        return ClipBatches(road_stores, NAMES, stats, 2, (1,), 5, True, workers=workers)

    plain = make(0)
    assert plain.offsets[-1] == 9  # 3 batches of 4 cross into the second epoch
    with make(2) as ahead:
        for _ in range(3):
            expected, got = plain.next(4, "cpu"), ahead.next(4, "cpu")
            for key in ("x", "cond", "teacher"):
                torch.testing.assert_close(got[key], expected[key])
            assert ahead.state() == plain.state()
        state = ahead.state()
    assert state == {"epoch": 1, "cursor": 3} and ahead._loader is None
    with make(2) as resumed:
        resumed.load_state(state)
        torch.testing.assert_close(resumed.next(4, "cpu")["x"], plain.next(4, "cpu")["x"])
    with pytest.raises(ValueError, match="workers=-1: must be >= 0"):
        make(-1)


@pytest.mark.gpu
@on_cuda
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_decoded_on_the_gpu_equal_the_cpu_ones(road_stores, workers):
    stores = road_stores[:1]
    stats = _stats(stores)
    cpu = ClipBatches(stores, NAMES[:1], stats, 2, (1,), 0, True)
    with ClipBatches(stores, NAMES[:1], stats, 2, (1,), 0, True, workers=workers) as gpu:
        for _ in range(2):
            expected, got = cpu.next(3, "cpu"), gpu.next(3, "cuda")
            for key in ("x", "cond", "teacher"):
                assert got[key].is_cuda
                torch.testing.assert_close(got[key].cpu(), expected[key], atol=1e-5, rtol=1e-5)
