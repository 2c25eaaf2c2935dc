"""The play loop headless, driven by scripted key presses."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
pygame = pytest.importorskip("pygame")

from spokester_agents.play import PlayConfig, play_loop  # noqa: E402


def test_keys_change_lanes():
    stats = play_loop(PlayConfig(view="cube", size=32, seed=0, max_frames=40, realtime=False),
                      {3: [pygame.K_LEFT], 15: [pygame.K_d], 25: [pygame.K_RIGHT, pygame.K_RIGHT]})  # fmt: skip
    assert stats.frames == 40
    assert stats.lanes[:3] == [1, 1, 1] and stats.lanes[3:15] == [0] * 12  # pressed at frame 3, acted at once
    assert stats.lanes[15:25] == [1] * 10 and stats.lanes[25] == 2 and stats.lanes[-1] == 2


def test_restart_and_escape():
    stats = play_loop(PlayConfig(view="cube", size=32, seed=0, max_frames=100, realtime=False),
                      {10: [pygame.K_r], 20: [pygame.K_ESCAPE]})  # fmt: skip
    assert stats.frames == 20  # Esc ended the loop
    assert len(stats.rides) == 1 and 0 < stats.rides[0] < 5  # the first ride was cut short by R
    assert len(stats.lanes) == 19  # one frame went to the restart


def test_crash_pauses_then_restarts(tiny_checkpoint):
    # seed 2 without input meets a car in the middle lane at frame 182; the picture holds for 2 frames
    config = PlayConfig(view="both", size=32, checkpoint=str(tiny_checkpoint), render_steps=1, seed=2,
                        max_frames=200, realtime=False, crash_pause_s=0.1)  # fmt: skip
    stats = play_loop(config)
    assert stats.crashes == 1 and len(stats.rides) == 1 and 30 < stats.rides[0] < 60
    assert len(stats.lanes) == 200 - 2  # the 2 held frames advance no game (the second one restarts)


def test_neural_view_paints_in_a_worker(tiny_checkpoint):
    stats = play_loop(PlayConfig(view="neural", checkpoint=str(tiny_checkpoint), render_steps=1, seed=0,
                                 max_frames=30, realtime=True), {2: [pygame.K_LEFT]})  # fmt: skip
    assert stats.frames == 30 and stats.lanes[2] == 0
    assert stats.painted > 0  # the worker painted frames while the loop went on
    assert stats.fps > 12  # the loop held (close to) the game's 24 fps
