"""Save a picture of a ride — cube view | depth | flow — for docs and bug reports.

python -m spokester_env.snapshot --out docs/env_views.png --seed 1 --steps 30 --actions 000000000002
"""

from __future__ import annotations

import numpy as np

from .commandline import CommandLine, at_least, user_errors
from .config import ACTION_MEANINGS, DEFAULT_IMAGE_SIZE
from .env import SpokesterEnv
from .output import check_output, write_png
from .visualize import depth_to_rgb, flow_to_rgb

ACTION_DIGITS = "".join(str(action) for action in range(len(ACTION_MEANINGS)))
"""The digits of an `--actions` pattern: one per action, its index."""


def snapshot(seed: int = 0, steps: int = 48, size: int = DEFAULT_IMAGE_SIZE, actions: str = "0") -> np.ndarray:
    """Ride `steps` frames with a repeating action pattern and return cube view | depth | flow side by side."""
    env = SpokesterEnv(width=size, height=size, observations=("depth", "flow", "rgb"))
    try:
        obs, _ = env.reset(seed=seed)
        for i in range(steps):
            obs, _, terminated, _, _ = env.step(int(actions[i % len(actions)]))
            if terminated:
                break
    finally:
        env.close()
    return np.concatenate([obs["rgb"], depth_to_rgb(obs["depth"]), flow_to_rgb(obs["flow"])], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = CommandLine(
        prog="python -m spokester_env.snapshot", description="Save cube view | depth | flow of a ride as a PNG."
    )
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=at_least(0), default=48, help="frames ridden before the snapshot")
    parser.add_argument("--size", type=at_least(1), default=DEFAULT_IMAGE_SIZE, help="image side, pixels")
    parser.add_argument("--actions", default="0", help="repeating action pattern, e.g. 0000002 (digits 0-2)")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out!r}: must end in .png")
    if not args.actions or set(args.actions) - set(ACTION_DIGITS):
        parser.error(f"--actions {args.actions!r}: use digits 0 (keep), 1 (left), 2 (right)")
    with user_errors(parser.prog):
        check_output(args.out)
        write_png(args.out, snapshot(args.seed, args.steps, args.size, args.actions))
    print(args.out)


if __name__ == "__main__":
    main()
