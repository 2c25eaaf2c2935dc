"""Renderer checkpoints: safetensors weights plus a JSON sidecar with everything needed to use them.

A checkpoint `NAME` is two files, `NAME.safetensors` (the network's tensors) and `NAME.json`:
    {"format": "spokester-renderer", "version": 2, "checkpoint_id": "<hex>",
     "preset": "tiny" | null,            # the preset whose config equals the saved one, as a label
     "config": {...RendererConfig...},   # the full config: loading never relies on code defaults
     "stats": {"sources": {name: {...ConditionSource...}}} | null,   # statistics and transform flags
     "game": {"camera": "follow", "scene": "city"},   # the game setting its "game" statistics came from
     "sampling": {"num_steps": 12, "look": "NAME"},   # the Euler steps per framelet and the look (one of
                                         # config.looks; absent: no look) the renderer is meant to be sampled with
     "provenance": {...}}                # how it was made (data, steps, extractors), free-form JSON

The renderer is published as one unit: the weights file carries the same JSON text in its own safetensors
metadata (key "json"), and that copy is the authority; `NAME.json` is written after it, as a readable copy.
Each file is written to a temporary file and moved into place (`spokester_env.output.atomic_path`), so a
kill leaves the old checkpoint or the new one, never a half-written file or a broken pair: a kill between
the two moves leaves the new weights (with their JSON) beside the old copy, which loading ignores with a
one-line warning that it is stale. Weights saved before the JSON travelled inside them (all of version 1
and the first of version 2, the shipped default among them) are read with the JSON beside them as before;
both files carry the same random `checkpoint_id`, so such weights never silently pair with the JSON of
another save.

Every failure to load is a CheckpointError whose message is one line naming the file and what is wrong,
and every field is checked on load: the config (`RendererConfig`'s rules, unknown or missing fields
refused, but for `LATER_FIELDS`, which a file written before them lacks), the statistics (`ConditionSource`'s
rules; a "game" source is required), the game setting (camera and scene presets) and the JSON's own fields
(unknown ones refused), the sampling (a file without one is sampled with `sampler.NUM_STEPS`, the
seed's 12 steps). `"stats": null` (an untrained network, as tests save) loads with unit statistics and
a one-line warning.

Version 1 (before 2026-12) is still read: its config names the block count `depth` (and has no pixel
head), and its statistics hold `log_depth` and `clip` once for all sources and no `sky_to_zero`, which its
provenance's training config gave (`train_config.sky_to_zero`, for the video sources); its game was the
follow camera in the city scene, the only one then.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from neural_render.conditioning import ConditionStats
from neural_render.model import ANY_LOOK, RENDERER_PRESETS, ConfigFieldError, Renderer, RendererConfig, preset_name
from neural_render.sampler import NUM_STEPS
from spokester_env.config import CAMERA_PRESETS, DEFAULT_CAMERA, DEFAULT_SCENE, SCENE_PRESETS
from spokester_env.output import atomic_path, atomic_write_text

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_GAME",
    "CheckpointError",
    "LoadedRenderer",
    "checkpoint_info",
    "checkpoint_num_steps",
    "save_renderer",
    "load_renderer",
]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.safetensors"
"""The project's shipped default renderer (weights; its JSON sits beside it)."""
FORMAT = "spokester-renderer"
VERSION = 2
"""The format version `save_renderer` writes; `load_renderer` reads 1 and 2."""
FIELDS = ("format", "version", "checkpoint_id", "preset", "config", "stats", "game", "sampling", "provenance")
"""The fields of a checkpoint's JSON; any other is refused."""
EMBEDDED_JSON = "json"
"""The key of the weights file's safetensors metadata that holds the checkpoint's JSON text (the authority)."""
VERSION_1_NAMES = {"depth": "num_blocks"}
"""Config fields renamed since version 1: old name -> new name."""
NUM_STEPS_HELP = f"Euler steps per framelet (default: the checkpoint's, {NUM_STEPS} where it records none)"
"""The command-line help of every option that overrides a checkpoint's sampling steps."""
LOOK_HELP = (
    f"which footage's look to paint: one of the renderer's looks (its training videos' names) or {ANY_LOOK!r} "
    "(default: the checkpoint's)"
)
"""The command-line help of every option that chooses a renderer's look."""
DEFAULT_GAME = {"camera": DEFAULT_CAMERA, "scene": DEFAULT_SCENE}
"""The game setting of a checkpoint that does not name one."""
VERSION_1_ADDED = {"pixel_head": 0}
"""Config fields added since version 1, with the value that gives a version-1 network."""
LATER_FIELDS = {"patch_overlap": 0, "decode_overlap": 0, "looks": []}
"""Config fields added after version 2 was first written, with the value that every file written before them
had: a file of any version without one gets it."""


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
    checkpoint_id: str | None = None
    """The save's random id (the authoritative JSON's), which tells two saves of one path apart."""
    num_steps: int = NUM_STEPS
    """Euler steps per framelet the renderer is meant to be sampled with (its "sampling"); the wrappers,
    players, recorders and evaluation commands use it unless given another."""
    look: str = ANY_LOOK
    """The look (one of `model.config.looks`, or `ANY_LOOK`) the renderer is meant to be sampled with (its
    "sampling"); used like `num_steps`."""

    def steps(self, num_steps: int | None) -> int:
        """The Euler steps per framelet to sample with: `num_steps`, or the checkpoint's where it is None."""
        return self.num_steps if num_steps is None else num_steps

    def look_for(self, look: str | None) -> str:
        """The look to sample with: `look` (checked against the network's), or the checkpoint's where it is None."""
        if look is None:
            return self.look
        self.model.config.look_index(look)  # a ValueError naming the looks there are
        return look

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


