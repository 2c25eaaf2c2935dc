"""The `spokester` command: play, record, train and evaluate agents, train and evaluate renderers, benchmarks.

Thin by design: each subcommand parses its options and calls one function that the tests call too. The
project's command-line pattern (`spokester_env.commandline`): a user error (bad option, missing file,
unusable checkpoint) prints one line on stderr and exits with status 2 (argparse's own errors) or 1
(everything found out later), Ctrl-C with 130, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import runpy
import sys

from spokester_agents.envs import PACKED_SIZE, PICTURE_SIZE
from spokester_env import CAMERA_PRESETS, SCENE_PRESETS
from spokester_env.commandline import CommandLine, at_least, device_option, more_than, user_errors

__all__ = ["BENCHMARKS", "FORWARDED", "build_parser", "main"]

FORWARDED = {"train-renderer": "spokester_train.__main__", "eval-renderer": "spokester_train.evaluation.evaluate"}
"""Subcommands whose options all belong to another module's command line."""
RENDER_STEPS_HELP = "renderer Euler steps per framelet (default: the checkpoint's `num_steps`)"
LOOK_HELP = "which footage's look the renderer paints: one of its looks, or any (default: the checkpoint's `look`)"
BENCHMARKS = {"env": "spokester_env.bench", "render": "neural_render.bench", "train": "spokester_train.recipe.bench"}
"""`spokester bench WHICH`: the module whose command line runs each benchmark (`all` = env and render)."""


