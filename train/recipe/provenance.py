"""What an exported renderer records about how it was made, portably: no path of the machine that trained it.

Every file a renderer was trained or evaluated on is recorded by its name, byte size and sha256 (and its
start frame where one was given): the training videos (`data`), the evaluation video (`eval_video`) and the
extractors' weights files (`extractor_weights`). The run's config (`train_config`) keeps its video specs as
file names (`name.mp4@150`) and drops the folders of the machine (`out`, `label_root`). `portable` is the last
pass over the whole record: any absolute path left (an extractor option, say) becomes its file's record.
A model card is made from this record (`neural_render.card`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spokester_train.data.extract import file_record
from spokester_train.data.store import LabelStore
from spokester_train.data.video import parse_video
from spokester_train.recipe.config import TrainConfig
from spokester_train.recipe.setup import video_file_name
from spokester_train.weights import TERMS, WEIGHTS_DIR

__all__ = ["portable", "renderer_provenance", "store_provenance"]

MACHINE_FIELDS = ("out", "label_root", "game_stats", "init_from")
"""Config fields that name files or folders of the training machine: not recorded (the renderer a run started
from is recorded as `init_from`, its file's record)."""


def portable(value: Any) -> Any:
    """`value` (JSON) with every absolute path string replaced by its file's record (or its name, when the
    file is not there to hash)."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        path = Path(value)
        return file_record(path) if path.exists() else {"file": path.name}
    return value


def _video_name(spec: str) -> str:
    """`/any/folder/name.mp4@150:400` -> `name.mp4@150:400`."""
    parsed = parse_video(spec)
    return parsed.path.name + spec[len(str(parsed.path)) :]


def store_provenance(stores: Sequence[LabelStore], videos: Sequence[str]) -> list[dict]:
    """What each training video was: file, bytes, hash, frames used, extractors."""
    return [
        {
            "video": video_file_name(video, store),
            "bytes": store.manifest["video"]["bytes"],
            "sha256": store.manifest["video"]["sha256"],
            "start_frame": store.manifest["start_frame"],
            "frames": store.manifest["n_frames"],
            "fps": store.manifest["video"]["fps"],
            "size": store.manifest["resolution"],
            "extractors": store.manifest["extractors"],
        }
        for store, video in zip(stores, videos, strict=True)
    ]


def _extractor_weights(extractors: dict) -> list[dict]:
    """The record of every weights file the extractors read (their configs as a label store records them):
    shipped ones by name in `train/weights`, local ones where the config says."""
    records = []
    for kind, spec in sorted(extractors.items()):
        weights = spec.get("weights") if isinstance(spec, dict) else None
        if weights is None:
            continue
        path = Path(weights) if os.path.isabs(weights) else WEIGHTS_DIR / weights
        if path.exists():
            terms = {"terms": TERMS[path.name]} if path.name in TERMS else {}
            records.append(file_record(path, extractor=kind, **terms))
    return records


def _last_evaluation(folder: Path, step: int) -> dict | None:
    """The figures of the run's evaluation at `step` (`eval/step_N.json`), if it was written."""
    path = folder / f"step_{step:06d}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def renderer_provenance(
    config: TrainConfig,
    stores: Sequence[LabelStore],
    eval_store: LabelStore,
    step: int,
    wall_s: float,
    resumed_at,
    origin: dict | None = None,
) -> dict:
    """The provenance an exported renderer carries: data, extractors and their weights, steps, wall time, the
    evaluation of this step (when it ran), the renderer its weights started from (`origin`, its record made as
    the run began: `Networks.origin`) and the config, all without a path of this machine. `steps` and
    `train_wall_s` are this run's; a run started from a renderer adds that renderer's."""
    train_config = config.to_dict()
    train_config["videos"] = [_video_name(video) for video in config.videos]
    train_config["eval_video"] = _video_name(config.eval_video) if config.eval_video else None
    for name in MACHINE_FIELDS:
        train_config.pop(name)
    manifest = eval_store.manifest
    evaluation = _last_evaluation(Path(config.out) / "eval", step)
    return portable(
        {
            "preset": config.preset,
            "steps": step,
            "irepa": config.irepa,
            "data": store_provenance(stores, config.videos),
            "eval_video": {
                "file": video_file_name(config.eval_video or config.videos[0], eval_store),
                "bytes": manifest["video"]["bytes"],
                "sha256": manifest["video"]["sha256"],
                "start_frame": manifest["start_frame"],
            },
            "extractors": config.extractors,
            "extractor_weights": _extractor_weights(eval_store.manifest["extractors"]),
            "evaluation": evaluation,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "train_wall_s": round(wall_s, 1),
            "resumed_at_steps": resumed_at,
            "init_from": origin,
            "train_config": train_config,
        }
    )
