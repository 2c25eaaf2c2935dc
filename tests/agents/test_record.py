"""Recording in-process: the trajectory round-trips, agrees with a replay, and nothing half-written remains."""

from __future__ import annotations

import json
import zipfile

import av
import gymnasium as gym
import numpy as np
import pytest

import spokester_env  # noqa: F401
from spokester_agents.evaluate import load_agent
from spokester_agents.painter import FrameletPainter
from spokester_agents.record import INFO_KEYS, RecordConfig, record, record_episode
from spokester_train.evaluation.metrics import boundary_ratio, seam_ratio


def _env(size=32):
    return gym.make("Spokester-v0", width=size, height=size, observations=("depth", "flow", "rgb"))


def test_npz_round_trips_and_agrees_with_a_replay(tmp_path):
    env = _env()
    agent = load_agent("random", env=env)
    summary = record_episode(agent, env, tmp_path, "ep", seed=7, max_steps=20)
    data = dict(np.load(tmp_path / "ep.npz"))
    assert summary == {**json.loads((tmp_path / "ep.json").read_text())}
    steps = summary["steps"]
    assert data["depth"].shape == (steps + 1, 32, 32, 1) and data["depth"].dtype == np.float32
    assert data["flow"].shape == (steps + 1, 32, 32, 2) and data["rgb"].dtype == np.uint8
    assert "neural" not in data and "seam_ratio" not in summary  # a cube view has no neural figures
    assert all(data[key].shape == (steps + 1,) for key in INFO_KEYS)
    assert data["actions"].shape == data["rewards"].shape == (steps,)
    assert data["actions"].dtype == data["lane"].dtype == np.int8 and data["crashed"].dtype == bool
    with zipfile.ZipFile(tmp_path / "ep.npz") as packed:  # compressed: depth and the cube view shrink a lot
        sizes = {i.filename: (i.compress_size, i.file_size) for i in packed.infolist()}
    assert all(packed_size < raw / 2 for packed_size, raw in (sizes["depth.npy"], sizes["rgb.npy"]))
    assert summary["distance"] == pytest.approx(data["distance"][-1]) == pytest.approx(data["rewards"].sum())
    assert summary["crashed"] == bool(data["crashed"][-1])
    # replaying the recorded actions from the recorded seed reproduces every observation
    replay = _env()
    obs, _ = replay.reset(seed=7)
    np.testing.assert_array_equal(obs["rgb"], data["rgb"][0])
    for t, action in enumerate(data["actions"]):
        obs, reward, *_ = replay.step(int(action))
        np.testing.assert_array_equal(obs["depth"], data["depth"][t + 1])
        np.testing.assert_array_equal(obs["flow"], data["flow"][t + 1])
        assert reward == data["rewards"][t]
    with av.open(str(tmp_path / "ep.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == steps + 1
    env.close()
    replay.close()


class _Exploding:
    """A policy that raises at its n-th call, as an interrupted recording would."""

    def __init__(self, n: int):
        self.n = n

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
        return 0, state


@pytest.mark.parametrize("neural", [False, True])
def test_an_interrupted_episode_leaves_no_files(tmp_path, tiny_checkpoint, neural):
    env = _env()
    agent = load_agent("heuristic", env=env)
    agent.policy = _Exploding(9)
    painter = FrameletPainter(tiny_checkpoint, num_steps=1) if neural else None
    with pytest.raises(KeyboardInterrupt):
        record_episode(agent, env, tmp_path, "ep", seed=0, view="both" if neural else "cube", painter=painter)
    assert list(tmp_path.iterdir()) == []  # neither finished files nor temporaries
    env.close()


def test_neural_frames_are_painted_per_game_frame(tmp_path, tiny_checkpoint):
    summaries = record(RecordConfig(out=str(tmp_path), agent="heuristic", view="neural", max_steps=5,
                                    checkpoint=str(tiny_checkpoint), render_steps=1, seed=2))  # fmt: skip
    data = np.load(tmp_path / "ep000.npz")
    assert summaries[0]["steps"] == 5 and data["neural"].shape == (6, 32, 32, 3)  # an odd count: last framelet cut
    painter = FrameletPainter(tiny_checkpoint, num_steps=1)
    assert summaries[0]["seam_ratio"] == round(seam_ratio(data["neural"], painter.patch), 4) > 0
    assert summaries[0]["boundary_ratio"] == round(boundary_ratio(data["neural"][1:], painter.frames), 4) > 0
    assert json.loads((tmp_path / "ep000.json").read_text())["seam_ratio"] == summaries[0]["seam_ratio"]
    assert np.abs(np.diff(data["neural"].astype(int), axis=0)).max() > 0  # frames change as the ride goes on
    with av.open(str(tmp_path / "ep000.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6
    # the video shows the neural frames (up to H.264's loss), not the cube view
    shown = frames[3].astype(int)
    assert np.abs(shown - data["neural"][3]).mean() < np.abs(shown - data["rgb"][3]).mean()


def test_the_painter_samples_with_the_checkpoints_steps_unless_given(tmp_path, tiny_checkpoint):
    from neural_render import load_renderer, save_renderer

    loaded = load_renderer(tiny_checkpoint)
    two = save_renderer(tmp_path / "two", loaded.model, loaded.stats, num_steps=2)
    assert FrameletPainter(two).renderer.num_steps == 2
    assert FrameletPainter(two, num_steps=1).renderer.num_steps == 1
    assert FrameletPainter(tiny_checkpoint).renderer.num_steps == 12  # saved with save_renderer's default


def test_size_must_match_the_renderer(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="32 px"):
        record(RecordConfig(out=str(tmp_path), view="neural", size=64, checkpoint=str(tiny_checkpoint)))


def test_an_odd_size_records_an_h264_video_padded_to_even_at_the_envs_fps(tmp_path):
    env = _env(size=33)
    summary = record_episode(load_agent("random", env=env), env, tmp_path, "odd", seed=1, max_steps=5, fps=24.0)
    env.close()
    with av.open(str(tmp_path / "odd.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 24
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == summary["steps"] + 1 == 6 and frames[0].shape == (34, 34, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.json", "odd.mp4", "odd.npz"]


def test_the_output_folder_is_checked_before_anything_is_played(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match=r"^--out .*afile: is a file, not a folder$"):
        record(RecordConfig(out=str(tmp_path / "afile"), view="neural", checkpoint="no-such-renderer"))
    with pytest.raises(NotADirectoryError, match="afile is a file, not a folder"):
        record(RecordConfig(out=str(tmp_path / "afile" / "rec")))


def test_a_full_disk_is_one_error_naming_the_file_and_leaves_nothing(mounted):
    folder = mounted("size=256k")  # room for the mp4 and the json of a short ride, not for its npz
    with pytest.raises(OSError, match=r"No space left on device: '.*/rec/ep000\.npz'"):
        record(RecordConfig(out=str(folder / "rec"), size=64, max_steps=60))
    assert list((folder / "rec").iterdir()) == []


def test_a_renderer_told_where_the_cars_are_records_from_the_games_car_mask(tmp_path, tiny_checkpoint):
    """With a renderer that paints from a car mask, `record` observes the game's "cars" and the painter hands it
    on: deaf to the mask (its weights zeroed) the same network paints other frames; an observation without the
    mask is refused in one line."""
    import torch

    from neural_render import build_renderer, load_renderer, save_renderer

    start = load_renderer(tiny_checkpoint).model
    weights = start.state_dict()
    generator = torch.Generator().manual_seed(1)
    saved = weights["cond_embedder.weight"].view(64, -1, 3)
    car = 0.2 * torch.randn((*saved.shape[:2], 1), generator=generator)
    paths = {}
    for name, channel in (("told", car), ("deaf", torch.zeros_like(car))):
        model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1, cond_channels=4)
        model.load_state_dict(weights | {"cond_embedder.weight": torch.cat([saved, channel], -1).reshape(64, -1)})
        paths[name] = save_renderer(tmp_path / name, model)
    painted = {}
    for name, path in paths.items():
        record(RecordConfig(out=str(tmp_path / f"out-{name}"), agent="heuristic", view="neural", max_steps=8,
                            checkpoint=str(path), render_steps=1, seed=0))  # fmt: skip
        data = np.load(tmp_path / f"out-{name}" / "ep000.npz")
        painted[name] = data["neural"].astype(int)
    assert np.abs(painted["told"] - painted["deaf"]).mean() > 0.5
    painter = FrameletPainter(paths["told"], num_steps=1)
    assert painter.inputs == ("depth", "flow", "cars")
    frame = {"depth": np.zeros((32, 32, 1), np.float32), "flow": np.zeros((32, 32, 2), np.float32)}
    with pytest.raises(
        ValueError, match=r"the renderer paints from depth, flow, cars; the observation lacks \['cars'\]"
    ):
        painter.reset(frame)