def _game_problem(game) -> str | None:
    """What is wrong with a game setting, or None."""
    if not isinstance(game, dict) or set(game) != set(DEFAULT_GAME):
        return f"{game!r} (need camera and scene)"
    if game["camera"] not in CAMERA_PRESETS:
        return f"camera {game['camera']!r} (the cameras are {', '.join(CAMERA_PRESETS)})"
    if game["scene"] not in SCENE_PRESETS:
        return f"scene {game['scene']!r} (the scenes are {', '.join(SCENE_PRESETS)})"
    return None


def _sampling_problem(sampling, looks: tuple[str, ...]) -> str | None:
    """What is wrong with a "sampling" record of a network with `looks`, or None."""
    if not isinstance(sampling, dict) or "num_steps" not in sampling or not set(sampling) <= {"num_steps", "look"}:
        return f"{sampling!r} (need num_steps, and a look or none)"
    steps = sampling["num_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return f"num_steps {steps!r} (need an integer >= 1)"
    if "look" in sampling and sampling["look"] not in looks:
        return f"look {sampling['look']!r} (the network's looks are {list(looks)})"
    return None


def save_renderer(
    path: str | os.PathLike,
    model: Renderer,
    stats: ConditionStats | None = None,
    provenance: dict | None = None,
    game: dict | None = None,
    num_steps: int = NUM_STEPS,
    look: str = ANY_LOOK,
) -> Path:
    """Save a renderer (and its condition statistics, the game setting its "game" statistics came from —
    {"camera": ..., "scene": ...}, default `DEFAULT_GAME` —, the Euler steps per framelet and the look it is
    meant to be sampled with, and its provenance); returns the weights path.

    The weights file, which carries the JSON in its metadata, is published first, then the readable copy
    `NAME.json`: a kill leaves a checkpoint that loads as the old one or as the new one."""
    game = {**DEFAULT_GAME, **(game or {})}
    if set(game) != set(DEFAULT_GAME):
        raise ValueError(f"game={game}: give camera and scene only")
    if _game_problem(game) is not None:
        raise ValueError(f"game={game}: bad {_game_problem(game)}")
    sampling = {"num_steps": num_steps} | ({} if look == ANY_LOOK else {"look": look})
    problem = _sampling_problem(sampling, model.config.looks)
    if problem is not None:
        raise ValueError(f"num_steps={num_steps!r}, look={look!r}: bad {problem}")
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
        "sampling": sampling,
        "provenance": provenance or {},
    }
    text = json.dumps(info, indent=2) + "\n"  # before writing anything: unserialisable provenance fails here
    metadata = {"format": FORMAT, "checkpoint_id": checkpoint_id, EMBEDDED_JSON: text}
    with atomic_path(weights) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    atomic_write_text(meta, text)
    return weights


