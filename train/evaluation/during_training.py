"""Evaluation during training: reconstruction figures, a rendered game rollout (mp4) and a contact sheet.

Written to the run's `eval/` folder for step N: `step_N.json` (the figures of `spokester_train.evaluation.evaluate`),
`rollout_N.mp4` (cube view | neural view of a seeded ride, side by side) and `sheet_N.png` (cube view |
depth | flow | neural view for a few frames of that ride).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neural_render import ConditionStats, Renderer, StreamingRenderer
from spokester_env.output import atomic_write_text, write_png, write_video
from spokester_train.data.game import game_ride
from spokester_train.data.store import LabelStore
from spokester_train.evaluation.evaluate import (
    evaluate_clip,
    load_eval_clip,
    streaming_factory,
    video_flags,
    with_eval_source,
)
from spokester_train.evaluation.metrics import boundary_ratio, seam_ratio
from spokester_train.evaluation.pictures import contact_sheet, render_ride, ride_views
from spokester_train.recipe.config import TrainConfig

__all__ = ["evaluation_done", "run_evaluation"]


def evaluation_done(folder: Path, step: int) -> bool:
    """Whether the evaluation of `step` was written completely (its JSON is written last)."""
    return (Path(folder) / f"step_{step:06d}.json").is_file()


def run_evaluation(
    model: Renderer, stats: ConditionStats, eval_store: LabelStore, config: TrainConfig, step: int, folder: Path
) -> dict:
    """Evaluate `model` (the EMA) on the run's evaluation clip and render a game rollout; returns the
    figures and writes them with the pictures into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    window = config.window or 3
    flags = video_flags(stats)
    read = {"sky_to_zero": flags["sky_to_zero"], "car_slabs": flags["car_slabs"], "car_masks": cfg.wants_cars}
    clip = load_eval_clip(eval_store, config.eval_frames, cfg.patch_frames, **read)
    make = streaming_factory(
        model,
        with_eval_source(stats, eval_store),
        window=window,
        num_steps=config.sample_steps,
        seed=config.seed,
        device=config.device,
    )
    figures = evaluate_clip(make, clip, config.eval_cache_steps, cfg.patch_frames, config.seed, cfg.patch_size)
    was_training = model.training
    ride = game_ride(cfg.image_size, config.eval_frames, seed=config.seed + 1, camera=config.camera, scene=config.scene)
    renderer = StreamingRenderer(
        model, stats=stats, source="game", window=window, num_steps=config.sample_steps, device=config.device
    )
    neural = render_ride(renderer, ride, seed=config.seed)
    figures["rollout_seam_ratio"] = round(seam_ratio(neural, cfg.patch_size), 4)
    figures["rollout_boundary_ratio"] = round(boundary_ratio(neural, cfg.patch_frames), 4)
    model.train(was_training)
    side_by_side = np.concatenate([ride.rgb[: len(neural)], neural], axis=2)  # (t, s, 2s, 3)
    write_video(folder / f"rollout_{step:06d}.mp4", side_by_side, ride.fps)
    write_png(folder / f"sheet_{step:06d}.png", contact_sheet(ride_views(ride, neural)))
    atomic_write_text(folder / f"step_{step:06d}.json", json.dumps({"step": step, **figures}, indent=1) + "\n")
    return figures
