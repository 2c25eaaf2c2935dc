"""The condition gap between the game and the footage: maps, pooling, gaps and the command's JSON."""

import json

import numpy as np
import pytest

from neural_render import ConditionSource
from spokester_train.data.condition_gap import CAR_FIGURES, GAPS, CarSteps, SourceMaps, car_steps, game_maps, gaps, main
from spokester_train.data.video_depth import car_slabs


def _maps(value: float, frames: int, sky: float = 0.0, flow_scale: float = 1.0) -> SourceMaps:
    full = np.full((4, 4), value)
    return SourceMaps(full, np.abs(full), np.ones((4, 4)), np.full((4, 4), sky), frames, flow_scale)


def test_pooled_maps_weigh_frames_and_gaps_are_mean_absolute_differences():
    a, b = _maps(0.0, frames=3, sky=1.0), _maps(4.0, frames=1, sky=0.0, flow_scale=3.0)
    pooled = SourceMaps.pool([a, b])
    np.testing.assert_allclose(pooled.depth_mean, 1.0)  # (3 * 0 + 1 * 4) / 4
    np.testing.assert_allclose(pooled.sky, 0.75)
    np.testing.assert_allclose(pooled.depth_std, np.sqrt((3 * 0 + 1 * (16 + 16)) / 4 - 1.0))  # a mixture's spread
    assert pooled.flow_scale == pytest.approx(1.5) and pooled.frames == 4
    assert gaps(a, a) == dict.fromkeys(GAPS, 0.0)
    assert gaps(b, a)["depth_map_gap"] == 4.0 and gaps(b, a)["sky_map_gap"] == 1.0


def test_car_steps_see_a_slab_stand_out_and_a_blurred_car_not():
    """A road whose inverse depth grows row by row, a car on it: as the depth network has it (the road's own
    depth) it does not stand out; as a slab (the game's box) it does, with a sharp outline."""
    side = 32
    road = np.repeat(np.geomspace(0.02, 1.0, side, dtype=np.float32)[:, None], side, axis=1)
    cars = np.zeros((3, side, side), np.uint8)
    cars[:, 8:16, 12:20] = 1
    depth = np.repeat(road[None, ..., None], 3, axis=0)
    flow = np.zeros((3, side, side, 2), np.float32)
    flow[..., 1] = np.arange(side)[:, None] / side  # the road streams downwards, faster near the bottom
    slabs = np.stack([car_slabs(d[..., 0], c)[..., None] for d, c in zip(depth, cars, strict=True)])
    source = ConditionSource.fit(depth, flow)
    blurred, boxed = car_steps(depth, flow, cars, source), car_steps(slabs, flow, cars, source)
    assert len(blurred.depth_step) == len(boxed.depth_step) == 3 and blurred.frames == 3
    assert abs(np.median(blurred.depth_step)) < 0.05 and np.median(boxed.depth_step) > 0.3
    assert np.median(boxed.edge_contrast) > 1.5 * np.median(blurred.edge_contrast)
    figures = CarSteps.pool([blurred, boxed]).figures()
    assert figures["blobs"] == 6 and figures["per_frame"] == 1.0 and set(CAR_FIGURES) <= set(figures)
    assert CarSteps.pool([blurred]).figures() == blurred.figures()
    none = car_steps(depth, flow, np.zeros_like(cars), source).figures()
    assert none == {"blobs": 0, "per_frame": 0.0, **dict.fromkeys(CAR_FIGURES)}


def test_the_games_cars_are_boxes_in_its_condition():
    _, cars = game_maps(64, 24, "first_person", "open")
    figures = cars.figures()
    assert figures["blobs"] >= 10 and figures["depth_step"] > 0.1 and figures["edge_contrast"] > 2.5


def test_command_compares_each_setting_with_the_videos(road_clip, tmp_path, capsys):
    argv = ["--video", f"{road_clip}@0:20", f"{road_clip}@30:50", "--size", "32", "--frames", "12"]
    argv += ["--camera", "follow", "first_person", "--scene", "city", "open", "--labels", str(tmp_path), "--json"]
    result = main(argv)
    assert json.loads(capsys.readouterr().out) == result
    settings = {(row["camera"], row["scene"]): row for row in result["settings"]}
    assert sorted(settings) == [
        ("first_person", "city"),
        ("first_person", "open"),
        ("follow", "city"),
        ("follow", "open"),
    ]
    assert all(row[key] >= 0 for row in settings.values() for key in GAPS)
    assert settings["first_person", "open"]["sky_fraction"] > settings["first_person", "city"]["sky_fraction"]
    assert set(result["reference"]) == set(GAPS) and result["reference"]["depth_map_gap"] > 0
    assert result["videos"] == [
        {"video": "road_clip.mp4", "start": 0, "frames": 12},  # frames 1..12 of 0..12: frame 0 has no flow
        {"video": "road_clip.mp4", "start": 30, "frames": 12},
    ]
    assert all(set(row["cars"]) == {"blobs", "per_frame", *CAR_FIGURES} for row in settings.values())
    assert set(result["videos_cars"]) == {"blobs", "per_frame", *CAR_FIGURES} and result["car_slabs"] is False
    table = main(argv[:-1])  # the table, not JSON
    printed = capsys.readouterr().out
    assert table == result and "depth_map_gap" in printed and "depth_step" in printed
    with pytest.raises(SystemExit) as stop:
        main(["--video", str(road_clip), "--labels", str(tmp_path)])
    assert stop.value.code == 1 and "at least two videos" in capsys.readouterr().err
