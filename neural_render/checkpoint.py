"""Renderer checkpoints: safetensors weights plus a JSON sidecar with everything needed to use them.

A checkpoint `NAME` is two files, `NAME.safetensors` (the network's tensors) and `NAME.json`:
    {"format": "spokester-renderer", "version": 2, "checkpoint_id": "<hex>",
     "preset": "tiny" | null,            # the preset whose config equals the saved one, as a label
     "config": {...RendererConfig...},   # the full config: loading never relies on code defaults
     "stats": {"sources": {name: {...ConditionSource...}}} | null,   # statistics and transform flags
     "game": {"camera": "follow", "scene": "city"},   # the game setting its "game" statistics came from
     "provenance": {...}}                # how it was made (data, steps, extractors), free-form JSON
Both files carry the same random `checkpoint_id`, so a weights file never silently pairs with the JSON of
another save. Each file is written to a temporary file and moved into place (os.replace), so a crash
never leaves a half-written file under the checkpoint's name. Every failure to load is a CheckpointError
whose message is one line naming the file and what is wrong.

Version 1 (before 2026-12) is still read: its config names the block count `depth` (and has no pixel
head), and its statistics hold `log_depth` and `clip` once for all sources and no `sky_to_zero`, which its
provenance's training config gave (`train_config.sky_to_zero`, for the video sources); its game was the
follow camera in the city scene, the only one then.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from neural_render.conditioning import ConditionStats
from neural_render.model import RENDERER_PRESETS, Renderer, RendererConfig, preset_name
from spokester_env.config import DEFAULT_CAMERA, DEFAULT_SCENE
from spokester_env.output import atomic_write_bytes

__all__ = ["DEFAULT_CHECKPOINT", "CheckpointError", "LoadedRenderer", "save_renderer", "load_renderer"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.safetensors"
"""The project's shipped default renderer (weights; its JSON sits beside it)."""
FORMAT = "spokester-renderer"
VERSION = 2
"""The format version `save_renderer` writes; `load_renderer` reads 1 and 2."""
VERSION_1_NAMES = {"depth": "num_blocks"}
"""Config fields renamed since version 1: old name -> new name."""
DEFAULT_GAME = {"camera": DEFAULT_CAMERA, "scene": DEFAULT_SCENE}
"""The game setting of a checkpoint that does not name one."""
VERSION_1_ADDED = {"pixel_head": 0}
"""Config fields added since version 1, with the value that gives a version-1 network."""


class CheckpointError(ValueError):
    """A renderer checkpoint cannot be used; the message is one line naming the file."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


@dataclass(frozen=True)
class LoadedRenderer:
    """A loaded checkpoint: the network (in eval mode) and what travelled with it."""

    model: Renderer
    stats: ConditionStats | None
    preset: str | None
    provenance: dict = field(default_factory=dict)
    path: Path | None = None
    game: dict = field(default_factory=lambda: dict(DEFAULT_GAME))
    """The game setting the renderer is made for: {"camera": preset name, "scene": preset name}."""

    def game_source(self, camera: str | None) -> str:
        """The condition source for a game seen by `camera` (a preset name, None for a custom rig): the
        statistics fitted with that camera when the checkpoint has them, else the renderer's own "game"."""
        specific = f"game/{camera}"
        return specific if self.stats is not None and specific in self.stats.sources else "game"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, json) paths of a checkpoint named by either file or by their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_renderer(
    path: str | os.PathLike,
    model: Renderer,
    stats: ConditionStats | None = None,
    provenance: dict | None = None,
    game: dict | None = None,
) -> Path:
    """Save a renderer (and its condition statistics, the game setting its "game" statistics came from —
    {"camera": ..., "scene": ...}, default `DEFAULT_GAME` — and its provenance); returns the weights path."""
    game = {**DEFAULT_GAME, **(game or {})}
    if set(game) != set(DEFAULT_GAME):
        raise ValueError(f"game={game}: give camera and scene only")
    weights, meta = checkpoint_paths(path)
    checkpoint_id = uuid.uuid4().hex
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    info = {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint_id": checkpoint_id,
        "preset": preset_name(model.config),
        "config": model.config.to_dict(),
        "stats": stats.to_dict() if stats is not None else None,
        "game": game,
        "provenance": provenance or {},
    }
    text = json.dumps(info, indent=2) + "\n"  # before writing anything: unserialisable provenance fails here
    atomic_write_bytes(weights, safetensors_bytes(tensors, metadata={"format": FORMAT, "checkpoint_id": checkpoint_id}))
    atomic_write_bytes(meta, text.encode())
    return weights