# The options read as a table:
# fmt: off
def _add_agent_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", default="heuristic", help="heuristic, random, or the path of a PPO .zip from train-agent")
    p.add_argument("--episodes", type=at_least(1), default=1, help="number of episodes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="episode i is played with seed S + i (default 0)")
    p.add_argument("--max-steps", type=at_least(1), default=None,
                   help="cut each episode after M game frames (an agent deciding every k frames ends its decision)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", type=device_option,
                   help="where the renderer runs: cpu (default) or cuda[:N] (bf16, CUDA-graph replay)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=at_least(1), default=1,
                   help="torch CPU threads (default 1: on a shared 2-core CPU a second thread was 10x slower)")


def _add_game(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", choices=list(CAMERA_PRESETS), default=None,
                   help="game camera (default: the renderer's own when neural frames are shown, else follow)")
    p.add_argument("--scene", choices=list(SCENE_PRESETS), default=None,
                   help="game scene (default: the renderer's own when neural frames are shown, else city)")


def build_parser() -> CommandLine:
    parser = CommandLine(prog="spokester", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandLine)

    p = sub.add_parser("play", help="ride it yourself in a window (arrows or A/D, R restarts, Esc quits)")
    p.add_argument("--view", choices=("cube", "neural", "both"), default=None,
                   help="what to show (default: neural when a renderer checkpoint is available, else cube)")
    p.add_argument("--checkpoint", default=None, help="renderer checkpoint (default: the shipped one)")
    p.add_argument("--size", type=at_least(1), default=None,
                   help=f"game image side, px (default {PICTURE_SIZE}; neural: the renderer's)")
    p.add_argument("--scale", type=at_least(1), default=None, help="window pixels per image pixel")
    p.add_argument("--seed", type=int, default=None, help="seed of the first ride (default: random)")
    p.add_argument("--render-steps", type=at_least(1), default=None, help=RENDER_STEPS_HELP)
    p.add_argument("--look", default=None, help=LOOK_HELP)
    p.add_argument("--max-frames", type=at_least(1), default=None, help="quit after this many frames")
    _add_game(p)
    _add_device(p)
    _add_threads(p)

    p = sub.add_parser("record", help="record episodes of an agent: mp4, trajectory npz and JSON summary")
    _add_agent_options(p)
    p.add_argument("--view", choices=("cube", "neural", "both"), default="cube", help="what the mp4 shows")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None, help="renderer checkpoint for neural views (default: shipped)")
    p.add_argument("--size", type=at_least(1), default=None,
                   help=f"image side, px (default {PICTURE_SIZE}; with a neural view, the renderer's size)")
    p.add_argument("--render-steps", type=at_least(1), default=None, help=RENDER_STEPS_HELP)
    p.add_argument("--look", default=None, help=LOOK_HELP)
    p.add_argument("--stochastic", action="store_true",
                   help="a PPO agent samples its actions (seeded per episode) instead of taking the likeliest")
    _add_game(p)
    _add_device(p)
    _add_threads(p)

    p = sub.add_parser("train-agent", help="train PPO on depth+flow (or neural) observations")
    p.add_argument("--out", default="runs/agents/ppo.zip", help="model zip (a .json sidecar goes beside it)")
    p.add_argument("--timesteps", type=at_least(1), default=None, help="env steps in all (default: the YAML's)")
    p.add_argument("--minutes", type=more_than(0), default=None, help="wall-clock budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--view", choices=("packed", "neural"), default="packed",
                   help="packed depth+flow (default) or the neural renderer's frames")
    p.add_argument("--size", type=at_least(1), default=None,
                   help=f"image side, px (default {PACKED_SIZE}; neural: the renderer's)")
    p.add_argument("--checkpoint", default=None, help="renderer checkpoint for --view neural (default: shipped)")
    p.add_argument("--render-steps", type=at_least(1), default=None, help=RENDER_STEPS_HELP)
    p.add_argument("--n-envs", type=at_least(1), default=None, help="parallel envs (default: the YAML's)")
    p.add_argument("--vec-env", choices=("dummy", "subproc"), default="dummy", help="packed view: env processes")
    p.add_argument("--hyperparams", default=None, help="zoo-format YAML (default: agents/hyperparams/ppo.yaml)")
    p.add_argument("--action-repeat", type=at_least(1), default=None,
                   help="packed view: one decision per N game frames (default: the YAML's action_repeat, else 1)")
    p.add_argument("--eval-every", type=at_least(0), default=25_000,
                   help="env steps between evaluations of the most likely action; the best policy is saved "
                        "(0 = never, save the last; default 25000)")
    p.add_argument("--eval-episodes", type=at_least(1), default=10, help="episodes per evaluation (default 10)")
    _add_threads(p)

    p = sub.add_parser("eval-agent", help="mean and std of distance and length over seeded episodes")
    _add_agent_options(p)
    p.set_defaults(episodes=10)
    p.add_argument("--checkpoint", default=None, help="renderer checkpoint (overrides a neural agent's own)")
    p.add_argument("--stochastic", action="store_true",
                   help="a PPO agent samples its actions (seeded per episode) instead of taking the likeliest")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _add_threads(p)

    what = {"train-renderer": "train a renderer", "eval-renderer": "evaluate a renderer"}
    for name, module in FORWARDED.items():
        command = "python -m spokester_train" if module == "spokester_train.__main__" else f"python -m {module}"
        p = sub.add_parser(name, add_help=False, help=f"{what[name]}: forwards its options to {command}")
        p.add_argument("args", nargs=argparse.REMAINDER, help=f"options of {command}")
        p.set_defaults(module=module)

    p = sub.add_parser("bench", help="benchmarks: the env's, the renderer's, a training step's")
    p.add_argument("which", nargs="?", choices=(*BENCHMARKS, "all"), default="all",
                   help="env, render, train (a training step) or all (a quick look at env and render: ~1 min)")
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help=f"options forwarded to python -m {', '.join(BENCHMARKS.values())}")
    return parser
# fmt: on


