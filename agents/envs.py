"""What an agent sees: observation settings that travel with a trained model, and the envs built from them.

A PPO model `NAME.zip` is saved with a JSON sidecar `NAME.json` holding its `ObservationSettings`, so that
evaluation, recording and play rebuild exactly the observations it was trained on. Two views exist:

- `"packed"`: the game's depth+flow at `size` x `size`, packed by `spokester_env.PackedObservation` into one
  channel-first uint8 image (3 channels) for SB3's `CnnPolicy`. One step = `action_repeat` game frames
  (default 1): the action on the first, keep lane on the rest (`spokester_env.frame_actions`).
- `"neural"`: the neural renderer's frame alone (uint8 (S, S, 3), S = the renderer's size), through
  `neural_render.NeuralRenderObservation` (one env) or `NeuralRenderVectorEnv` (training, one batched
  renderer pass for all envs). One step = one framelet = `patch_frames` game frames, played the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym

from spokester_env import ENV_ID, ActionRepeat, PackedObservation  # importing it registers ENV_ID
from spokester_env.output import atomic_write_bytes

__all__ = ["ENV_ID", "PACKED_SIZE", "PICTURE_SIZE", "VIEWS", "AgentFileError", "ObservationSettings", "make_env"]

VIEWS = ("packed", "neural")
PACKED_SIZE = 64
"""Default image side of the packed view, px: the smallest comfortable size for NatureCNN (which needs >= 36)
at which a car 30 m ahead is still about 4 pixels wide; an env step costs about half of an 84 x 84 one."""
PICTURE_SIZE = 128
"""Default image side of what people watch, `spokester record` and `spokester play`, px, when no neural
renderer sets it (a neural view is always at the renderer's size)."""
SIDECAR_FORMAT = "spokester-agent"


class AgentFileError(ValueError):
    """A trained agent's files cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class ObservationSettings:
    """How the observations of a trained agent are made; saved beside the model as JSON."""

    view: str = "packed"
    """`"packed"` (depth+flow packed into uint8 channels) or `"neural"` (the renderer's frame)."""
    size: int = PACKED_SIZE
    """Image side in pixels; for `"neural"` it must equal the renderer checkpoint's image size."""
    keys: tuple[str, ...] = ("depth", "flow")
    """Game observations packed into channels (`"packed"` view); the neural view always reads depth+flow."""
    checkpoint: str | None = None
    """Renderer checkpoint of the `"neural"` view (None = the shipped default)."""
    render_steps: int | None = None
    """Euler steps per framelet of the `"neural"` view (None = the checkpoint's, `load_renderer(...).num_steps`)."""
    env_kwargs: dict = field(default_factory=dict)
    """Further `gym.make` arguments (e.g. `fps`)."""
    action_repeat: int = 1
    """`"packed"` view: each action is played for this many game frames (`spokester_env.ActionRepeat`)."""

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view={self.view!r} is not one of {VIEWS}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size={self.size!r}: must be a positive integer")
        if not isinstance(self.action_repeat, int) or self.action_repeat < 1:
            raise ValueError(f"action_repeat={self.action_repeat!r}: must be a positive integer")
        if self.view == "neural" and self.action_repeat != 1:
            raise ValueError("action_repeat: the neural view already plays each action for a framelet; use 1")
        object.__setattr__(self, "keys", tuple(self.keys))

    def to_dict(self) -> dict:
        return {**asdict(self), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, data: dict) -> ObservationSettings:
        return cls(**data)


def make_env(settings: ObservationSettings, *, max_episode_steps: int | None = None) -> gym.Env:
    """One env giving the agent's observations (packed or neural) for `settings`."""
    from neural_render.wrapper import PAINTED_FROM  # here: a packed view needs no torch

    keys = PAINTED_FROM if settings.view == "neural" else settings.keys
    kwargs = dict(settings.env_kwargs)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    env = gym.make(ENV_ID, width=settings.size, height=settings.size, observations=keys, **kwargs)
    if settings.view == "packed":
        env = PackedObservation(env)
        return ActionRepeat(env, settings.action_repeat) if settings.action_repeat > 1 else env
    from neural_render import NeuralRenderObservation

    return NeuralRenderObservation(env, settings.checkpoint, num_steps=settings.render_steps, pixels_only=True)


# --- the sidecar ---------------------------------------------------------------------------------------------


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """`NAME.json` beside `NAME.zip`."""
    path = Path(model_path)
    return path.with_suffix(".json") if path.suffix == ".zip" else path.with_name(path.name + ".json")


def write_sidecar(model_path: str | os.PathLike, settings: ObservationSettings, **extra) -> Path:
    """Save the observation settings (and free-form training facts) beside a model."""
    path = sidecar_path(model_path)
    info = {"format": SIDECAR_FORMAT, "env_id": ENV_ID, "observation": settings.to_dict(), **extra}
    atomic_write_bytes(path, (json.dumps(info, indent=2) + "\n").encode())
    return path


def read_sidecar(model_path: str | os.PathLike) -> tuple[ObservationSettings, dict]:
    """The observation settings saved beside a model, and the whole sidecar."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise AgentFileError(f"{path}: no such file (the JSON that `spokester train-agent` saves beside the model)")
    try:
        info = json.loads(path.read_text())
        if info.get("format") != SIDECAR_FORMAT:
            raise ValueError(f'no "format": "{SIDECAR_FORMAT}"')
        return ObservationSettings.from_dict(info["observation"]), info
    except (ValueError, TypeError, KeyError) as error:
        raise AgentFileError(f"{path}: not a Spokester agent sidecar ({' '.join(str(error).split())})") from None
