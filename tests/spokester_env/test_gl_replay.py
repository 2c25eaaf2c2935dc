"""The gl backend's drawing recorded from a ride and replayed without the game (spokester_env.gl_replay)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spokester_env import gl
from spokester_env.gl_replay import REFERENCE_FRAMES, compare, main, record, replay

REPO = Path(__file__).resolve().parents[2]
needs_gl = pytest.mark.skipif(gl.context_error() is not None, reason=f"no EGL context here: {gl.context_error()}")


@pytest.fixture(scope="module")
def ride(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("gl-ride") / "ride.npz", sizes=(24, 40), frames=10, seed=3)


@needs_gl
def test_a_replay_on_the_same_driver_draws_the_recorded_pictures(ride):
    with np.load(ride) as data:
        assert data["s40/positions"].shape[0] == 10 and data["s40/reference/flow"].shape == (
            REFERENCE_FRAMES,
            40,
            40,
            2,
        )
        moving = np.abs(np.diff(data["s40/positions"], axis=0)).max()
        flow = np.abs(data["s40/reference/flow"]).max()
        ids = data["s24/reference/ids"]
    assert moving > 0 and flow > 0.1  # a ride, not a still: bodies move and the picture flows
    assert {-1, 0} < set(np.unique(ids).tolist())  # sky, the ground and more bodies than those
    result = replay(ride, seconds=0.05)
    assert [row["size"] for row in result["sizes"]] == [24, 40]
    for row in result["sizes"]:
        assert row["ids_differ"] == 0.0 and row["depth_rel_max"] == 0.0 and row["flow_max"] == 0.0
        assert row["frames"] == 10 and row["draws_per_s"] > 0 and row["draws_per_s_no_flow"] > 0
    ctx = gl.create_context()
    try:
        assert result["driver"] and result["flow_pass_pays"] == gl.flow_pass_pays(ctx)
        assert result["egl_device"] == 0 and result["egl_devices"][0] == result["driver"] == gl.driver(ctx)
    finally:
        ctx.release()


def test_compare_says_how_far_pictures_drawn_elsewhere_are():
    rng = np.random.default_rng(0)
    ids = rng.integers(-1, 5, (2, 10, 10))
    reference = {
        "ids": ids,
        "inverse_depth": rng.uniform(0.1, 1.0, (2, 10, 10)),
        "flow": rng.normal(0, 2, (2, 10, 10, 2)),
    }
    drawn = {name: value.copy() for name, value in reference.items()}
    drawn["ids"][0, 0, :5] = 7  # 5 of 200 pixels: a silhouette drawn otherwise
    drawn["inverse_depth"] *= 1.001
    drawn["flow"][..., 1] += 0.02
    figures = compare(drawn, reference)
    assert figures["ids_differ"] == pytest.approx(5 / 200)
    assert figures["depth_rel_median"] == pytest.approx(0.001) and figures["depth_rel_max"] == pytest.approx(0.001)
    assert figures["flow_median"] == pytest.approx(0.02) and figures["flow_max"] == pytest.approx(0.02)


@needs_gl
def test_the_replay_needs_neither_the_game_nor_video_decoding(ride, lacking_the_game):
    """As on a GPU host: pybullet, PyAV and OpenCV fail to import, and the replay prints its JSON all the same."""
    code = lacking_the_game + (
        "from spokester_env.gl_replay import main\n"
        f"main(['replay', {str(ride)!r}, '--seconds', '0.05', '--json'])\n"
        "assert 'pybullet' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert [row["ids_differ"] for row in printed["sizes"]] == [0.0, 0.0]


def test_bad_arguments_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["record", "--out", str(tmp_path / "ride.zip")])
    assert stop.value.code == 2 and "must end in .npz" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(2))
    with pytest.raises(SystemExit) as stop:
        main(["replay", str(other)])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "not a recorded ride" in err and err.count("\n") == 1
    assert not (tmp_path / "ride.zip").exists()


@needs_gl
def test_a_replay_on_a_device_the_host_lacks_is_one_line(ride, capsys):
    missing = len(gl.egl_devices())
    with pytest.raises(SystemExit) as stop:
        main(["replay", str(ride), "--egl-device", str(missing), "--seconds", "0.05"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1
    assert f"error: egl_device={missing}: this host has {missing} EGL device" in err and gl.egl_devices()[0] in err
