"""The pseudo-label cache: written once, reused, resumable after a kill; the dataset reads clips from it."""

import json
import pickle

import numpy as np
import pytest
import torch

from neural_render.conditioning import ConditionStats
from train.cache import MANIFEST, Cache, extract, load_manifest, video_source_stats
from train.dataset import CachedClips
from train.extract import main as extract_main
from train.extractors import FlowEstimator, FrameLabeler, StreamSpec, build_extractor
from train.sky import SkyZeroDepth, grow_sky, sky_mask
from train.stats import PERCENTILES
from train.video import ClipSpec, VideoError, crop_resize, read_video

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


def _extract(road_clip, root, depth, flow="dis", **kwargs):
    options = dict(size=SIZE, max_frames=FRAMES, chunk_frames=CHUNK, teacher=None, progress=False)
    return extract(road_clip, root, flow=flow, depth=depth, **(options | kwargs))


def test_cache_holds_frames_flow_depth_and_a_manifest(road_clip, tmp_path):
    cache_dir = _extract(road_clip, tmp_path, CountingDepth())
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    assert manifest["complete"] and manifest["done"] == manifest["n_frames"] == FRAMES
    assert manifest["video"]["fps"] == 25.0 and len(manifest["video"]["sha256"]) == 64
    assert manifest["resolution"] == SIZE and manifest["skips"] == [1, 2, 3]
    assert manifest["extractors"]["flow"] == {"name": "dis", "preset": "medium"}
    assert manifest["extractors"]["depth"] == {"name": "test-counting-depth"}
    assert set(manifest["ms_per_frame"]) == {"decode", "flow", "depth"}

    cache = Cache(cache_dir)
    frames = read_video(road_clip, SIZE, max_frames=FRAMES).frames
    np.testing.assert_array_equal(cache.stream("frames"), frames)
    dis = build_extractor("flow", "dis")
    for k in (1, 2, 3):
        flow = cache.stream(f"flow_{k}")
        assert flow.shape == (FRAMES, SIZE, SIZE, 2) and flow.dtype == np.float16
        assert not flow[:k].any()  # no frame before the first: zero, and left out of the statistics
        # frames 8..10 need frames of the previous chunk: the chunk seams must not show
        expected = dis(frames[8 - k : 11 - k], frames[8:11])
        np.testing.assert_allclose(flow[8:11], expected, atol=2e-3, rtol=1e-3)
        stats = manifest["stats"][f"flow_{k}"]
        valid = flow[k:].astype(np.float64)
        assert stats["x"]["count"] == valid[..., 0].size
        assert stats["x"]["mean"] == pytest.approx(valid[..., 0].mean(), rel=1e-6)
        assert stats["magnitude"]["std"] == pytest.approx(np.hypot(valid[..., 0], valid[..., 1]).std(), rel=1e-5)
    # a larger skip spans more motion
    assert manifest["stats"]["flow_3"]["magnitude"]["mean"] > 1.5 * manifest["stats"]["flow_1"]["magnitude"]["mean"]
    log_depth = np.log(cache.stream("depth").astype(np.float64))
    depth_stats = manifest["stats"]["depth"]["log_inverse_depth"]
    assert depth_stats["mean"] == pytest.approx(log_depth.mean(), rel=1e-6)
    assert depth_stats["std"] == pytest.approx(log_depth.std(), rel=1e-5)
    assert depth_stats["percentiles"]["p50"] == pytest.approx(np.median(log_depth), abs=0.02)
    assert manifest["stats"]["depth"]["zero_fraction"] == 0.0


def test_second_call_reuses_the_cache(road_clip, tmp_path):
    depth, flow = CountingDepth(), CountingFlow()
    first = _extract(road_clip, tmp_path, depth, flow=flow)
    assert depth.calls == 3 and flow.pairs == 3 * FRAMES - (1 + 2 + 3)
    stamp = (first / "depth.npy").stat().st_mtime_ns
    again = _extract(road_clip, tmp_path, depth, flow=flow)
    assert again == first and depth.calls == 3 and flow.pairs == 3 * FRAMES - 6
    assert (first / "depth.npy").stat().st_mtime_ns == stamp
    other = _extract(road_clip, tmp_path, depth, flow=flow, size=24)  # another resolution: a new cache
    assert other != first and depth.calls == 6


