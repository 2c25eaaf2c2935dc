"""The condition gap between the game and the footage: maps, pooling, gaps and the command's JSON."""

import json

import numpy as np
import pytest

from spokester_train.data.condition_gap import GAPS, SourceMaps, gaps, main


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
    with pytest.raises(SystemExit) as stop:
        main(["--video", str(road_clip), "--labels", str(tmp_path)])
    assert stop.value.code == 1 and "at least two videos" in capsys.readouterr().err
