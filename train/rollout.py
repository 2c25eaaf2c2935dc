"""Game rollouts for training: the game's conditioning statistics, and cube-vs-neural pictures and videos.

A rollout is a seeded ride of `spokester_env` with a seeded lane-changing policy (a new random action
every `change_every` frames, keep-lane otherwise); a crash resets the ride with the next seed. Its depth
(1/m) and flow (pixels per frame) fit the renderer's "game" statistics, and the same ride rendered by the
neural renderer gives the training run's rollout mp4 and contact sheet (cube view next to neural view).

Command: `python -m train.rollout --out docs/cube_vs_neural.png [--checkpoint PATH] [--mp4 PATH]` writes that
picture (and the ride as an mp4) for the shipped or a given renderer.

Legend: t frames, s side, F frames per framelet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from neural_render import SourceStats, StreamingRenderer
from neural_render.conditioning import fit_source_stats
from neural_render.files import atomic_path
from spokester_env import SpokesterEnv, depth_to_rgb, flow_to_rgb
from train.video import write_video

__all__ = ["Rollout", "game_rollout", "game_source_stats", "render_rollout", "contact_sheet", "write_png"]


@dataclass(frozen=True)
class Rollout:
    """A ride's observations: depth (t, s, s, 1) 1/m, flow (t, s, s, 2) px/frame, cube view (t, s, s, 3),
    and if asked the game's class map (t, s, s) uint8, indices into `spokester_env.CLASS_NAMES`."""

    depth: np.ndarray
    flow: np.ndarray
    rgb: np.ndarray
    fps: float
    classes: np.ndarray | None = None


def game_rollout(
    size: int, frames: int, seed: int = 0, change_every: int = 30, warmup: int = 12, classes: bool = False
) -> Rollout:
    """Ride `frames` frames (after `warmup` frames that are dropped) at `size` x `size`; with `classes`,
    keep each frame's class map too."""
    env = SpokesterEnv(width=size, height=size, observations=("depth", "flow", "rgb"))
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
    return Rollout(np.stack(depth), np.stack(flow), np.stack(rgb), fps, np.stack(labels) if classes else None)


def game_source_stats(size: int, frames: int, seed: int = 0, log_depth: bool = True) -> SourceStats:
    """The game's conditioning statistics, fitted on a seeded rollout at the renderer's frame size."""
    ride = game_rollout(size, frames, seed)
    return fit_source_stats(ride.depth, ride.flow, log_depth=log_depth)


def render_rollout(renderer: StreamingRenderer, ride: Rollout, seed: int = 0) -> np.ndarray:
    """Neural frames (t', s, s, 3) uint8 of a ride, one framelet at a time (t' = t rounded down to F)."""
    f = renderer.config.patch_frames
    renderer.reset(seed)
    out = [renderer.step(ride.depth[i : i + f], ride.flow[i : i + f]) for i in range(0, len(ride.depth) - f + 1, f)]
    return np.concatenate(out)


def contact_sheet(
    ride: Rollout, neural: np.ndarray, frames: int = 4, conditions: bool = True, across: bool = False
) -> np.ndarray:
    """A labelled picture of `frames` evenly spaced frames of a ride: for each, cube view | depth | flow |
    neural view (cube view | neural view without `conditions`), one frame per row, or with `across` one
    frame per column and one kind of view per row."""
    picks = np.linspace(0, len(neural) - 1, frames).round().astype(int)
    labels = ("cube view", "depth", "flow", "neural view") if conditions else ("cube view", "neural view")
    views = [
        [ride.rgb[i]] + ([depth_to_rgb(ride.depth[i]), flow_to_rgb(ride.flow[i])] if conditions else []) + [neural[i]]
        for i in picks
    ]
    side = ride.rgb.shape[1]
    font = (cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if across:
        strips = []
        for k, label in enumerate(labels):
            title = np.full((18, side * frames, 3), 255, np.uint8)
            cv2.putText(title, label, (4, 13), *font)
            strips += [title, np.concatenate([view[k] for view in views], axis=1)]
        return np.concatenate(strips, axis=0)
    sheet = np.concatenate([np.concatenate(view, axis=1) for view in views], axis=0)
    header = np.full((18, sheet.shape[1], 3), 255, np.uint8)
    for k, label in enumerate(labels):
        cv2.putText(header, label, (k * side + 4, 13), *font)
    return np.concatenate([header, sheet], axis=0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), np.ascontiguousarray(image[..., ::-1])):
            raise OSError(f"{path}: could not write the PNG")
    return path


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write frames (t, h, w, 3) as an H.264 mp4 with PyAV, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        write_video(temporary, frames, fps)
    return path


def main(argv: list[str] | None = None) -> Path:
    """`python -m train.rollout --out PNG`: cube view | depth | flow | neural view of a seeded ride."""
    from neural_render import load_renderer
    from train.cli import OneLineParser

    parser = OneLineParser(prog="python -m train.rollout", description=main.__doc__)
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--mp4", default=None, help="also write the ride (cube view | neural view) as this mp4")
    parser.add_argument("--conditions", action="store_true", help="show depth and flow columns too")
    parser.add_argument("--checkpoint", default=None, help="renderer checkpoint (default: the shipped one)")
    parser.add_argument("--frames", type=int, default=48, help="frames of the ride (>= 2)")
    parser.add_argument("--shown", type=int, default=4, help="frames shown (>= 1)")
    parser.add_argument("--across", action="store_true", help="one frame per column (default: per row)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="Euler steps per framelet")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out!r}: must end in .png")
    if args.frames < 2 or not 1 <= args.shown <= args.frames:
        parser.error(f"--frames {args.frames} / --shown {args.shown}: need frames >= 2 and 1 <= shown <= frames")
    loaded = load_renderer(args.checkpoint)
    ride = game_rollout(loaded.model.config.image_size, args.frames, seed=args.seed)
    renderer = StreamingRenderer(loaded.model, stats=loaded.stats, source="game", num_steps=args.steps)
    neural = render_rollout(renderer, ride, seed=args.seed)
    if args.mp4 is not None:
        write_mp4(args.mp4, np.concatenate([ride.rgb[: len(neural)], neural], axis=2), ride.fps)
    path = write_png(args.out, contact_sheet(ride, neural, args.shown, args.conditions, args.across))
    print(path)
    return path


if __name__ == "__main__":
    main()