def _parse(source: Path, text: str) -> dict:
    """A checkpoint's JSON text as a dict whose top-level fields are checked (the rest is checked where used)."""
    try:
        info = json.loads(text)
    except ValueError as error:
        raise CheckpointError(source, f"corrupt JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(source, f'not a renderer checkpoint JSON (no "format": "{FORMAT}")')
    version = info.get("version")
    if version not in (1, VERSION):
        raise CheckpointError(source, f"format version {version!r}; this code reads versions 1 and {VERSION}")
    unknown = sorted(set(info) - set(FIELDS))
    if unknown:
        raise CheckpointError(source, f"unknown fields {unknown} (the fields are {', '.join(FIELDS)})")
    for name, kind, what in (
        ("checkpoint_id", str, "a string"),
        ("preset", str, "a preset's name"),
        ("provenance", dict, "an object"),
    ):
        if info.get(name) is not None and not isinstance(info[name], kind):
            raise CheckpointError(source, f"{name} = {info[name]!r}; must be {what} or null")
    return info


def _read_json(meta: Path) -> dict:
    if not meta.is_file():
        raise CheckpointError(meta, "no such file (the JSON that goes with the weights)")
    try:
        text = meta.read_text()
    except UnicodeDecodeError as error:
        raise CheckpointError(meta, f"corrupt JSON ({error})") from None
    return _parse(meta, text)


def _check_copy(meta: Path, info: dict, weights: Path) -> None:
    """Warn (one line) when the readable copy beside the weights is not their JSON; a missing one is fine."""
    if not meta.is_file():
        return
    try:
        same = json.loads(meta.read_text()) == info
    except ValueError:  # corrupt JSON or text
        same = False
    if not same:
        warnings.warn(
            f"{meta} is stale: it is not the JSON stored in {weights.name} (a save was interrupted, or the copy was "
            "edited); the stored one is used",
            UserWarning,
            stacklevel=4,  # the caller of load_renderer
        )


def _config(source: Path, info: dict) -> RendererConfig:
    if info.get("config") is not None:
        config = info["config"]
        version_1 = info["version"] == 1 and isinstance(config, dict)
        if version_1:
            config = VERSION_1_ADDED | {VERSION_1_NAMES.get(name, name): value for name, value in config.items()}
        if isinstance(config, dict):
            config = LATER_FIELDS | config
        try:
            return RendererConfig.from_dict(config)
        except ConfigFieldError as error:
            old = {new: old for old, new in VERSION_1_NAMES.items()}
            name = old.get(error.field, error.field) if version_1 else error.field
            raise CheckpointError(source, f"config.{name} = {error.value!r}; must be {error.rule}") from None
        except (TypeError, ValueError) as error:
            raise CheckpointError(source, f"bad config: {error}") from None
    preset = info.get("preset")
    if preset not in RENDERER_PRESETS:
        raise CheckpointError(source, f"no config and unknown preset {preset!r} (known: {', '.join(RENDERER_PRESETS)})")
    return RENDERER_PRESETS[preset]()


def _game(source: Path, info: dict) -> dict:
    game = info.get("game") or dict(DEFAULT_GAME)  # version 1 and the first version-2 files: the only game then
    problem = _game_problem(game)
    if problem is not None:
        raise CheckpointError(source, f'bad "game": {problem}')
    return game


def _sampling(source: Path, info: dict, looks: tuple[str, ...]) -> dict:
    """The "sampling" record: {"num_steps": ..., "look": ...}, with the seed's steps for files written before it
    and `ANY_LOOK` where it names no look."""
    sampling = info.get("sampling") or {"num_steps": NUM_STEPS}  # files written before "sampling": the seed's steps
    problem = _sampling_problem(sampling, looks)
    if problem is not None:
        raise CheckpointError(source, f'bad "sampling": {problem}')
    return {"look": ANY_LOOK} | sampling


def _stats(source: Path, info: dict) -> ConditionStats | None:
    if info.get("stats") is None:
        warnings.warn(
            f'{source}: "stats": null, so depth and flow are normalised with unit statistics: fine for an '
            "untrained network, wrong for a trained one",
            UserWarning,
            stacklevel=3,  # the caller of load_renderer
        )
        return None
    try:
        if info["version"] == 1:
            trained = (info.get("provenance") or {}).get("train_config") or {}
            stats = ConditionStats.from_version_1(info["stats"], bool(trained.get("sky_to_zero", False)))
        else:
            stats = ConditionStats.from_dict(info["stats"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(source, f"bad statistics: {error}") from None
    if "game" not in stats.sources:
        raise CheckpointError(source, f'bad statistics: no "game" source (have {sorted(stats.sources)})')
    return stats


def _read_weights(weights: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(weights), framework="pt") as file:
            return {name: file.get_tensor(name) for name in file.keys()}, file.metadata() or {}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(weights, f"corrupt safetensors file ({error})") from None


def _read_info(weights: Path, meta: Path, metadata: dict) -> tuple[Path, dict]:
    """(the file the authoritative JSON came from, that JSON): the weights' own copy when they carry one,
    else the JSON beside them, which must come from the same save."""
    if EMBEDDED_JSON in metadata:
        info = _parse(weights, metadata[EMBEDDED_JSON])
        if info.get("checkpoint_id") != metadata.get("checkpoint_id"):
            raise CheckpointError(weights, "corrupt: its metadata's checkpoint_id is not its JSON's")
        _check_copy(meta, info, weights)
        return weights, info
    info = _read_json(meta)
    if metadata.get("checkpoint_id") != info.get("checkpoint_id"):
        raise CheckpointError(weights, f"these weights and {meta.name} come from different saves")
    return meta, info


def checkpoint_info(path: str | os.PathLike) -> dict:
    """The checkpoint's JSON (the copy inside the weights when they carry one, else the file beside them),
    without reading the tensors."""
    weights, meta = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(weights, "no such file")
    try:
        with safe_open(str(weights), framework="pt") as file:
            metadata = file.metadata() or {}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointError(weights, f"corrupt safetensors file ({error})") from None
    return _read_info(weights, meta, metadata)[1]


def checkpoint_num_steps(path: str | os.PathLike | None = None) -> int:
    """The Euler steps per framelet a checkpoint (None = the shipped default) is meant to be sampled with,
    without reading its tensors (`load_renderer(path).num_steps`)."""
    path = DEFAULT_CHECKPOINT if path is None else path
    weights, _ = checkpoint_paths(path)
    info = checkpoint_info(path)
    return _sampling(weights, info, _config(weights, info).looks)["num_steps"]


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
        given = Path(path)
        if given == weights:
            raise CheckpointError(weights, "no such file")
        if given.exists():  # e.g. a video given where a renderer was asked for
            raise CheckpointError(
                given, f"not a renderer checkpoint (a renderer is NAME.safetensors; no {weights.name})"
            )
        raise CheckpointError(given, f"no such renderer checkpoint (no {weights.name})")
    tensors, metadata = _read_weights(weights)
    source, info = _read_info(weights, meta, metadata)
    config = _config(source, info)
    game = _game(source, info)
    sampling = _sampling(source, info, config.looks)
    stats = _stats(source, info)

    model = Renderer(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(weights, f"tensors missing {missing[:3]} and unexpected {unexpected[:3]} for its config")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                weights,
                f"tensor {name!r} has shape {tuple(tensor.shape)} but the config in {source.name} needs "
                f"{tuple(expected[name].shape)}",
            )
    model.load_state_dict(tensors)
    return LoadedRenderer(
        model=model.to(device=device, dtype=dtype).eval(),
        stats=stats,
        preset=info.get("preset"),
        provenance=info.get("provenance") or {},
        path=weights,
        game=game,
        checkpoint_id=info.get("checkpoint_id"),
        num_steps=sampling["num_steps"],
        look=sampling["look"],
    )
