"""Spokester as a Gymnasium environment: `import spokester_env` registers `Spokester-v0` (`ENV_ID`)."""

from gymnasium.envs.registration import register

from .config import (
    ACTION_MEANINGS,
    CAMERA_PRESETS,
    DEFAULT_CAMERA,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SCENE,
    ENV_ID,
    KEEP_LANE,
    SCENE_PRESETS,
    CameraConfig,
    GameConfig,
    camera_config,
    camera_name,
    frame_actions,
    scene_name,
    with_scene,
)
from .env import OBSERVATION_KEYS, SpokesterEnv
from .scene import BACKENDS, CLASS_NAMES
from .visualize import depth_to_rgb, flow_to_rgb
from .wrappers import ActionRepeat, PackedObservation, PlayedDecision, pad_frames, play_decision

__all__ = [
    "ACTION_MEANINGS",
    "BACKENDS",
    "CAMERA_PRESETS",
    "DEFAULT_CAMERA",
    "DEFAULT_SCENE",
    "SCENE_PRESETS",
    "DEFAULT_IMAGE_SIZE",
    "ENV_ID",
    "KEEP_LANE",
    "CLASS_NAMES",
    "CameraConfig",
    "GameConfig",
    "camera_config",
    "camera_name",
    "OBSERVATION_KEYS",
    "ActionRepeat",
    "PackedObservation",
    "PlayedDecision",
    "SpokesterEnv",
    "depth_to_rgb",
    "flow_to_rgb",
    "frame_actions",
    "pad_frames",
    "play_decision",
    "scene_name",
    "with_scene",
]

register(id=ENV_ID, entry_point="spokester_env.env:SpokesterEnv", max_episode_steps=3000)
