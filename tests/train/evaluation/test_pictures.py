"""The pictures command: the ride of the renderer's own game, one neural column per checkpoint."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import torch

from neural_render import build_renderer, load_renderer, save_renderer
from spokester_train.data.game import game_ride


def _renderer(path, seed: int, size: int = 32, game=None):
    model = build_renderer("tiny", image_size=size, width=64, num_blocks=1, heads=1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    return save_renderer(path, model, game=game)


def _pictures(*args):
    """The command, with the warning that these untrained renderers have no statistics silenced."""
    command = [sys.executable, "-W", "ignore::UserWarning", "-m", "spokester_train.evaluation.pictures"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_several_checkpoints_paint_the_same_ride_of_their_game_side_by_side(tmp_path):
    game = {"camera": "first_person", "scene": "open"}
    a = _renderer(tmp_path / "a" / "renderer", seed=0, game=game)  # a run's renderer: named by its folder
    b = _renderer(tmp_path / "b", seed=1, game=game)
    out = tmp_path / "sheet.png"
    result = _pictures("--out", out, "--checkpoint", a, b, "--frames", 6, "--shown", 2, "--steps", 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    sheet = cv2.imread(str(out))[..., ::-1]
    assert sheet.shape == (18 + 2 * 32, 3 * 32, 3)  # title row, then two frames: cube | a | b
    ride = game_ride(32, 6, seed=1, camera="first_person", scene="open")  # the renderers' own game
    np.testing.assert_array_equal(sheet[18:50, :32], ride.rgb[0])
    np.testing.assert_array_equal(sheet[50:, :32], ride.rgb[5])
    cube_follow = game_ride(32, 6, seed=1).rgb[0]
    assert not np.array_equal(sheet[18:50, :32], cube_follow), "not the default follow camera"
    painted_a, painted_b = sheet[18:, 32:64].astype(int), sheet[18:, 64:].astype(int)
    assert np.abs(painted_a - painted_b).mean() > 5, "each checkpoint paints its own column"
    assert load_renderer(a).game == game


def test_checkpoints_that_cannot_share_a_ride_are_one_line(tmp_path):
    small = _renderer(tmp_path / "small", seed=0)
    other = _renderer(tmp_path / "other", seed=0, game={"camera": "first_person", "scene": "open"})
    result = _pictures("--out", tmp_path / "x.png", "--checkpoint", small, other, "--frames", 4)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"--checkpoint {other}" in result.stderr
    assert "one ride is painted by all" in result.stderr and not (tmp_path / "x.png").exists()


def test_rides_painted_together_are_each_what_one_stream_paints(tiny_checkpoint):
    """`render_rides`: stream k of a batch paints ride k as a one-stream renderer does with the same seed (the
    streams do not mix), and a mismatched batch is refused."""
    from neural_render import StreamingRenderer
    from spokester_train.evaluation.pictures import render_ride, render_rides

    loaded = load_renderer(tiny_checkpoint)
    rides = [game_ride(32, 4, seed=seed) for seed in (3, 4)]
    make = lambda streams: StreamingRenderer(loaded.model, stats=loaded.stats, num_steps=2, batch_size=streams)  # noqa: E731
    together = render_rides(make(2), rides, [3, 4])
    assert together.shape == (2, 4, 32, 32, 3)
    for k, seed in enumerate((3, 4)):
        alone = render_ride(make(1), rides[k], seed=seed)
        assert np.abs(together[k].astype(int) - alone).max() <= 1
    assert np.abs(together[0].astype(int) - together[1]).mean() > 5  # two rides, two pictures
    try:
        render_rides(make(1), rides, [3, 4])
    except ValueError as error:
        assert "2 equally long rides" in str(error)
    else:
        raise AssertionError("a two-ride batch on a one-stream renderer was accepted")


def test_several_looks_paint_the_same_ride_a_column_each_and_an_unknown_one_is_one_line(tmp_path):
    model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1, looks=("dusk", "noon"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    path = save_renderer(tmp_path / "looks", model)
    out = tmp_path / "looks.png"
    result = _pictures("--out", out, "--checkpoint", path, "--look", "any", "noon", "--frames", 4, "--shown", 1)
    assert result.returncode == 0, result.stderr
    sheet = cv2.imread(str(out))[..., ::-1].astype(int)
    assert sheet.shape == (18 + 32, 3 * 32, 3)  # cube | any | noon
    assert np.abs(sheet[18:, 32:64] - sheet[18:, 64:]).mean() > 5, "each look paints its own column"
    refused = _pictures("--out", tmp_path / "x.png", "--checkpoint", path, "--look", "dawn", "--frames", 4)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "look 'dawn': this renderer paints any, dusk, noon" in refused.stderr and not (tmp_path / "x.png").exists()
