"""Pictures of the renderer in the game: cube view next to neural view, for docs and training runs.

A seeded game ride (`spokester_train.data.game`), with the camera and scene the renderer was made for, is painted
by the streaming sampler from its depth and flow (the renderer's "game" statistics); `contact_sheet` lays out a
few of its frames (cube view | depth | flow | neural view) and the command writes that picture, and the ride as
an mp4 if asked. Given several checkpoints (of one frame size and game), it paints the same ride with each,
one neural column per checkpoint, named by its run folder (or file); given several looks (`--look`), one column
per checkpoint and look:

    python -m spokester_train.evaluation.pictures --out docs/cube_vs_neural.png [--checkpoint PATH ...] \
        [--look NAME ...] [--mp4 PATH]

Legend: t frames, s side, F frames per framelet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from neural_render import StreamingRenderer, load_renderer
from neural_render.checkpoint import LOOK_HELP, NUM_STEPS_HELP
from spokester_env import depth_to_rgb, flow_to_rgb
from spokester_env.commandline import CommandLine, at_least, user_errors
from spokester_env.output import check_output, write_png, write_video
from spokester_train.data.game import Ride, game_ride

__all__ = ["condition_views", "contact_sheet", "main", "render_ride", "render_rides", "ride_views"]


def render_ride(renderer: StreamingRenderer, ride: Ride, seed: int = 0) -> np.ndarray:
    """Neural frames (t', s, s, 3) uint8 of a ride, one framelet at a time (t' = t rounded down to F)."""
    return render_rides(renderer, [ride], [seed])[0]


def render_rides(
    renderer: StreamingRenderer, rides: Sequence[Ride], seeds: Sequence[int], *, car_masks: bool = True
) -> np.ndarray:
    """Neural frames (b, t', s, s, 3) uint8 of b equally long rides painted together, one stream each (the
    renderer's `batch_size` is b), stream k's noise seeded with seeds[k]: stream k paints what a one-stream
    renderer paints of rides[k] with seeds[k], up to float rounding. A renderer told where the cars are gets each
    ride's car mask, or with `car_masks` False an empty one."""
    if renderer.batch_size != len(rides) or len(seeds) != len(rides) or len({len(r.depth) for r in rides}) != 1:
        raise ValueError(f"{len(rides)} equally long rides and seeds for a renderer of {renderer.batch_size} streams")
    f = renderer.config.patch_frames
    depth, flow = np.stack([r.depth for r in rides]), np.stack([r.flow for r in rides])  # (b, t, s, s, *)
    cars = np.stack([r.cars for r in rides]) if renderer.config.wants_cars else None  # (b, t, s, s, 1)
    if cars is not None and not car_masks:
        cars = np.zeros_like(cars)
    renderer.reset(list(seeds))
    out = []
    for i in range(0, depth.shape[1] - f + 1, f):
        part = slice(i, i + f)
        out.append(renderer.step(depth[:, part], flow[:, part], None if cars is None else cars[:, part]))
    return np.concatenate(out, axis=1)


def contact_sheet(columns: Mapping[str, np.ndarray], frames: int = 4, across: bool = False) -> np.ndarray:
    """A labelled picture of `frames` evenly spaced frames of equally long (t, s, s, 3) uint8 views (e.g.
    {"cube view": ..., "neural view": ...}): one frame per row with a view per column, or with `across` one
    frame per column and one view per row."""
    import cv2  # here, not at import: a GPU host training from a pack has no OpenCV

    views = list(columns.values())
    picks = np.linspace(0, len(views[0]) - 1, frames).round().astype(int)
    side = views[0].shape[1]
    font = (cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if across:
        strips = []
        for label, view in columns.items():
            title = np.full((18, side * frames, 3), 255, np.uint8)
            cv2.putText(title, label, (4, 13), *font)
            strips += [title, np.concatenate([view[i] for i in picks], axis=1)]
        return np.concatenate(strips, axis=0)
    sheet = np.concatenate([np.concatenate([view[i] for view in views], axis=1) for i in picks], axis=0)
    header = np.full((18, sheet.shape[1], 3), 255, np.uint8)
    for k, label in enumerate(columns):
        cv2.putText(header, label, (k * side + 4, 13), *font)
    return np.concatenate([header, sheet], axis=0)


def condition_views(depth: np.ndarray, flow: np.ndarray) -> dict[str, np.ndarray]:
    """{"depth": ..., "flow": ...} pictures (t, s, s, 3) of depth (t, s, s, 1) and flow (t, s, s, 2)."""
    top = float(np.percentile(depth[depth > 0], 99)) if (depth > 0).any() else 1.0  # one scale for the clip
    return {
        "depth": np.stack([depth_to_rgb(d, max_inv_depth=top) for d in depth]),
        "flow": np.stack([flow_to_rgb(f) for f in flow]),
    }


def ride_views(ride: Ride, neural: np.ndarray, conditions: bool = True) -> dict[str, np.ndarray]:
    """The views of a painted ride: cube view (| depth | flow) | neural view, cut to the painted frames."""
    t = len(neural)
    middle = condition_views(ride.depth[:t], ride.flow[:t]) if conditions else {}
    return {"cube view": ride.rgb[:t], **middle, "neural view": neural}


def main(argv: Sequence[str] | None = None) -> Path:
    """Write cube view | (depth | flow |) neural view of a seeded ride as a PNG (and the ride as an mp4)."""
    parser = CommandLine(prog="python -m spokester_train.evaluation.pictures", description=main.__doc__)
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--mp4", default=None, help="also write the ride (cube view | neural view) as this mp4")
    parser.add_argument("--conditions", action="store_true", help="show depth and flow columns too")
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        default=[None],
        help="renderer checkpoints (default: the shipped one); several paint the same ride side by side",
    )
    parser.add_argument("--frames", type=at_least(2), default=48, help="frames of the ride (>= 2)")
    parser.add_argument("--shown", type=at_least(1), default=4, help="frames shown (1..frames)")
    parser.add_argument("--across", action="store_true", help="one frame per column (default: per row)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=at_least(1), default=None, help=NUM_STEPS_HELP)
    parser.add_argument("--look", nargs="+", default=[None], help=f"{LOOK_HELP}; several: a column for each")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out!r}: must end in .png")
    if args.mp4 is not None and not args.mp4.lower().endswith(".mp4"):
        parser.error(f"--mp4 {args.mp4!r}: must end in .mp4")
    if args.shown > args.frames:
        parser.error(f"--shown {args.shown}: at most --frames ({args.frames})")
    with user_errors(parser.prog):
        check_output(args.out)
        if args.mp4 is not None:
            check_output(args.mp4, option="--mp4")
        renderers = [load_renderer(checkpoint) for checkpoint in args.checkpoint]
        first = renderers[0]
        for checkpoint, loaded in zip(args.checkpoint[1:], renderers[1:], strict=True):
            if _ride_of(loaded) != _ride_of(first):
                raise ValueError(
                    f"--checkpoint {checkpoint}: {_ride_of(loaded)} (frame size, framelet, game), but "
                    f"{args.checkpoint[0]}: {_ride_of(first)}; one ride is painted by all"
                )
        size, game = first.model.config.image_size, first.game
        ride = game_ride(size, args.frames, seed=args.seed, camera=game["camera"], scene=game["scene"])
        neural = {}
        for i, (checkpoint, loaded) in enumerate(zip(args.checkpoint, renderers, strict=True)):
            for look in args.look:
                options = dict(source="game", num_steps=loaded.steps(args.steps), look=loaded.look_for(look))
                renderer = StreamingRenderer(loaded.model, stats=loaded.stats, **options)
                name = _name(checkpoint) if len(renderers) > 1 else "neural view"
                name = name if look is None else f"{name}, {look}" if len(renderers) > 1 else look
                neural[f"{name} ({i + 1})" if name in neural else name] = render_ride(renderer, ride, args.seed)
        views = ride_views(ride, next(iter(neural.values())), args.conditions)
        views.pop("neural view")
        views |= neural
        if args.mp4 is not None:
            t = len(views["cube view"])
            write_video(args.mp4, np.concatenate([ride.rgb[:t], *neural.values()], axis=2), ride.fps)
        path = write_png(args.out, contact_sheet(views, args.shown, args.across))
    print(path)
    return path


def _ride_of(loaded) -> tuple:
    """What the ride painted by a renderer depends on: its frame size, framelet length and game."""
    config = loaded.model.config
    return config.image_size, config.patch_frames, loaded.game


def _name(checkpoint: str | None) -> str:
    """A checkpoint's column title: its run folder for a run's `renderer.safetensors`, else its file stem."""
    if checkpoint is None:
        return "shipped default"
    path = Path(checkpoint)
    stem = path.name.removesuffix(".safetensors").removesuffix(".json")
    return path.resolve().parent.name if stem == "renderer" else stem


if __name__ == "__main__":
    main()
