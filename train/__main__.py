"""Train the renderer on real videos: `python -m spokester_train` (also `spokester train-renderer`).

    python -m spokester_train --preset cpu-tiny --video PATH [PATH@START[:END] ...] --out DIR [--steps N] [--no-irepa]
    python -m spokester_train --resume --out DIR [--steps N] [--device cuda]
    python -m spokester_train --init-from neural_render/weights/default.safetensors --video PATH ... --out DIR [--lr R]

Thin: parse the arguments into a `TrainConfig`, then call `spokester_train.recipe.loop.train`. `--resume` continues
the run in `--out` from its checkpoint with the checkpoint's own config (only `--steps`, `--device`, `--bf16`,
`--threads`, `--attention`, `--workers`, `--minutes`, `--game-stats` and `--no-eval` may change). A `--video` may
also be a label store folder (an unpacked training pack, `spokester_train.data.pack`): it is trained on as it is,
with no video needed. `--init-from` starts a new run from a renderer's weights (fine-tuning it, the
shipped default say, on your own footage) with a fresh optimiser and schedule; the run takes that renderer's
network, camera, scene and sampling steps unless told another camera or scene. Every error is one line naming
the argument or file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from neural_render import RENDERER_PRESETS
from spokester_env import CAMERA_PRESETS, SCENE_PRESETS
from spokester_env.commandline import CommandLine, at_least, device_option, more_than, user_errors
from spokester_train.data.extract import add_extractor_options, extractor_specs
from spokester_train.data.extractors import DEFAULT_EXTRACTORS
from spokester_train.recipe.checkpoint import CHECKPOINT, load_state
from spokester_train.recipe.config import TRAIN_PRESETS, config_from_dict, make_config
from spokester_train.recipe.distributed import Stopped
from spokester_train.recipe.loop import TrainResult, train
from spokester_train.recipe.setup import init_from_choices

__all__ = ["build_config", "main", "parse_args"]

PROG = "python -m spokester_train"


def parse_args(argv: Sequence[str] | None = None):
    parser = CommandLine(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny", choices=sorted(TRAIN_PRESETS), help="training preset")
    parser.add_argument("--video", nargs="+", default=[],
                        help="training videos (PATH@START skips to frame START) or label store folders")  # fmt: skip
    parser.add_argument("--renderer", default=None, choices=list(RENDERER_PRESETS), dest="renderer_preset",
                        help="the network's size preset (default: the training preset's)")  # fmt: skip
    parser.add_argument("--out", required=True, help="run folder (checkpoint, renderer, logs, eval)")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start from this renderer's weights (its network, camera, scene and sampling steps "
                        "unless given): fine-tuning; a fresh optimiser and schedule")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--steps", type=at_least(1), default=None,
                        help="total optimiser steps (cuts/stretches the curriculum)")  # fmt: skip
    parser.add_argument("--lr", type=more_than(0), default=None,
                        help="peak learning rate (default: the preset's; a lower one suits --init-from)")  # fmt: skip
    parser.add_argument("--no-irepa", action="store_true", help="train without the iREPA alignment loss")
    parser.add_argument(
        "--no-sky-to-zero",
        action="store_true",
        help="keep the depth network's sky depth (default: 0 where the deeplab teacher sees sky)",
    )
    parser.add_argument(
        "--car-slabs",
        action="store_true",
        help="read each car the deeplab teacher finds in a video as a flat slab where it meets the road, as the game "
        "draws its cars (default: the depth network's depth, or as the --init-from renderer does)",
    )
    parser.add_argument(
        "--mirror",
        action="store_true",
        help="mirror half the training clips left to right (the footage's cars keep to one side of the road)",
    )
    parser.add_argument(
        "--cars-enter",
        type=at_least(0.0, float),
        default=None,
        metavar="SHARE",
        help="with --car-masks: the share of the training clips whose cars are hidden before a random framelet, so "
        "that the car mask, not the context, says where a car is painted (default: 0)",
    )
    parser.add_argument(
        "--car-loss-weight",
        type=at_least(0.0, float),
        default=None,
        metavar="W",
        help="with --car-masks: the loss's weight on the car mask's pixels, against 1 elsewhere (default: 1)",
    )
    parser.add_argument(
        "--car-masks",
        action="store_true",
        help="tell the network where the cars are: a car mask after depth and flow (the videos' from the deeplab "
        "teacher, the game's own cars; default: none, or as the --init-from renderer does)",
    )
    parser.add_argument(
        "--sky-at-clip",
        action="store_true",
        help="read the sky as the lowest depth value in every source (default: its own standardised floor, "
        "or as the --init-from renderer does)",
    )
    parser.add_argument(
        "--looks",
        action="store_true",
        help="teach a look per training video (named by its file stem), chosen when painting with --look (default: "
        "none, or as the --init-from renderer does)",
    )
    parser.add_argument(
        "--no-balance",
        action="store_true",
        help="draw clips in proportion to video length (default: equally from every video)",
    )
    parser.add_argument("--eval-video", default=None, help="held-out video for evaluation (default: the first)")
    parser.add_argument("--camera", default=None, choices=list(CAMERA_PRESETS),
                        help="the game camera the renderer is made for (default: the preset's)")  # fmt: skip
    parser.add_argument("--scene", default=None, choices=list(SCENE_PRESETS),
                        help="the game scene the renderer is made for (default: the preset's)")  # fmt: skip
    parser.add_argument("--labels", default=None, help="label store root (default: the preset's)")
    add_extractor_options(parser)
    parser.add_argument("--device", type=device_option, default=None, help="torch device (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (1 is best on a busy CPU)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast on the CPU too (default: on CUDA only); on a CPU with AVX512-BF16 or AMX "
                        "about 1.3x faster steps, but the run no longer repeats bit for bit")  # fmt: skip
    parser.add_argument("--attention", default=None, choices=("sdpa", "flex"),
                        help="window-mask backend (default: the preset's; flex needs CUDA)")  # fmt: skip
    parser.add_argument("--workers", type=at_least(0), default=None, dest="loader_workers",
                        help="DataLoader workers gathering clips ahead (default: the preset's; 0 = none)")  # fmt: skip
    parser.add_argument("--minutes", type=more_than(0), default=None, dest="max_minutes",
                        help="stop, with a checkpoint and an export, once the run has taken this long")  # fmt: skip
    parser.add_argument("--game-stats", default=None, metavar="JSON",
                        help="the game's statistics from this file (an unpacked pack's) instead of riding the game: "
                        "for a host without pybullet")  # fmt: skip
    parser.add_argument("--no-eval", action="store_true",
                        help="no evaluation during or after the run (it rides the game and writes videos)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    args = parser.parse_args(argv)
    if not args.resume and not args.video:
        parser.error("--video: give one or more training videos (or --resume a run)")
    recipe = [
        f"--{name.replace('_', '-')}"
        for name in (
            "flow",
            "depth",
            "teacher",
            "weights",
            "labels",
            "camera",
            "scene",
            "init_from",
            "lr",
            "sky_at_clip",
            "car_slabs",
            "car_masks",
            "mirror",
            "cars_enter",
            "car_loss_weight",
            "looks",
        )
        if getattr(args, name) is not None and getattr(args, name) is not False  # 0 is given, False is not
    ]
    recipe += ["--renderer"] if args.renderer_preset else []
    if args.init_from and args.renderer_preset:
        parser.error("--renderer: a run started from a renderer (--init-from) trains that renderer's network")
    if args.resume and (args.video or recipe):
        given = ", ".join(([] if not args.video else ["--video"]) + recipe)
        parser.error(
            f"{given}: a resumed run keeps its checkpoint's videos, extractors, label root, game, network, weights, "
            "learning rate, sky code, car slabs, car masks, mirroring, entering cars, car loss weight and looks"
        )
    return args


def build_config(args):
    """The run's config: the preset with the arguments applied, or, with --resume, the checkpoint's."""
    if args.resume:
        config = config_from_dict(load_state(f"{args.out}/{CHECKPOINT}")["config"])
        config = dataclasses.replace(config, out=args.out, progress=not args.no_progress)
    else:
        overrides = {"videos": tuple(args.video), "out": args.out, "irepa": not args.no_irepa}
        overrides |= {"sky_to_zero": not args.no_sky_to_zero, "balance_videos": not args.no_balance}
        overrides["progress"] = not args.no_progress
        names = {kind: getattr(args, kind) or DEFAULT_EXTRACTORS[kind] for kind in ("flow", "depth", "teacher")}
        overrides["extractors"] = extractor_specs(**names, weights=args.weights)
        if args.init_from is not None:
            overrides |= init_from_choices(args.init_from) | {"init_from": args.init_from}
        overrides["sky_at_clip"] = args.sky_at_clip or overrides.get("sky_at_clip", False)  # a start's, or asked
        overrides["car_slabs"] = args.car_slabs or overrides.get("car_slabs", False)
        overrides["car_masks"] = args.car_masks or overrides.get("car_masks", False)
        overrides["looks"] = args.looks or overrides.get("looks", False)
        overrides["mirror"] = args.mirror
        overrides["cars_enter"] = args.cars_enter or 0.0
        overrides["car_loss_weight"] = 1.0 if args.car_loss_weight is None else args.car_loss_weight
        chosen = {"eval_video": args.eval_video, "label_root": args.labels, "seed": args.seed, "lr": args.lr}
        chosen |= {"camera": args.camera, "scene": args.scene, "renderer_preset": args.renderer_preset}
        for name, value in chosen.items():
            if value is not None:
                overrides[name] = value
        config = make_config(args.preset, **overrides)
    for name in ("device", "threads", "attention", "loader_workers", "max_minutes", "game_stats"):
        if getattr(args, name) is not None:
            config = dataclasses.replace(config, **{name: getattr(args, name)})
    if args.no_eval:
        config = dataclasses.replace(config, evaluate=False)
    if args.bf16:
        config = dataclasses.replace(config, autocast=True)
    return config.with_total_steps(args.steps) if args.steps is not None else config


def main(argv: Sequence[str] | None = None) -> TrainResult:
    args = parse_args(argv)
    with user_errors(PROG):
        try:
            result = train(build_config(args), resume=args.resume)
        except Stopped:  # under torchrun: another process failed and said why
            raise SystemExit(1) from None
    if result.renderer is not None:  # process 0 (or the only one)
        print(f"{result.out}: step {result.step}; renderer {result.renderer}")
    return result


if __name__ == "__main__":
    main()