def test_interrupted_extraction_resumes_to_the_uninterrupted_result(road_clip, tmp_path):
    whole = _extract(road_clip, tmp_path / "whole", CountingDepth())
    with pytest.raises(RuntimeError, match="simulated kill"):
        _extract(road_clip, tmp_path / "cut", CountingDepth(fail_after_calls=2))
    (cut,) = (tmp_path / "cut").iterdir()
    manifest = load_manifest(cut)
    assert manifest["done"] == 2 * CHUNK and not manifest["complete"] and manifest["stats"] is None
    with pytest.raises(ValueError, match="incomplete \\(16/20 frames\\)"):
        Cache(cut)
    resumed = CountingDepth()
    assert _extract(road_clip, tmp_path / "cut", resumed) == cut
    assert resumed.calls == 1  # only the last chunk (frames 16..19) was left
    a, b = Cache(whole), Cache(cut)
    assert a.streams == b.streams
    for name in a.streams:
        np.testing.assert_array_equal(a.stream(name), b.stream(name), err_msg=name)
    assert a.stats == b.stats


def test_too_short_request_names_the_video(road_clip, tmp_path):
    with pytest.raises(VideoError, match="road_clip.mp4: too short: 1 frames"):
        _extract(road_clip, tmp_path, CountingDepth(), max_frames=1)


def test_dataset_reads_seeded_clips_with_their_skip(road_clip, tmp_path):
    cache_dir = _extract(road_clip, tmp_path, CountingDepth())
    cache = Cache(cache_dir)
    data = CachedClips(cache_dir, clip_len=4, seed=1, clips_per_epoch=30)
    item = data[0]
    spec = data.spec(0)
    assert item["frames"].shape == (4, SIZE, SIZE, 3) and item["frames"].dtype == torch.uint8
    assert item["flow"].shape == (4, SIZE, SIZE, 2) and item["depth"].shape == (4, SIZE, SIZE, 1)
    np.testing.assert_array_equal(item["frames"].numpy(), cache.stream("frames")[spec.indices])
    flow = cache.stream(f"flow_{spec.skip}")[spec.indices].astype(np.float32)
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
    with pytest.raises(ValueError, match="outside the cache"):
        data.clip(ClipSpec(start=0, skip=1, length=4))  # no frame before the first: no flow for it


def test_default_extractors_fill_a_cache(road_clip, tmp_path):
    cache_dir = extract(road_clip, tmp_path, size=32, max_frames=5, chunk_frames=3, skips=(1,), progress=False)
    cache = Cache(cache_dir)
    assert cache.manifest["extractors"]["depth"]["name"] == "pydnet"
    assert cache.manifest["extractors"]["teacher"]["name"] == "deeplab"
    assert set(cache.streams) == {"frames", "flow_1", "depth", "teacher", "sky"}
    assert cache.stream("teacher").shape == (5, 33, 33, 128) and cache.stream("teacher").dtype == np.uint8
    teacher = CachedClips(cache_dir, clip_len=2).clip(ClipSpec(1, 1, 2))["teacher"]
    assert teacher.shape == (2, 33, 33, 128) and teacher.dtype == torch.float32 and teacher.max() > 1.0
    stats = cache.stats
    cuts = [stats["depth"]["log_inverse_depth"]["percentiles"][f"p{p}"] for p in PERCENTILES]
    assert cuts == sorted(cuts) and cuts[0] < cuts[-1] < 0  # relative inverse depth of PyDNet is below 1
    assert stats["teacher"]["values"]["mean"] > 0 and 0 < stats["sky"]["values"]["mean"] < 0.6