def _read_json(meta: Path) -> dict:
    if not meta.is_file():
        raise CheckpointError(meta, "no such file (the JSON that goes with the weights)")
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(meta, f"corrupt JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(meta, f'not a renderer checkpoint JSON (no "format": "{FORMAT}")')
    if info.get("version") not in (1, VERSION):
        raise CheckpointError(meta, f"format version {info.get('version')!r}; this code reads versions 1 and {VERSION}")
    return info


def _config(meta: Path, info: dict) -> RendererConfig:
    if info.get("config") is not None:
        config = info["config"]
        if info["version"] == 1 and isinstance(config, dict):
            config = VERSION_1_ADDED | {VERSION_1_NAMES.get(name, name): value for name, value in config.items()}
        try:
            return RendererConfig.from_dict(config)
        except (TypeError, ValueError) as error:
            raise CheckpointError(meta, f"bad config: {error}") from None
    preset = info.get("preset")
    if preset not in RENDERER_PRESETS:
        raise CheckpointError(meta, f"no config and unknown preset {preset!r} (known: {', '.join(RENDERER_PRESETS)})")
    return RENDERER_PRESETS[preset]()


def _game(meta: Path, info: dict) -> dict:
    game = info.get("game") or dict(DEFAULT_GAME)  # version 1 and the first version-2 files: the only game then
    if not isinstance(game, dict) or set(game) != set(DEFAULT_GAME):
        raise CheckpointError(meta, f'bad "game": {game!r} (need camera and scene)')
    return game


def _stats(meta: Path, info: dict) -> ConditionStats | None:
    if info.get("stats") is None:
        return None
    try:
        if info["version"] == 1:
            trained = (info.get("provenance") or {}).get("train_config") or {}
            return ConditionStats.from_version_1(info["stats"], bool(trained.get("sky_to_zero", False)))
        return ConditionStats.from_dict(info["stats"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(meta, f"bad statistics: {error}") from None


def _read_weights(weights: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(weights), framework="pt") as file:
            return {name: file.get_tensor(name) for name in file.keys()}, file.metadata() or {}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(weights, f"corrupt safetensors file ({error})") from None


def load_renderer(
    path: str | os.PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedRenderer:
    """Load a renderer checkpoint (None = the project's shipped default) onto `device` in `dtype`."""
    if path is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise CheckpointError(
                DEFAULT_CHECKPOINT,
                "no default renderer is shipped yet; pass the path of a checkpoint written by save_renderer",
            )
        path = DEFAULT_CHECKPOINT
    weights, meta = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(weights, "no such file")
    info = _read_json(meta)
    config = _config(meta, info)
    tensors, metadata = _read_weights(weights)
    if metadata.get("checkpoint_id") != info.get("checkpoint_id"):
        raise CheckpointError(weights, f"these weights and {meta.name} come from different saves")

    model = Renderer(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(weights, f"tensors missing {missing[:3]} and unexpected {unexpected[:3]} for its config")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                weights,
                f"tensor {name!r} has shape {tuple(tensor.shape)} but the config in {meta.name} needs "
                f"{tuple(expected[name].shape)}",
            )
    model.load_state_dict(tensors)
    stats = _stats(meta, info)
    return LoadedRenderer(
        model=model.to(device=device, dtype=dtype).eval(),
        stats=stats,
        preset=info.get("preset"),
        provenance=info.get("provenance") or {},
        path=weights,
        game=_game(meta, info),
    )
