"""Wrappers that reshape Spokester's observations and steps for learners, and the one loop that plays a
decision over several game frames (`play_decision`), which every wrapper deciding once per several frames
uses: `ActionRepeat` here, the neural renderer's framelets in `neural_render.wrapper`."""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .config import frame_actions
from .env import OBSERVATION_KEYS

DEPTH_LOG_GAIN = 20.0
"""Packed depth = 255 * log(1 + g * inv_depth) / log(1 + g * max_inv_depth) with g = this gain (1/m)^-1."""
FLOW_SCALE = 4.0
"""Packed flow = 128 + FLOW_SCALE * flow: +-31.75 pixels per frame fit in a byte, larger flows saturate."""


class PlayedDecision(NamedTuple):
    """What playing one decision over several frames gave (`play_decision`)."""

    observations: list
    """The observation of every frame played, in order (at least one)."""
    reward: float
    """The sum of the frames' rewards."""
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    """The last frame's info."""

    @property
    def frames(self) -> int:
        """How many frames were played: all of them, or fewer when the episode ended inside the decision."""
        return len(self.observations)


def play_decision(env: gym.Env, action: int, frames: int) -> PlayedDecision:
    """Play one decision over up to `frames` frames of `env`, as `frame_actions` says (the action on the first,
    "keep lane" on the rest), stopping at the frame that ends the episode."""
    observations, reward, terminated, truncated, info = [], 0.0, False, False, {}
    for played in frame_actions(action, frames):
        observation, frame_reward, terminated, truncated, info = env.step(played)
        observations.append(observation)
        reward += float(frame_reward)
        if terminated or truncated:
            break
    return PlayedDecision(observations, reward, terminated, truncated, info)


def pad_frames(items: list, count: int) -> list:
    """`items` followed by copies of its last item, `count` in all: completes a framelet that the episode's end
    cut short, so that a whole framelet can still be painted (only the frames that happened are kept)."""
    return items + [items[-1]] * (count - len(items))


class PackedObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Packs the observation dict into one channel-first uint8 image, ready for SB3's `CnnPolicy`.

    Channels, in the env's key order: depth -> 1 (log-scaled inverse depth, 0 = sky), flow -> 2
    (`128 + 4 * flow`, saturating at +-31.75 px/frame), rgb -> 3, cars -> 1 (255 where a car is).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not set(space.spaces) <= set(OBSERVATION_KEYS):
            raise ValueError(f"PackedObservation needs a Spokester Dict observation space, got {space}")
        self.keys = tuple(space.spaces)
        h, w = next(iter(space.spaces.values())).shape[:2]
        channels = sum(space.spaces[k].shape[2] for k in self.keys)
        if "depth" in space.spaces:
            self._max_inv = float(space.spaces["depth"].high.max())
        self.observation_space = spaces.Box(0, 255, (channels, h, w), np.uint8)

    def observation(self, observation: dict) -> np.ndarray:
        parts = []
        for key in self.keys:
            x = observation[key]
            if key == "depth":
                x = np.log1p(DEPTH_LOG_GAIN * x) * (255.0 / np.log1p(DEPTH_LOG_GAIN * self._max_inv))
            elif key == "flow":
                x = 128.0 + FLOW_SCALE * x
            elif key == "cars":
                x = x * 255
            parts.append(np.clip(x, 0, 255).round().astype(np.uint8) if key != "rgb" else x)
        return np.ascontiguousarray(np.concatenate(parts, axis=-1).transpose(2, 0, 1))


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One decision per `repeat` game frames (Atari's frame skip, without its max-pooling).

    One step plays the decision over up to `repeat` frames (`frame_actions`: the action on the first frame,
    "keep lane" on the rest, so a move is one lane, never several), stopping early at a crash or the time
    limit; the observation is the last frame's, the reward the sum over the frames played, and
    `info["frames"]` the number of frames played (0 after `reset`). `frames_per_step` is `repeat`. Lane
    changes take about 0.6 s (14 frames at 24 fps), so deciding every 2-4 frames loses no control while
    making each decision matter more to a learner. SB3's `MaxAndSkipEnv` is not used: it repeats the action
    itself and max-pools the last two frames, both wrong here.
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        if not isinstance(repeat, int | np.integer) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(f"ActionRepeat: repeat={repeat!r} must be an integer >= 1")
        gym.utils.RecordConstructorArgs.__init__(self, repeat=int(repeat))
        gym.Wrapper.__init__(self, env)
        self.repeat = self.frames_per_step = int(repeat)

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "frames": 0}

    def step(self, action):
        played = play_decision(self.env, action, self.repeat)
        info = {**played.info, "frames": played.frames}
        return played.observations[-1], played.reward, played.terminated, played.truncated, info
