"""The sky of a real video at inverse depth 0: the grown mask, lazy reads, what clips and sources see."""

import os
import shutil

import numpy as np
import pytest

from spokester_train.data.clips import StoredClips
from spokester_train.data.extract import extract
from spokester_train.data.sky import grow_sky, sky_mask
from spokester_train.data.sources import video_source
from spokester_train.data.store import LabelStore
from spokester_train.data.video import ClipSpec
from spokester_train.data.video_depth import read_depth


def test_sky_to_zero_reads_the_depth_networks_sky_as_the_games(road_clip, tmp_path):
    """Where deeplab says sky, depth reads 0 (the game's sky) in clips, stats and lazy slices; elsewhere as stored."""
    store_dir = extract(road_clip, tmp_path, size=32, max_frames=5, chunk_frames=3, skips=(1,), progress=False)
    store = LabelStore(store_dir)
    raw, seed = store.stream("depth").astype(np.float32), store.stream("sky") > 0
    sky = np.asarray(sky_mask(store)) > 0
    assert (store_dir / "sky_grown.npy").is_file() and np.all(sky[seed])  # grown from deeplab's sky, stored
    assert 0.02 < sky.mean() < 0.6 and raw[sky].min() > 0.01  # PyDNet's sky is not 0, the mask finds some
    masked = np.asarray(read_depth(store, sky_to_zero=True))[..., 0]
    assert np.all(masked[sky] == 0) and np.array_equal(masked[~sky], raw[~sky])
    assert np.array_equal(np.asarray(read_depth(store, sky_to_zero=True)[1:3]), masked[1:3, ..., None])  # a lazy slice
    depth = StoredClips(store_dir, clip_len=2, sky_to_zero=True).clip(ClipSpec(1, 1, 2))["depth"][..., 0].numpy()
    assert np.array_equal(depth, masked[1:3])
    plain, zeroed = video_source(store), video_source(store, sky_to_zero=True)
    log_depth = np.log(np.maximum(masked.astype(np.float64), zeroed.depth_floor))
    assert zeroed.depth_mean == pytest.approx(log_depth.mean(), rel=1e-6)
    assert zeroed.depth_mean < plain.depth_mean - 0.5 and zeroed.depth_std > plain.depth_std  # sky at the floor
    assert zeroed.flow_mean == plain.flow_mean


def test_grow_sky_follows_a_clear_sky_and_stops_at_edges_and_near_things():
    """A blue gradient sky above a green hill: a strip of seed grows over the whole sky and nothing else."""
    side = 64
    frame = np.zeros((side, side, 3), np.uint8)
    rows = np.arange(side)[:, None]
    frame[:32] = np.stack([40 + rows[:32] * 2, 90 + rows[:32] * 2, np.full((32, 1), 220)], -1)  # 2 levels a row
    frame[32:] = (40, 120, 40)  # the hill
    depth = np.full((side, side), 0.05, np.float32)
    depth[32:, 32:] = 0.2  # the right half of the hill is nearer than the sky; the left half only differs in colour
    depth[2:6, 50:54] = 0.5  # a near object painted exactly like the sky around it
    seed = np.zeros((side, side), bool)
    seed[20:24, 10:30] = True  # what the segmentation found
    grown = grow_sky(frame, seed, depth)
    expected = np.zeros((side, side), bool)
    expected[:32] = True
    expected[2:6, 50:54] = False
    assert np.array_equal(grown, expected)
    assert not grow_sky(frame, np.zeros_like(seed), depth).any()  # nothing to grow from


def test_sky_to_zero_needs_a_sky_mask(small, road_clip, tmp_path):
    store_dir = small(small.depth())
    with pytest.raises(ValueError, match="sky_to_zero needs a sky mask in the label store"):
        StoredClips(store_dir, clip_len=2, sky_to_zero=True)
    with pytest.raises(ValueError, match="sky_to_zero needs a sky mask in the label store"):
        video_source(store_dir, sky_to_zero=True)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_grown_sky_mask_is_made_again(road_stores, tmp_path, capsys, damage):
    store_dir = shutil.copytree(road_stores[0].dir, tmp_path / road_stores[0].dir.name)
    (store_dir / "sky_grown.npy").unlink(missing_ok=True)
    original = np.array(sky_mask(LabelStore(store_dir)))
    assert original.shape == (12, 32, 32) and original.any() and not original.all()
    path = store_dir / "sky_grown.npy"
    size = path.stat().st_size
    cut = size // 2 if damage == "truncated" else 0
    os.truncate(path, cut)
    capsys.readouterr()
    rebuilt = sky_mask(LabelStore(store_dir))
    np.testing.assert_array_equal(rebuilt, original)
    assert path.stat().st_size == size
    assert capsys.readouterr().err == f"{path}: {cut} bytes, expected {size} for (12, 32, 32) uint8; making it again\n"
    np.testing.assert_array_equal(sky_mask(LabelStore(store_dir)), original)  # found again, quietly
    assert capsys.readouterr().err == ""
