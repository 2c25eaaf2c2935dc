"""Extraction into a label store: written once, found again, resumable after a kill; what the store holds."""

import json

import numpy as np
import pytest

from spokester_train.data.extract import extract
from spokester_train.data.extract import main as extract_main
from spokester_train.data.extractors import build_extractor
from spokester_train.data.store import MANIFEST, LabelStore, load_manifest
from spokester_train.data.stream_stats import PERCENTILES
from spokester_train.data.video import VideoError, read_video


def test_store_holds_frames_flow_depth_and_a_manifest(small, road_clip, tmp_path):
    store_dir = small(small.depth())
    manifest = json.loads((store_dir / MANIFEST).read_text())
    assert manifest["complete"] and manifest["done"] == manifest["n_frames"] == small.frames
    assert manifest["video"]["fps"] == 25.0 and len(manifest["video"]["sha256"]) == 64
    assert manifest["resolution"] == small.size and manifest["skips"] == [1, 2, 3]
    assert manifest["extractors"]["flow"] == {"name": "dis", "preset": "medium"}
    assert manifest["extractors"]["depth"] == {"name": "test-counting-depth"}
    assert set(manifest["ms_per_frame"]) == {"decode", "flow", "depth"}

    store = LabelStore(store_dir)
    frames = read_video(road_clip, small.size, max_frames=small.frames).frames
    np.testing.assert_array_equal(store.stream("frames"), frames)
    dis = build_extractor("flow", "dis")
    for k in (1, 2, 3):
        flow = store.stream(f"flow_{k}")
        assert flow.shape == (small.frames, small.size, small.size, 2) and flow.dtype == np.float16
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
    log_depth = np.log(store.stream("depth").astype(np.float64))
    depth_stats = manifest["stats"]["depth"]["log_inverse_depth"]
    assert depth_stats["mean"] == pytest.approx(log_depth.mean(), rel=1e-6)
    assert depth_stats["std"] == pytest.approx(log_depth.std(), rel=1e-5)
    assert depth_stats["percentiles"]["p50"] == pytest.approx(np.median(log_depth), abs=0.02)
    assert manifest["stats"]["depth"]["zero_fraction"] == 0.0


def test_second_call_reuses_the_store(small, road_clip, tmp_path):
    depth, flow = small.depth(), small.flow()
    first = small(depth, flow=flow)
    assert depth.calls == 3 and flow.pairs == 3 * small.frames - (1 + 2 + 3)
    stamp = (first / "depth.npy").stat().st_mtime_ns
    again = small(depth, flow=flow)
    assert again == first and depth.calls == 3 and flow.pairs == 3 * small.frames - 6
    assert (first / "depth.npy").stat().st_mtime_ns == stamp
    other = small(depth, flow=flow, size=24)  # another resolution: a new store
    assert other != first and depth.calls == 6


def test_interrupted_extraction_resumes_to_the_uninterrupted_result(small, road_clip, tmp_path):
    whole = small(root=tmp_path / "whole", depth=small.depth())
    with pytest.raises(RuntimeError, match="simulated kill"):
        small(root=tmp_path / "cut", depth=small.depth(fail_after_calls=2))
    (cut,) = (tmp_path / "cut").iterdir()
    manifest = load_manifest(cut)
    assert manifest["done"] == 2 * small.chunk and not manifest["complete"] and manifest["stats"] is None
    with pytest.raises(ValueError, match="incomplete \\(16/20 frames\\)"):
        LabelStore(cut)
    resumed = small.depth()
    assert small(root=tmp_path / "cut", depth=resumed) == cut
    assert resumed.calls == 1  # only the last chunk (frames 16..19) was left
    a, b = LabelStore(whole), LabelStore(cut)
    assert a.streams == b.streams
    for name in a.streams:
        np.testing.assert_array_equal(a.stream(name), b.stream(name), err_msg=name)
    assert a.stats == b.stats


def test_too_short_request_names_the_video(small, road_clip, tmp_path):
    with pytest.raises(VideoError, match="road_clip.mp4: too short: 1 frames"):
        small(small.depth(), max_frames=1)


def test_default_extractors_fill_a_store(road_clip, tmp_path):
    store_dir = extract(road_clip, tmp_path, size=32, max_frames=5, chunk_frames=3, skips=(1,), progress=False)
    store = LabelStore(store_dir)
    assert store.manifest["extractors"]["depth"]["name"] == "pydnet"
    assert store.manifest["extractors"]["teacher"]["name"] == "deeplab"
    assert set(store.streams) == {"frames", "flow_1", "depth", "teacher", "sky"}
    assert store.stream("teacher").shape == (5, 33, 33, 128) and store.stream("teacher").dtype == np.uint8
    stats = store.stats
    cuts = [stats["depth"]["log_inverse_depth"]["percentiles"][f"p{p}"] for p in PERCENTILES]
    assert cuts == sorted(cuts) and cuts[0] < cuts[-1] < 0  # relative inverse depth of PyDNet is below 1
    assert stats["teacher"]["values"]["mean"] > 0 and 0 < stats["sky"]["values"]["mean"] < 0.6


def test_command_line_extracts_and_then_finds_the_store(road_clip, tmp_path, capsys):
    argv = [str(road_clip), "--labels", str(tmp_path), "--size", "16", "--max-frames", "6", "--chunk", "4"]
    (first,) = extract_main([*argv, "--depth", "none", "--teacher", "none", "--skips", "1,2"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["labels"] == first and summary["frames"] == 6 and summary["fps"] == 25.0
    assert set(LabelStore(first).streams) == {"frames", "flow_1", "flow_2"}
    stamp = (tmp_path / first / MANIFEST).stat().st_mtime_ns
    assert extract_main([*argv, "--depth", "none", "--teacher", "none", "--skips", "2,1"]) == [first]
    assert (tmp_path / first / MANIFEST).stat().st_mtime_ns == stamp  # found, not rewritten


def test_command_line_takes_a_frame_range_as_training_does(road_clip, tmp_path, capsys):
    argv = [f"{road_clip}@3:9", "--labels", str(tmp_path), "--size", "16", "--depth", "none", "--teacher", "none"]
    (store_dir,) = extract_main(argv)
    capsys.readouterr()
    store = LabelStore(store_dir)
    assert store.n_frames == 6 and store.manifest["start_frame"] == 3
    assert extract_main([str(road_clip), "--start", "3", "--max-frames", "6", *argv[1:]]) == [store_dir]  # the same
