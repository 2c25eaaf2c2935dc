"""Spokester as a Gymnasium environment: `import spokester_env` registers `Spokester-v0`."""

from gymnasium.envs.registration import register

from .config import ACTION_MEANINGS, CameraConfig, GameConfig
from .env import OBSERVATION_KEYS, SpokesterEnv
from .scene import CLASS_NAMES
from .visualize import depth_to_rgb, flow_to_rgb
from .wrappers import ActionRepeat, PackedObservation

__all__ = [
    "ACTION_MEANINGS",
    "CLASS_NAMES",
    "CameraConfig",
    "GameConfig",
    "OBSERVATION_KEYS",
    "ActionRepeat",
    "PackedObservation",
    "SpokesterEnv",
    "depth_to_rgb",
    "flow_to_rgb",
]

register(id="Spokester-v0", entry_point="spokester_env.env:SpokesterEnv", max_episode_steps=3000)
