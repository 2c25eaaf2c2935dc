"""Command line: train the renderer on real videos.

    python -m train.train --preset cpu-tiny --video PATH [PATH@START ...] --out DIR [--resume] [--steps N] [--no-irepa]

Thin: parse the arguments into a `TrainConfig`, then call `train.loop.train`. `--resume` continues the
run in `--out` from its checkpoint with the checkpoint's own config (only `--steps` and `--device` may
change). Every error is one line naming the argument or file.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from neural_render.checkpoint import CheckpointError
from train.cli import OneLineParser
from train.config import TRAIN_PRESETS, config_from_dict, make_config
from train.loop import NonFiniteLoss, TrainResult, train
from train.state import CHECKPOINT, TrainingStateError, load_state
from train.video import VideoError

__all__ = ["parse_args", "main"]


def parse_args(argv: Sequence[str] | None = None):
    parser = OneLineParser(prog="python -m train.train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny", choices=sorted(TRAIN_PRESETS), help="training preset")
    parser.add_argument("--video", nargs="+", default=[], help="training videos; PATH@START skips to frame START")
    parser.add_argument("--out", required=True, help="run directory (checkpoint, renderer, logs, eval)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--steps", type=int, default=None, help="total optimiser steps (cuts/stretches the curriculum)")
    parser.add_argument("--no-irepa", action="store_true", help="train without the iREPA alignment loss")
    parser.add_argument("--no-sky-to-zero", action="store_true",
                        help="keep the depth network's sky depth (default: 0 where the deeplab teacher sees sky)")
    parser.add_argument("--no-balance", action="store_true",
                        help="draw clips in proportion to video length (default: equally from every video)")
    parser.add_argument("--eval-video", default=None, help="held-out video for evaluation (default: the first)")
    parser.add_argument("--cache", default=None, help="pseudo-label cache root (default: the preset's)")
    parser.add_argument("--device", default=None, help="torch device (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy CPU)")
    parser.add_argument("--attention", default=None, choices=("sdpa", "flex"),
                        help="window-mask backend (default: the preset's; flex needs CUDA)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, dest="loader_workers",
                        help="DataLoader workers gathering clips ahead (default: the preset's; 0 = none)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    args = parser.parse_args(argv)
    for name in ("steps", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be an integer >= 1")
    if not args.resume and not args.video:
        parser.error("--video: give one or more training videos (or --resume a run)")
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
        for name, value in (("eval_video", args.eval_video), ("cache_root", args.cache), ("seed", args.seed)):
            if value is not None:
                overrides[name] = value
        config = make_config(args.preset, **overrides)
    for name in ("device", "threads", "attention", "loader_workers"):
        if getattr(args, name) is not None:
            config = dataclasses.replace(config, **{name: getattr(args, name)})
    return config.with_total_steps(args.steps) if args.steps is not None else config


def main(argv: Sequence[str] | None = None) -> TrainResult:
    args = parse_args(argv)
    try:
        config = build_config(args)
        result = train(config, resume=args.resume)
    except (NonFiniteLoss, TrainingStateError, CheckpointError, VideoError, ValueError, FileNotFoundError) as error:
        sys.stderr.write(f"python -m train.train: error: {' '.join(str(error).split())}\n")
        raise SystemExit(1) from None
    print(f"{result.out}: step {result.step}; renderer {result.renderer}")
    return result


if __name__ == "__main__":
    main()
