"""The renderer's condition sources of the training data: each video's, the videos' pooled, the game's.

Every fit is a `neural_render.ConditionSource` (the one home of the fitting and pooling arithmetic); this
module only says what it is fitted on:

- a video: its label store's depth on every frame (with the sky at 0 if `sky_to_zero`: `spokester_train.data.sky`)
  and its flow as the mixture that training draws, every stored frame skip equally likely (each skip's
  flow from frame k on, the frames that have a frame k before them; a skip longer than the video is left out);
- the training videos: each video under "video/<stem>" (relative depth's unknown scale is per video, and
  each video's own statistics remove it), and all of them pooled, weighted by frames, under "video";
- the game: a seeded ride (`spokester_train.data.game`) at the renderer's frame size with the camera and scene the
  renderer is made for, under "game"; and one ride per camera preset in that scene, under "game/<camera>",
  so that a renderer shown the game through another camera normalises it with that camera's statistics.
  A host without the game (pybullet) reads them from a file made where it runs (`game_sources_record`, as a
  training pack carries them, `spokester_train.data.pack`), which records what they were fitted on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from neural_render import ConditionSource
from spokester_env import CAMERA_PRESETS, DEFAULT_CAMERA, DEFAULT_SCENE
from spokester_train.data.game import game_ride
from spokester_train.data.store import LabelStore, flow_stream
from spokester_train.data.video_depth import read_depth

__all__ = [
    "GAME",
    "GAME_STATS_FRAMES",
    "VIDEOS",
    "game_source",
    "game_sources",
    "game_sources_record",
    "load_game_sources",
    "video_source",
    "video_source_name",
    "video_sources",
]

GAME = "game"
"""Name of the game's condition source."""
GAME_STATS_FRAMES = 120
"""Frames of the seeded ride that the game's statistics are fitted on, by default."""
VIDEOS = "video"
"""Name of the training videos' pooled source; each video's own is `video_source_name(stem)`."""


def video_source_name(stem: str) -> str:
    """The condition source name of one training video."""
    return f"{VIDEOS}/{stem}"


def video_source(store: LabelStore, skips: Sequence[int] | None = None, **flags) -> ConditionSource:
    """The condition source of one video from its label store; `flags` (`log_depth`, `sky_to_zero`, `car_slabs`,
    `clip`, `sky_at_clip`) go to `ConditionSource.fit` and say how the depth is read (`read_depth`)."""
    store = LabelStore.of(store)
    skips = tuple(skips) if skips is not None else store.skips
    depth = read_depth(store, flags.get("sky_to_zero", False), flags.get("car_slabs", False))  # (n, s, s, 1)
    flows = [store.stream(flow_stream(k))[k:] for k in skips if k < store.n_frames]  # (n - k, s, s, 2) each
    return ConditionSource.fit(depth, flows, **flags)


def video_sources(stores: Sequence[LabelStore], stems: Sequence[str], skips, **flags) -> dict[str, ConditionSource]:
    """{"video/<stem>": each video's source, "video": all of them pooled}; two videos of one stem are an error."""
    sources = {}
    for store, stem in zip(stores, stems, strict=True):
        name = video_source_name(stem)
        if name in sources:
            raise ValueError(f"two training videos share the name {stem!r}; rename one")
        sources[name] = video_source(store, skips, **flags)
    sources[VIDEOS] = ConditionSource.pool(list(sources.values()))
    return sources


def game_source(
    size: int, frames: int, seed: int = 0, camera: str = DEFAULT_CAMERA, scene: str = DEFAULT_SCENE, **flags
) -> ConditionSource:
    """The game's condition source, fitted on a seeded ride of `frames` frames at `size` x `size` with a
    camera and a scene (presets of `spokester_env`)."""
    ride = game_ride(size, frames, seed, camera=camera, scene=scene)
    return ConditionSource.fit(ride.depth, ride.flow, **flags)


def game_sources(size: int, frames: int, seed: int, camera: str, scene: str, **flags) -> dict[str, ConditionSource]:
    """{"game": the source of `camera` in `scene`, "game/<preset>": that of every camera preset in `scene`}."""
    per_camera = {f"{GAME}/{name}": game_source(size, frames, seed, name, scene, **flags) for name in CAMERA_PRESETS}
    return {GAME: per_camera[f"{GAME}/{camera}"], **per_camera}


def game_sources_record(size: int, frames: int, seed: int, scene: str) -> dict:
    """`game_sources` of every camera preset in `scene`, with what they were fitted on, as JSON-ready data
    (the file `load_game_sources` reads)."""
    per_camera = game_sources(size, frames, seed, DEFAULT_CAMERA, scene)
    record = {"size": size, "frames": frames, "seed": seed, "scene": scene}
    return record | {"sources": {name: source.to_dict() for name, source in per_camera.items() if name != GAME}}


def load_game_sources(path: str | os.PathLike, size: int, frames: int, seed: int, camera: str, scene: str):
    """`game_sources(size, frames, seed, camera, scene)` read from a JSON file of a `game_sources_record`
    instead of riding the game; a file fitted on anything else is a one-line error naming both."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        fitted = {key: record[key] for key in ("size", "frames", "seed", "scene")}
        per_camera = {name: ConditionSource.from_dict(data) for name, data in record["sources"].items()}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such game statistics file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a game statistics file ({' '.join(str(error).split())})") from None
    wanted = {"size": size, "frames": frames, "seed": seed, "scene": scene}
    if fitted != wanted:
        raise ValueError(f"{path}: game statistics fitted on {fitted}, this run needs {wanted}")
    if f"{GAME}/{camera}" not in per_camera:
        raise ValueError(f"{path}: no statistics for camera {camera!r}; it has {sorted(per_camera)}")
    return {GAME: per_camera[f"{GAME}/{camera}"], **per_camera}
