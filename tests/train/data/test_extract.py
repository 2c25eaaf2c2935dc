"""Extraction into a label store: written once, found again, resumable after a kill; what the store holds; a
damaged store named in one line on opening and extracted anew."""

import json
import os
import shutil

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
    assert set(store.streams) == {"frames", "flow_1", "depth", "teacher", "sky", "cars"}
    assert store.stream("teacher").shape == (5, 33, 33, 128) and store.stream("teacher").dtype == np.uint8
    stats = store.stats
    cuts = [stats["depth"]["log_inverse_depth"]["percentiles"][f"p{p}"] for p in PERCENTILES]
    assert cuts == sorted(cuts) and cuts[0] < cuts[-1] < 0  # relative inverse depth of PyDNet is below 1
    assert stats["teacher"]["values"]["mean"] > 0 and 0 < stats["sky"]["values"]["mean"] < 0.6
    assert stats["cars"]["values"]["mean"] < 0.3 and not np.any(store.stream("cars") & store.stream("sky"))


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


def _drop_rows(store_dir):
    """Make the manifest look like one written before it recorded `rows`."""
    manifest = load_manifest(store_dir)
    del manifest["rows"]
    (store_dir / MANIFEST).write_text(json.dumps(manifest))


def test_a_good_store_opens_without_complaint(small, capsys):
    store_dir = small(small.depth())
    capsys.readouterr()
    store = LabelStore(store_dir)
    assert store.manifest["rows"] == store.n_frames == small.frames
    assert store.stream("depth").shape == (small.frames, small.size, small.size)
    manifest = load_manifest(store_dir)
    manifest["n_frames"] = manifest["done"] = small.frames - 3  # the container held fewer frames than promised
    (store_dir / MANIFEST).write_text(json.dumps(manifest))
    assert LabelStore(store_dir).stream("frames").shape[0] == small.frames - 3  # the unused rows are fine
    _drop_rows(store_dir)  # a store written before `rows` was recorded
    assert LabelStore(store_dir).n_frames == small.frames - 3
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("manifest", ["current", "without rows"])
def test_a_truncated_array_is_named_in_one_line(small, manifest):
    store_dir = small(small.depth())
    if manifest == "without rows":
        _drop_rows(store_dir)
    path = store_dir / "depth.npy"
    size = path.stat().st_size
    os.truncate(path, 1234)
    with pytest.raises(ValueError) as error:
        LabelStore(store_dir)
    shape = (small.frames, small.size, small.size)
    assert str(error.value) == f"{path}: 1234 bytes, expected {size} for {shape} float32; run the extraction again"


def test_an_empty_teacher_file_is_named_in_one_line(road_stores, tmp_path):
    store_dir = shutil.copytree(road_stores[0].dir, tmp_path / road_stores[0].dir.name)
    path = store_dir / "teacher.npy"
    size = path.stat().st_size
    path.write_bytes(b"")
    with pytest.raises(ValueError) as error:
        LabelStore(store_dir)
    expected = f"{path}: 0 bytes, expected {size} for (12, 33, 33, 128) uint8; run the extraction again"
    assert str(error.value) == expected


def test_extraction_extracts_a_truncated_store_anew(small, capsys):
    depth = small.depth()
    store_dir = small(depth)
    before = LabelStore(store_dir)
    streams = {name: np.array(before.stream(name)) for name in before.streams}
    path = store_dir / "frames.npy"
    size = path.stat().st_size
    os.truncate(path, size // 2)
    np.save(store_dir / "sky_grown.npy", np.ones((small.frames, 2, 2), np.uint8))  # made from the old streams
    capsys.readouterr()
    assert small(depth) == store_dir
    shape = (small.frames, small.size, small.size, 3)
    expected = f"{path}: {size // 2} bytes, expected {size} for {shape} uint8; extracting the store again\n"
    assert capsys.readouterr().err == expected + f"{small.video.name}: labels written to {store_dir}\n"
    assert depth.calls == 6  # every chunk labelled again, not found "complete"
    assert path.stat().st_size == size and not (store_dir / "sky_grown.npy").exists()
    after = LabelStore(store_dir)
    assert after.manifest["complete"] and after.stats == before.stats
    for name, values in streams.items():
        np.testing.assert_array_equal(after.stream(name), values, err_msg=name)
