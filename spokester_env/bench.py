"""Speed of the environment against the bare pybullet render of a comparable box scene.

    python -m spokester_env.bench [--sizes 84 320] [--seconds 6] [--json]

For each size, blocks of env steps (depth + flow observations, game logic, contacts) alternate with
blocks of the baseline: plain untextured pybullet boxes in place of the env's bodies, moved to where the
env's bodies were on a recorded ride and rendered from the recorded camera (`bare boxes`), and the same
boxes rendered from a fixed camera with nothing moving (`static boxes`). Medians over blocks are reported,
so all figures share the machine's load of the moment.
"""

from __future__ import annotations

import json
import time

import numpy as np

from .commandline import CommandLine, at_least, more_than, user_errors
from .config import DEFAULT_IMAGE_SIZE
from .env import SpokesterEnv
from .scene import BulletClient, pybullet, quiet_stdout


class BareBoxScene:
    """The baseline: plain untextured boxes in place of the env's bodies, in the same drawing order.

    `record(env)` stores the positions of the moving bodies and the camera after an env step; `replay()`
    moves the boxes there and renders, which is all a pybullet game loop must do without any game logic,
    depth conversion or flow. With `static=True` nothing moves and the camera stays at the start.
    """

    def __init__(self, env: SpokesterEnv) -> None:
        with quiet_stdout():
            self.client = c = BulletClient(connection_mode=pybullet.DIRECT)
        self.intrinsics = env.intrinsics
        scene, cfg = env.scene, env.config
        box = lambda half, at=(0, 0, 0): c.createVisualShape(  # noqa: E731
            pybullet.GEOM_BOX, halfExtents=half, visualFramePosition=at
        )
        pb = lambda h: [h[0], h[2], h[1]]  # noqa: E731  (across, up, along) -> pybullet (x, y, z)
        car, roof = pb(cfg.car_half_extents), pb(cfg.roof_half_extents)
        car_shape = c.createVisualShapeArray(
            [pybullet.GEOM_BOX] * 2,
            halfExtents=[car, roof],
            visualFramePositions=[[0, 0, car[2]], [0, 0, 2 * car[2] + roof[2]]],
        )
        shapes = {scene.rider: box(pb(cfg.rider_half_extents)), scene.ground: box([200, 1500, 0.01], (0, 0, -0.01))}
        shapes.update({b: car_shape for b in scene.cars})
        shapes.update({b: box(pb(cfg.building_half_extents)) for b in scene.buildings})
        src = scene.client
        for body in range(src.getNumBodies()):  # the same bodies in the same order, at the same places
            c.createMultiBody(0, -1, shapes[body], src.getBasePositionAndOrientation(body)[0])
        self.moving = [env.scene.rider, *env.scene.cars]
        self.frames: list[tuple[list, list[float]]] = []

    def record(self, env: SpokesterEnv) -> None:
        src = env.scene.client
        positions = [src.getBasePositionAndOrientation(b)[0] for b in self.moving]
        self.frames.append((positions, env._pose.view_matrix((0.0, env.scene.origin, 0.0))))

    def replay(self, i: int) -> None:
        positions, view = self.frames[i % len(self.frames)]
        for body, pos in zip(self.moving, positions, strict=True):
            self.client.resetBasePositionAndOrientation(body, pos, (0, 0, 0, 1))
        self.render(view)

    def render(self, view) -> None:
        i = self.intrinsics
        self.client.getCameraImage(i.width, i.height, view, i.projection_matrix(), renderer=pybullet.ER_TINY_RENDERER)

    def close(self) -> None:
        self.client.disconnect()


def _rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def bench_size(size: int, seconds: float = 3.0, blocks: int = 5) -> dict:
    """Median steps/s of the env and renders/s of the bare box scene at one square size."""
    env = SpokesterEnv(width=size, height=size, observations=("depth", "flow"))
    env.reset(seed=0)
    bare = BareBoxScene(env)
    rng = np.random.default_rng(0)
    policy = lambda: int(rng.choice(3, p=[0.8, 0.1, 0.1]))  # noqa: E731

    # The replayed trajectory: a few hundred frames of the same kind of ride.
    for _ in range(300):
        if env.step(policy())[2]:
            env.reset()
        bare.record(env)
    start_view = bare.frames[0][1]

    def env_step() -> None:
        if env.step(policy())[2]:
            env.reset()

    counter = iter(range(1 << 62))
    per_block = seconds / blocks
    env_rates, bare_rates, static_rates = [], [], []
    for _ in range(blocks):
        env_rates.append(_rate(env_step, per_block))
        bare_rates.append(_rate(lambda: bare.replay(next(counter)), per_block))
        static_rates.append(_rate(lambda: bare.render(start_view), per_block))
    env.close()
    bare.close()
    env_sps, bare_sps = float(np.median(env_rates)), float(np.median(bare_rates))
    static_sps = float(np.median(static_rates))
    return {
        "size": size,
        "env_steps_per_s": env_sps,
        "bare_renders_per_s": bare_sps,
        "ratio": env_sps / bare_sps,
        "static_renders_per_s": static_sps,
        "ratio_static": env_sps / static_sps,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = CommandLine(prog="python -m spokester_env.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=at_least(1),
        nargs="+",
        default=[84, DEFAULT_IMAGE_SIZE],
        help=f"square image sizes, pixels (default 84 {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument("--seconds", type=more_than(0), default=6.0, help="measuring time per size and side, s")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        rows = [bench_size(s, args.seconds) for s in args.sizes]
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'size':>9} {'env steps/s':>12} {'bare boxes/s':>13} {'ratio':>6} {'static boxes/s':>15} {'ratio':>6}")
        for r in rows:
            print(
                f"{r['size']:>4}x{r['size']:<4} {r['env_steps_per_s']:12.1f} {r['bare_renders_per_s']:13.1f} "
                f"{r['ratio']:6.2f} {r['static_renders_per_s']:15.1f} {r['ratio_static']:6.2f}"
            )
    return rows


if __name__ == "__main__":
    main()
