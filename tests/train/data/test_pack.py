"""Training packs: label stores squeezed into one zip and unpacked into label stores that training reads."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spokester_env import CAMERA_PRESETS
from spokester_train.data import pack as pack_module
from spokester_train.data.batches import ClipBatches
from spokester_train.data.pack import PACK_MANIFEST, PackOptions, make_pack, read_pack, unpack
from spokester_train.data.sky import GROWN_SKY_FILE, sky_mask
from spokester_train.data.sources import game_sources, load_game_sources
from spokester_train.data.store import MANIFEST, LabelStore
from spokester_train.data.video_depth import SLABS_FILE, slab_map
from spokester_train.recipe.irepa import normalise_teacher

pytest.importorskip("PIL")

GAME_FRAMES = 8
"""Frames of the game ride whose statistics the test packs carry."""


@pytest.fixture
def packed(road_stores, tmp_path):
    """The road stores packed with the default options: (report, pack path)."""
    path = tmp_path / "road.zip"
    return make_pack(road_stores, path, scene="open", game_frames=GAME_FRAMES), path


def _stream_bytes(store: LabelStore) -> int:
    return sum(np.asarray(store.stream(name)).nbytes for name in store.streams)


def test_unpacked_stores_hold_the_same_streams_close_to_the_originals(packed, road_stores, tmp_path):
    report, path = packed
    folders = [Path(f) for f in unpack(path, tmp_path / "labels")["stores"]]
    assert [f.name for f in folders] == [s.dir.name for s in road_stores]
    for store, folder, figures in zip(road_stores, folders, report["stores"], strict=True):
        again = LabelStore(folder)
        assert again.streams == store.streams and again.n_frames == store.n_frames
        assert again.manifest["packed"]["version"] == pack_module.PACK_VERSION
        assert again.manifest["identity"] == store.manifest["identity"]
        for name in store.streams:
            a, b = np.asarray(store.stream(name)), np.asarray(again.stream(name))
            assert (a.shape, a.dtype) == (b.shape, b.dtype), name
        frames = [np.asarray(s.stream("frames"), np.float32) for s in (store, again)]
        psnr = 10 * np.log10(255**2 / np.mean((frames[0] - frames[1]) ** 2))
        assert psnr > 28 and psnr == pytest.approx(figures["fidelity"]["frames_psnr"], abs=0.01)
        depth = [np.asarray(s.stream("depth"), np.float32) for s in (store, again)]
        assert np.median(np.abs(depth[1] / depth[0] - 1)) < 0.02
        flow = [np.asarray(s.stream("flow_1"), np.float32) for s in (store, again)]
        assert np.sqrt(np.mean((flow[0] - flow[1]) ** 2)) < 0.25 * np.sqrt(np.mean(flow[0] ** 2)) + 0.02
        np.testing.assert_array_equal(np.asarray(again.stream("sky")), np.asarray(store.stream("sky")))
        np.testing.assert_array_equal(np.load(folder / GROWN_SKY_FILE), sky_mask(store))
        np.testing.assert_array_equal(np.asarray(again.stream("cars")), np.asarray(store.stream("cars")))
        np.testing.assert_array_equal(np.load(folder / SLABS_FILE), slab_map(store))  # read there without OpenCV
        assert figures["fidelity"]["car_slabs_exact"] is True
        spec = store.spec("teacher")
        features = [torch.from_numpy(spec.decode(np.asarray(s.stream("teacher")))[None]) for s in (store, again)]
        cosine = torch.cosine_similarity(normalise_teacher(features[0]), normalise_teacher(features[1]), dim=-1)
        assert 0.6 < float(cosine.mean()) < 1.0


def test_a_pack_is_a_fraction_of_its_stores_and_says_what_each_stream_takes(packed, road_stores):
    report, path = packed
    assert report["bytes"] == path.stat().st_size
    assert report["bytes"] < 0.2 * sum(_stream_bytes(s) for s in road_stores)
    with zipfile.ZipFile(path) as archive:
        on_disk = sum(info.compress_size for info in archive.infolist() if info.filename != PACK_MANIFEST)
    assert sum(sum(s["bytes"].values()) for s in report["stores"]) == on_disk
    assert set(report["stores"][0]["bytes"]) == {*road_stores[0].streams, "sky_grown", "car_slabs"}


def test_flow_keeps_its_direction_and_size_through_the_codec():
    """u and v of a known field come back where and as large as they were (not swapped, not rescaled)."""
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    flow = np.stack([3 + 0.05 * x, -1 + 0.02 * y], axis=-1)[None].repeat(2, axis=0)  # (2, 32, 32, 2)
    entries, record = pack_module._encode_flow(flow.astype(np.float16), 2, 90, "test")
    back = pack_module._decode_flow(entries, record, 2).astype(np.float32)
    inner = (slice(None), slice(2, -2), slice(2, -2))  # bilinear upsampling clamps at the border
    np.testing.assert_allclose(back[inner], flow[inner], atol=0.08)


def test_unpacked_stores_give_training_batches(packed, tmp_path):
    _, path = packed
    stores = [LabelStore(folder) for folder in unpack(path, tmp_path / "labels")["stores"]]
    from spokester_train.data.sources import video_sources

    stats_sources = video_sources(stores, ["a", "b"], (1,), sky_to_zero=True)
    from neural_render import ConditionStats

    batches = ClipBatches(stores, ["video/a", "video/b"], ConditionStats(sources=stats_sources), 4, (1,), 0, True)
    with batches:
        batch = batches.next(2, torch.device("cpu"))
    assert batch["x"].shape[:2] == (2, 4) and torch.isfinite(batch["x"]).all()
    assert batch["teacher"].shape[1] == 4


def test_unpacking_again_keeps_the_stores_and_a_different_store_of_that_name_is_refused(packed, tmp_path):
    _, path = packed
    root = tmp_path / "labels"
    first = [Path(f) for f in unpack(path, root)["stores"]]
    mtime = (first[0] / "frames.npy").stat().st_mtime_ns
    assert unpack(path, root)["stores"] == list(map(str, first))
    assert (first[0] / "frames.npy").stat().st_mtime_ns == mtime
    manifest = json.loads((first[0] / MANIFEST).read_text())
    manifest["n_frames"] -= 1
    (first[0] / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"{first[0].name}: holds another label store"):
        unpack(path, root)


def test_a_failed_unpack_leaves_nothing_and_a_killed_ones_folder_is_cleared(packed, tmp_path, monkeypatch):
    _, path = packed
    root = tmp_path / "labels"
    root.mkdir()
    folder = json.loads(zipfile.ZipFile(path).read(PACK_MANIFEST))["stores"][0]["folder"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = root / f".{folder}.{dead.pid}.unpacking"
    stale.mkdir()
    (stale / "frames.npy").write_bytes(b"half")
    calls, real_save = [], np.save

    def full_disk(file, array, *args, **kwargs):
        calls.append(file)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(pack_module.np, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        unpack(path, root)
    assert os.listdir(root) == []  # neither the stale folder, nor the half-written store, nor a store


@pytest.mark.parametrize("content", [b"", b"not a zip", "wrong-version"])
def test_a_file_that_is_not_a_pack_is_one_line_naming_it(content, tmp_path, packed):
    bad = tmp_path / "bad.zip"
    if content == "wrong-version":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr(PACK_MANIFEST, json.dumps({"version": 99, "stores": [], "game": {}}))
    else:
        bad.write_bytes(content)
    with pytest.raises(ValueError, match=f"{bad}: not a readable training pack") as error:
        read_pack(bad)
    assert "\n" not in str(error.value)


def test_bad_options_and_outputs_are_refused_before_work(road_stores, tmp_path):
    with pytest.raises(ValueError, match="quality 0"):
        PackOptions(quality=0)
    with pytest.raises(IsADirectoryError, match="--out"):
        make_pack(road_stores, tmp_path)
    with pytest.raises(ValueError, match="flow_factor 3 does not divide the frame side 32"):
        make_pack(road_stores, tmp_path / "p.zip", PackOptions(flow_factor=3))
    assert not (tmp_path / "p.zip").exists() and not list(tmp_path.glob(".p.zip*"))


def test_the_command_prints_the_report_as_json_and_the_folders_it_unpacked(road_stores, tmp_path, capsys):
    out = tmp_path / "road.zip"
    pack_module.main([*(str(s.dir) for s in road_stores), "--out", str(out), "--teacher-components", "4",
                      "--game-frames", str(GAME_FRAMES)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["options"]["teacher_components"] == 4 and report["bytes"] == out.stat().st_size
    pack_module.main(["--unpack", str(out), "--labels", str(tmp_path / "labels")])
    unpacked = json.loads(capsys.readouterr().out)
    assert unpacked["stores"] == [str(tmp_path / "labels" / s.dir.name) for s in road_stores]
    assert unpacked["game_stats"] == str(tmp_path / "labels" / f"game-32px-city-seed0-{GAME_FRAMES}f.json")
    with pytest.raises(SystemExit) as stop:
        pack_module.main(["--unpack", str(out), str(road_stores[0].dir)])
    assert stop.value.code == 2
    assert "or --unpack PACK" in capsys.readouterr().err


def test_the_packed_game_statistics_are_the_games_and_load_only_for_what_they_were_fitted_on(packed, tmp_path):
    """Unpacking writes the game's statistics of every camera preset; a run reads them in place of riding the
    game, and one with another size, ride, seed or scene is refused naming both."""
    _, path = packed
    game_stats = unpack(path, tmp_path / "labels")["game_stats"]
    loaded = load_game_sources(game_stats, 32, GAME_FRAMES, 0, "first_person", "open")
    ridden = game_sources(32, GAME_FRAMES, 0, "first_person", "open")
    assert loaded.keys() == ridden.keys() == {"game", *(f"game/{name}" for name in CAMERA_PRESETS)}
    assert all(loaded[name] == ridden[name] for name in ridden)
    assert loaded["game"] == ridden["game/first_person"] != ridden["game/follow"]
    with pytest.raises(ValueError, match="fitted on .*'scene': 'open'.* this run needs .*'scene': 'city'"):
        load_game_sources(game_stats, 32, GAME_FRAMES, 0, "follow", "city")
    with pytest.raises(ValueError, match="'size': 64"):
        load_game_sources(game_stats, 64, GAME_FRAMES, 0, "follow", "open")