def test_sky_to_zero_reads_the_depth_networks_sky_as_the_games(road_clip, tmp_path):
    """Where deeplab says sky, depth reads 0 (the game's sky) in clips, stats and lazy slices; elsewhere as cached."""
    cache_dir = extract(road_clip, tmp_path, size=32, max_frames=5, chunk_frames=3, skips=(1,), progress=False)
    cache = Cache(cache_dir)
    raw, seed = cache.stream("depth").astype(np.float32), cache.stream("sky") > 0
    sky = np.asarray(sky_mask(cache)) > 0
    assert (cache_dir / "sky_grown.npy").is_file() and np.all(sky[seed])  # grown from deeplab's sky, stored
    assert 0.02 < sky.mean() < 0.6 and raw[sky].min() > 0.01  # PyDNet's sky is not 0, the mask finds some
    masked = np.asarray(SkyZeroDepth.of(cache))[..., 0]
    assert np.all(masked[sky] == 0) and np.array_equal(masked[~sky], raw[~sky])
    assert np.array_equal(np.asarray(SkyZeroDepth.of(cache)[1:3]), masked[1:3, ..., None])  # a lazy slice
    depth = CachedClips(cache_dir, clip_len=2, sky_to_zero=True).clip(ClipSpec(1, 1, 2))["depth"][..., 0].numpy()
    assert np.array_equal(depth, masked[1:3])
    plain, zeroed = video_source_stats(cache), video_source_stats(cache, sky_to_zero=True)
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


def test_sky_to_zero_needs_a_sky_mask(road_clip, tmp_path):
    cache_dir = _extract(road_clip, tmp_path, CountingDepth())
    with pytest.raises(ValueError, match="sky_to_zero needs a cached sky mask"):
        CachedClips(cache_dir, clip_len=2, sky_to_zero=True)
    with pytest.raises(ValueError, match="no sky mask in this cache"):
        video_source_stats(cache_dir, sky_to_zero=True)


def test_video_source_stats_fit_the_mixture_of_skips(road_clip, tmp_path):
    cache = Cache(_extract(road_clip, tmp_path, CountingDepth()))
    stats = video_source_stats(cache)
    flows = np.concatenate([cache.stream(f"flow_{k}")[k:].astype(np.float64) for k in (1, 2, 3)])
    # equal weights per skip, as the dataset draws them; the counts differ by a frame, so nearly pooled
    np.testing.assert_allclose(stats.flow_mean, flows.reshape(-1, 2).mean(axis=0), rtol=0.05, atol=1e-3)
    np.testing.assert_allclose(stats.flow_std, flows.reshape(-1, 2).std(axis=0), rtol=0.05)
    assert stats.flow_std[1] > video_source_stats(cache, skips=(1,)).flow_std[1]  # skip 3 moves more
    log_depth = np.log(np.maximum(cache.stream("depth")[..., None].astype(np.float64), stats.depth_floor))
    assert stats.depth_mean == pytest.approx(log_depth.mean(), rel=1e-6)
    normalised = ConditionStats(sources={"video": stats}).normalize(
        cache.stream("depth")[..., None].astype(np.float32), cache.stream("flow_1").astype(np.float32), "video"
    )
    assert normalised.shape == (FRAMES, SIZE, SIZE, 3) and abs(float(normalised[..., 0].mean())) < 0.05


def test_command_line_extracts_and_then_finds_the_cache(road_clip, tmp_path, capsys):
    argv = [str(road_clip), "--cache", str(tmp_path), "--size", "16", "--max-frames", "6", "--chunk", "4"]
    (first,) = extract_main([*argv, "--depth", "none", "--teacher", "none", "--skips", "1,2"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cache"] == first and summary["frames"] == 6 and summary["fps"] == 25.0
    assert set(Cache(first).streams) == {"frames", "flow_1", "flow_2"}
    stamp = (tmp_path / first / MANIFEST).stat().st_mtime_ns
    assert extract_main([*argv, "--depth", "none", "--teacher", "none", "--skips", "2,1"]) == [first]
    assert (tmp_path / first / MANIFEST).stat().st_mtime_ns == stamp  # found, not rewritten
