"""Spokester as a Gymnasium environment: `import spokester_env` registers `Spokester-v0`."""

from gymnasium.envs.registration import register

from .config import ACTION_MEANINGS, KEEP_LANE, CameraConfig, GameConfig, frame_actions
from .env import OBSERVATION_KEYS, SpokesterEnv
from .scene import CLASS_NAMES
from .visualize import depth_to_rgb, flow_to_rgb
from .wrappers import ActionRepeat, PackedObservation

__all__ = [
    "ACTION_MEANINGS",
    "KEEP_LANE",
    "CLASS_NAMES",
    "CameraConfig",
    "GameConfig",
    "OBSERVATION_KEYS",
    "ActionRepeat",
    "PackedObservation",
    "SpokesterEnv",
    "depth_to_rgb",
    "flow_to_rgb",
    "frame_actions",
]

register(id="Spokester-v0", entry_point="spokester_env.env:SpokesterEnv", max_episode_steps=3000)