def _forward(module: str, argv: list[str]) -> int:
    """Run `python -m module argv` in this process: its `main(argv)` when it has one, else as __main__."""
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not in this checkout yet (python -m {module} has nothing to run)")
    loaded = importlib.import_module(module)
    main_fn = getattr(loaded, "main", None)
    saved = sys.argv
    try:
        if callable(main_fn):
            result = main_fn(argv)
        else:
            sys.argv = [module, *argv]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            result = 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return result if isinstance(result, int) else 0


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command; returns the exit status."""
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "play":
        from spokester_agents.play import PlayConfig, play

        play(
            PlayConfig(
                view=args.view,
                checkpoint=args.checkpoint,
                size=args.size,
                scale=args.scale,
                seed=args.seed,
                render_steps=args.render_steps,
                look=args.look,
                max_frames=args.max_frames,
                device=args.device,
                camera=args.camera,
                scene=args.scene,
            )
        )
    elif args.command == "record":
        from spokester_agents.record import RecordConfig, record

        record(
            RecordConfig(
                agent=args.agent,
                view=args.view,
                episodes=args.episodes,
                max_steps=args.max_steps,
                out=args.out,
                checkpoint=args.checkpoint,
                seed=args.seed,
                size=args.size,
                render_steps=args.render_steps,
                look=args.look,
                stochastic=args.stochastic,
                device=args.device,
                camera=args.camera,
                scene=args.scene,
            )
        )
    elif args.command == "train-agent":
        from spokester_agents.envs import ObservationSettings
        from spokester_agents.ppo import TrainAgentConfig, train_agent

        if args.size is not None:
            size = args.size
        else:
            size = PACKED_SIZE if args.view == "packed" else _renderer_size(args.checkpoint)
        settings = ObservationSettings(
            view=args.view, size=size, checkpoint=args.checkpoint, render_steps=args.render_steps
        )
        train_agent(
            TrainAgentConfig(
                out=args.out,
                timesteps=args.timesteps,
                minutes=args.minutes,
                seed=args.seed,
                observation=settings,
                n_envs=args.n_envs,
                vec_env=args.vec_env,
                hyperparams=args.hyperparams,
                torch_threads=args.threads,
                eval_every=args.eval_every or None,
                eval_episodes=args.eval_episodes,
                action_repeat=args.action_repeat,
            )
        )
    elif args.command == "eval-agent":
        from spokester_agents.evaluate import evaluate, print_table

        result = evaluate(
            args.agent,
            episodes=args.episodes,
            seed=args.seed,
            max_steps=args.max_steps,
            checkpoint=args.checkpoint,
            stochastic=args.stochastic,
            progress=not args.json,
        )
        if args.json:
            print(json.dumps(result))
        else:
            print_table(result)
    elif args.command in ("train-renderer", "eval-renderer"):
        return _forward(args.module, args.args)
    elif args.command == "bench":
        return _bench(args.which, args.args)
    return 0


def _renderer_size(checkpoint: str | None) -> int:
    from neural_render import load_renderer

    return load_renderer(checkpoint).model.config.image_size


QUICK_BENCHMARKS = {"env": ["--seconds", "2"], "render": ["--framelets", "40", "--baseline-framelets", "6"]}
"""`spokester bench` / `bench all`: a quick look at the env and the renderer (about a minute on one core);
`spokester bench env|render|train OPTIONS` runs one benchmark with its own defaults or your options."""


def _bench(which: str, argv: list[str]) -> int:
    if which == "all" and argv:
        raise ValueError("options can only be forwarded to one benchmark: spokester bench env|render|train OPTIONS")
    import torch

    torch.set_num_threads(1)  # the spokester command's default (--threads 1), unless a benchmark is given --threads
    status = 0
    for name in QUICK_BENCHMARKS if which == "all" else (which,):
        status |= _forward(BENCHMARKS[name], QUICK_BENCHMARKS[name] if which == "all" else argv) or 0
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spokester` console script: returns the exit status of a command that ran. An
    error exits (SystemExit) after one line on stderr: 2 for a bad option, 1 for an error found while
    working, 130 for Ctrl-C."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:  # everything after the command is theirs, --help included
        args = argparse.Namespace(command=argv[0], module=FORWARDED[argv[0]], args=argv[1:])
    else:
        args = parser.parse_args(argv)
    with user_errors(f"spokester {args.command}"):
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
