"""Neural frames in the RL loop: the SB3 adapter of NeuralRenderVectorEnv, and PPO through it."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecMonitor

from spokester_agents.envs import ObservationSettings
from spokester_agents.neural_vec import NeuralSB3VecEnv


def _settings(checkpoint, **env_kwargs) -> ObservationSettings:
    return ObservationSettings(view="neural", size=32, checkpoint=str(checkpoint), render_steps=1,
                               env_kwargs=env_kwargs)  # fmt: skip


def test_episode_ends_are_reported_one_step_late(tiny_checkpoint):
    # a 3-frame time limit = 2 framelet steps: the second step ends every episode
    venv = NeuralSB3VecEnv(_settings(tiny_checkpoint, max_episode_steps=3), n_envs=2)
    venv.seed(11)
    first = venv.reset()
    assert first.shape == (2, 32, 32, 3) and first.dtype == np.uint8
    _, _, dones1, _ = venv.step(np.array([0, 0]))
    obs2, rewards2, dones2, infos2 = venv.step(np.array([0, 0]))  # the episodes end here ...
    assert not dones1.any() and not dones2.any() and (rewards2 > 0).all()
    obs3, rewards3, dones3, infos3 = venv.step(np.array([1, 2]))  # ... and are reported here
    assert dones3.all() and (rewards3 == 0).all()
    for j in range(2):
        assert infos3[j]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos3[j]["terminal_observation"], obs2[j])
        assert infos3[j]["distance"] == pytest.approx(infos2[j]["distance"])
    _, rewards4, dones4, infos4 = venv.step(np.array([0, 0]))  # the new episodes go on
    assert not dones4.any() and (rewards4 > 0).all()
    assert all(info["distance"] < infos2[0]["distance"] for info in infos4)
    venv.close()


def test_ppo_trains_through_the_neural_vector_env(tiny_checkpoint):
    from stable_baselines3 import PPO

    venv = NeuralSB3VecEnv(_settings(tiny_checkpoint, max_episode_steps=6), n_envs=2)
    venv = VecMonitor(venv, info_keywords=("distance",))
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    assert model.num_timesteps == 16
    episodes = list(model.ep_info_buffer)  # 3 framelets of 2 frames, and the step that reports the end
    assert len(episodes) == 4 and all(e["l"] == 4 for e in episodes)
    assert all(e["distance"] == pytest.approx(episodes[0]["distance"]) and e["distance"] > 1 for e in episodes)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,)
    venv.close()
