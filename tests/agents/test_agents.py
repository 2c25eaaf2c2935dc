"""The heuristic and random agents, evaluation, and PPO's hyperparameter file."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import spokester_agents.envs
import spokester_env
from spokester_agents.envs import ENV_ID, AgentFileError, ObservationSettings, read_sidecar, write_sidecar
from spokester_agents.evaluate import evaluate, load_agent
from spokester_agents.heuristic import KEEP, LEFT, RIGHT, HeuristicAgent, RandomAgent
from spokester_agents.ppo import _schedule, load_hyperparams
from spokester_env.config import GameConfig


def test_heuristic_beats_random_by_a_clear_margin():
    heuristic = evaluate("heuristic", episodes=4, seed=10, max_steps=480)
    random = evaluate("random", episodes=4, seed=10, max_steps=480)
    assert heuristic["mean_distance"] > 2.5 * random["mean_distance"], (heuristic, random)
    assert heuristic["crash_rate"] == 0.0 and random["crash_rate"] > 0.5


def test_heuristic_dodges_the_car_ahead():
    env = gym.make("Spokester-v0", width=32, height=32, observations=("depth",))
    env.reset(seed=0)
    agent, game = HeuristicAgent(env), env.unwrapped.game
    tr = game.state.traffic
    tr.active[:] = False
    slot_y = game.state.distance + 6.0  # a car 6 m ahead in the middle lane, the left lane empty, right blocked
    tr.active[:2], tr.lane[:2], tr.y[:2], tr.speed[:2] = True, [1, 2], [slot_y, slot_y + 1.0], 1.0
    action, state = agent.predict(None, state="kept")
    assert int(action) == LEFT and state == "kept"
    tr.active[:] = False
    assert int(agent.predict(None)[0]) == KEEP  # an empty road: stay
    tr.active[:2], tr.lane[:2], tr.y[:2] = True, [1, 0], [slot_y, slot_y + 1.0]
    assert int(agent.predict(None)[0]) == RIGHT
    env.close()


@pytest.mark.parametrize("num_lanes", [2, 4])
def test_heuristic_dodges_on_roads_of_any_lane_count(num_lanes):
    env = gym.make(ENV_ID, width=16, height=16, observations=("depth",), config=GameConfig(num_lanes=num_lanes))
    env.reset(seed=0)
    agent, game = HeuristicAgent(env), env.unwrapped.game
    tr, edge = game.state.traffic, num_lanes - 1
    cases = [(edge, [], LEFT), (0, [], RIGHT)] + ([(1, [0], RIGHT), (edge - 1, [edge], LEFT)] if num_lanes > 3 else [])
    for lane, blocked, expected in cases:  # a car 6 m ahead in the rider's lane, and in the neighbours blocked
        game.state.rider.target_lane = lane
        cars = [lane, *blocked]
        tr.active[:] = False
        tr.active[: len(cars)], tr.lane[: len(cars)], tr.y[: len(cars)] = True, cars, game.state.distance + 6.0
        tr.speed[:] = 1.0
        assert int(agent.predict(None)[0]) == expected, (lane, blocked)
    # and it rides a seeded road of that many lanes for 20 s without a crash
    env.reset(seed=2)
    for _ in range(24 * 20):
        _, _, terminated, _, info = env.step(int(agent.predict(None)[0]))
        assert not terminated, info
    assert info["distance"] > 100
    env.close()


def test_agents_make_the_env_that_spokester_env_registers():
    assert spokester_agents.envs.ENV_ID is spokester_env.ENV_ID == "Spokester-v0"
    settings = ObservationSettings(size=36)
    env = spokester_agents.envs.make_env(settings)
    assert env.spec.id == spokester_env.ENV_ID and env.observation_space.shape == (3, 36, 36)
    env.close()
    assert ObservationSettings().size == spokester_agents.envs.PACKED_SIZE == 64


def test_heuristic_needs_a_spokester_env():
    with pytest.raises(ValueError, match="Spokester"):
        HeuristicAgent(gym.make("CartPole-v1"))


def test_random_agent_is_seeded():
    draws = [[int(RandomAgent(seed=s).predict(None)[0]) for _ in range(1)] for s in (1, 1)]
    a, b = RandomAgent(seed=1), RandomAgent(seed=1)
    seq_a = [int(a.predict(None)[0]) for _ in range(50)]
    seq_b = [int(b.predict(None)[0]) for _ in range(50)]
    assert seq_a == seq_b and set(seq_a) == {0, 1, 2} and draws[0] == draws[1]
    assert seq_a != [int(RandomAgent(seed=2).predict(None)[0]) for _ in range(50)]


def test_evaluation_is_reproducible_and_counts_frames():
    first = evaluate("random", episodes=2, seed=3)
    assert first == evaluate("random", episodes=2, seed=3)
    assert first["lengths"] != evaluate("random", episodes=2, seed=5)["lengths"]
    heuristic = evaluate("heuristic", episodes=1, seed=0, max_steps=48)
    # 48 frames at 24 fps from 5 m/s with 0.2 m/s^2: 5 * 2 + 0.1 * 2^2 = 10.4 m
    assert heuristic["lengths"] == [48] and heuristic["distances"][0] == pytest.approx(10.4)


def test_unknown_agent_path():
    with pytest.raises(FileNotFoundError, match="neither"):
        load_agent("no/such/model.zip")


def test_sidecar_round_trip_and_errors(tmp_path):
    settings = ObservationSettings(view="neural", size=32 + 16, checkpoint="r.safetensors", render_steps=3)
    write_sidecar(tmp_path / "m.zip", settings, seed=1)
    assert read_sidecar(tmp_path / "m.zip")[0] == settings
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(AgentFileError, match="bad.json"):
        read_sidecar(tmp_path / "bad.zip")
    with pytest.raises(ValueError, match="positive"):
        ObservationSettings(size=0)
    with pytest.raises(ValueError, match="view"):
        ObservationSettings(view="pixels")


def test_hyperparams_are_zoo_format():
    hp = load_hyperparams()
    assert hp["policy"] == "CnnPolicy" and hp["n_envs"] >= 1 and hp["normalize"]["norm_obs"] is False
    assert hp["action_repeat"] == 8 and hp["gamma"] == 0.98  # the recipe the README measures
    schedule = _schedule(hp["learning_rate"])
    assert schedule(1.0) == pytest.approx(2.5e-4) and schedule(0.5) == pytest.approx(1.25e-4)
    assert _schedule(0.3) == 0.3


def test_hyperparams_reject_unknown_keys(tmp_path):
    path = tmp_path / "ppo.yaml"
    path.write_text("Spokester-v0:\n  n_steps: 8\n  learning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        load_hyperparams(path)
    with pytest.raises(ValueError, match="no entry"):
        load_hyperparams(path, env_id="Other-v0")


def test_random_agent_action_space():
    agent = RandomAgent(gym.spaces.Discrete(2), seed=0)
    assert set(int(agent.predict(np.zeros(1))[0]) for _ in range(40)) == {0, 1}
