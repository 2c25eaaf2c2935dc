"""Neural frames in the RL loop: `NeuralRenderVectorEnv` (one batched renderer pass per step) as an SB3 VecEnv.

SB3 expects a VecEnv that resets an ended env within the same step and hands over the last observation in
`info["terminal_observation"]`. `NeuralRenderVectorEnv` resets on the *next* step (gymnasium's NEXT_STEP
autoreset; the action given to the ended env is ignored). This adapter bridges the two by reporting the
episode end one step late:

- step k, env j ends: j's step is passed on as an ordinary step (done False), its observation being the
  terminal one; its info is kept.
- step k + 1, the vector env resets j: the adapter reports done True with reward 0, the kept info (distance,
  `TimeLimit.truncated`) and `terminal_observation` = the terminal observation, and j's new first observation.

So each episode gains one zero-reward step from its terminal observation, whose value PPO learns to be 0
after a crash (or bootstraps after a time limit); the rewards, distances and episode ends are unchanged.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from spokester_agents.envs import ENV_ID, ObservationSettings

__all__ = ["NeuralSB3VecEnv"]


def _unbatch_infos(infos: dict, n: int) -> list[dict]:
    """Gymnasium's dict of arrays with `_key` masks -> one dict per env."""
    out = [{} for _ in range(n)]
    for key, values in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}", np.ones(n, bool))
        for j in range(n):
            if mask[j]:
                value = values[j]
                out[j][key] = value.item() if isinstance(value, np.generic) else value
    return out


class NeuralSB3VecEnv(VecEnv):
    """`n_envs` Spokester envs observing the neural frame alone (uint8 (S, S, 3)), rendered in one batch."""

    def __init__(self, settings: ObservationSettings, n_envs: int, device: str = "cpu"):
        from neural_render import NeuralRenderVectorEnv
        from neural_render.wrapper import PAINTED_FROM

        if settings.view != "neural":
            raise ValueError(f"NeuralSB3VecEnv needs view='neural', got {settings.view!r}")
        size = settings.size
        make = lambda: gym.make(ENV_ID, width=size, height=size, observations=PAINTED_FROM, **settings.env_kwargs)
        self.venv = NeuralRenderVectorEnv(
            [make] * n_envs, settings.checkpoint, device=device, num_steps=settings.render_steps, pixels_only=True
        )
        self.frames_per_step = self.venv.frames_per_step
        super().__init__(n_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._ended = np.zeros(n_envs, bool)
        self._ended_obs: list[np.ndarray | None] = [None] * n_envs
        self._ended_info: list[dict] = [{} for _ in range(n_envs)]

    def reset(self) -> np.ndarray:
        seeds = self._seeds
        seed = None if all(s is None for s in seeds) else [None if s is None else int(s) for s in seeds]
        obs, infos = self.venv.reset(seed=seed)
        self.reset_infos = _unbatch_infos(infos, self.num_envs)
        self._ended[:] = False
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        infos = _unbatch_infos(infos, self.num_envs)
        dones = np.zeros(self.num_envs, bool)
        rewards = rewards.astype(np.float32)
        for j in range(self.num_envs):
            if self._ended[j]:  # this step reset env j: report the end of its episode now
                dones[j], rewards[j] = True, 0.0
                infos[j] = {**self._ended_info[j], "terminal_observation": self._ended_obs[j]}
                self.reset_infos[j] = {}
            elif terminated[j] or truncated[j]:
                self._ended_obs[j] = obs[j].copy()
                self._ended_info[j] = {**infos[j], "TimeLimit.truncated": bool(truncated[j] and not terminated[j])}
        self._ended = terminated | truncated
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.venv.close()

    # --- the rest of SB3's VecEnv interface, on the sub-envs ------------------------------------------------

    def _targets(self, indices):
        return [self.venv.envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices=None) -> list:
        return [env.get_wrapper_attr(attr_name) for env in self._targets(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        for env in self._targets(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        return [env.get_wrapper_attr(method_name)(*method_args, **method_kwargs) for env in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        from stable_baselines3.common import env_util

        return [env_util.is_wrapped(env, wrapper_class) for env in self._targets(indices)]

    def get_images(self) -> list[np.ndarray]:
        frames = self.venv.render()
        return [] if frames is None else list(frames)
