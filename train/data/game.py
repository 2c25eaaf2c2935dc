"""Seeded game rides: the game's side of the training data (its condition statistics) and of the pictures.

A ride is a seeded `spokester_env` episode with a seeded lane-changing policy (a new random move every
`change_every` frames, keep lane otherwise); a crash starts the next episode with another seed. Its depth
(1/m) and flow (pixels per frame) fit the renderer's "game" condition source (`spokester_train.data.sources`), and the
same ride painted by the renderer gives the contact sheets and rollout videos of `spokester_train.evaluation`.

Legend: t frames, s side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spokester_env import CLASS_NAMES, DEFAULT_CAMERA, DEFAULT_SCENE, CameraConfig, SpokesterEnv

__all__ = ["Ride", "game_ride"]


@dataclass(frozen=True)
class Ride:
    """A ride's observations: depth (t, s, s, 1) 1/m, flow (t, s, s, 2) px/frame, cube view (t, s, s, 3),
    and the game's class map (t, s, s) uint8, indices into `spokester_env.CLASS_NAMES` (None if not kept)."""

    depth: np.ndarray
    flow: np.ndarray
    rgb: np.ndarray
    fps: float
    classes: np.ndarray | None = None

    @property
    def cars(self) -> np.ndarray:
        """The game's car mask (t, s, s, 1) bool, from its class map (a renderer with `wants_cars` paints from it)."""
        if self.classes is None:
            raise ValueError("this ride kept no class map: ride it with classes=True")
        return (self.classes == CLASS_NAMES.index("cars"))[..., None]


def game_ride(
    size: int,
    frames: int,
    seed: int = 0,
    change_every: int = 30,
    warmup: int = 12,
    classes: bool = True,
    camera: str | CameraConfig = DEFAULT_CAMERA,
    scene: str = DEFAULT_SCENE,
) -> Ride:
    """Ride `frames` frames (after `warmup` frames that are dropped) at `size` x `size` with a camera and a
    scene (`spokester_env` presets), keeping each frame's class map unless `classes` is False."""
    env = SpokesterEnv(width=size, height=size, observations=("depth", "flow", "rgb"), camera=camera, scene=scene)
    rng = np.random.default_rng(seed)
    depth, flow, rgb, labels = [], [], [], []
    try:
        episode = seed
        obs, _ = env.reset(seed=episode)
        for index in range(warmup + frames):
            action = int(rng.integers(1, 3)) if index % change_every == change_every - 1 else 0
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                episode += 1_000_003
                obs, _ = env.reset(seed=episode)
            if index >= warmup:
                depth.append(obs["depth"])
                flow.append(obs["flow"])
                rgb.append(obs["rgb"])
                if classes:
                    labels.append(env.class_map())
    finally:
        env.close()
    fps = float(env.metadata["render_fps"])
    return Ride(np.stack(depth), np.stack(flow), np.stack(rgb), fps, np.stack(labels) if classes else None)
