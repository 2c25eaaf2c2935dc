"""Save a picture of a ride — cube view | depth | flow — for docs and bug reports.

python -m spokester_env.snapshot --out docs/env_views.png --seed 1 --steps 30 --actions 000000000002
"""

from __future__ import annotations

import numpy as np

from .env import SpokesterEnv
from .visualize import depth_to_rgb, flow_to_rgb


def snapshot(seed: int = 0, steps: int = 48, size: int = 320, actions: str = "0") -> np.ndarray:
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
    import argparse
    import os

    parser = argparse.ArgumentParser(
        prog="python -m spokester_env.snapshot", description="Save cube view | depth | flow of a ride as a PNG."
    )
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=48, help="frames ridden before the snapshot")
    parser.add_argument("--size", type=int, default=320, help="image side, pixels")
    parser.add_argument("--actions", default="0", help="repeating action pattern, e.g. 0000002 (digits 0-2)")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out!r}: must end in .png")
    if not args.actions or set(args.actions) - set("012"):
        parser.error(f"--actions {args.actions!r}: use digits 0 (keep), 1 (left), 2 (right)")
    try:
        import cv2
    except ImportError as e:
        raise SystemExit('writing PNGs needs OpenCV: pip install "spokester[train]"') from e
    image = snapshot(args.seed, args.steps, args.size, args.actions)
    tmp = args.out + ".tmp.png"
    if not cv2.imwrite(tmp, image[:, :, ::-1]):
        raise SystemExit(f"--out {args.out!r}: could not write the file")
    os.replace(tmp, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
