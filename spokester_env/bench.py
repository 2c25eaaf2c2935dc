"""Speed of the environment, for each backend, against the bare render of the same bodies.

    python -m spokester_env.bench [--sizes 84 160 320] [--backends tiny gl] [--seconds 6] [--egl-device N] [--json]

The baseline of "gl" is the env's own drawing (inverse depth and body ids in one instanced pass; on a GPU the
flow in a second) replayed without the game (`BareGLScene`).

For each size, blocks of env steps (depth + flow observations, game logic, contacts) alternate with
blocks of the baseline: plain untextured pybullet boxes in place of the env's bodies, moved to where the
env's bodies were on a recorded ride and rendered from the recorded camera (`bare boxes`), and the same
boxes rendered from a fixed camera with nothing moving (`static boxes`). Medians over blocks are reported,
so all figures share the machine's load of the moment.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .camera import flow_motion
from .commandline import CommandLine, at_least, more_than, user_errors
from .config import DEFAULT_IMAGE_SIZE
from .env import SpokesterEnv
from .gl import context_error
from .scene import BACKENDS, import_pybullet, quiet_stdout


class BareBoxScene:
    """The baseline: plain untextured boxes in place of the env's bodies, in the same drawing order.

    `record(env)` stores the positions of the moving bodies and the camera after an env step; `replay()`
    moves the boxes there and renders, which is all a pybullet game loop must do without any game logic,
    depth conversion or flow. With `static=True` nothing moves and the camera stays at the start.
    """

    def __init__(self, env: SpokesterEnv) -> None:
        with quiet_stdout():
            pybullet = import_pybullet()
            from pybullet_utils.bullet_client import BulletClient

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
        renderer = import_pybullet().ER_TINY_RENDERER
        self.client.getCameraImage(i.width, i.height, view, i.projection_matrix(), renderer=renderer)

    def close(self) -> None:
        self.client.disconnect()


BENCH_SIZES = (84, 160, DEFAULT_IMAGE_SIZE)
"""The square image sizes measured by default (`spokester_env.gl_replay` records the same)."""


def _rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


class BareGLScene:
    """The gl baseline: the env's own instanced drawing (inverse depth and ids, and the flow pass where the
    driver draws it: `gl.flow_pass_pays`), moved to the recorded bodies and camera and drawn, with no game
    logic or numpy around it (`bare boxes`), or drawn from the start with nothing moving. With `flow=True` it
    records the flow's motion even where the env's drawing draws no flow (`spokester_env.gl_replay`)."""

    def __init__(self, env: SpokesterEnv, flow: bool | None = None) -> None:
        self.drawing, self.scene = env.scene._gl, env.scene
        self.flow = self.drawing.flow if flow is None else flow
        self.projection = np.asarray(env.intrinsics.projection_matrix()).reshape(4, 4).T
        self.frames: list[tuple[np.ndarray, dict]] = []
        self._previous = env._pose

    def record(self, env: SpokesterEnv) -> None:
        pose, previous = env._pose, self._previous
        self.frames.append(
            (
                env.scene.positions.copy(),
                {
                    "view_projection": self.projection @ pose.view((0.0, env.scene.origin, 0.0)),
                    "motion": flow_motion(env._displacement, pose, previous) if self.flow else None,
                    "flow_limit": env.flow_limit,
                },
            )
        )
        self._previous = pose

    def replay(self, i: int) -> None:
        positions, view = self.frames[i % len(self.frames)]
        self.drawing.render(positions=positions, **view)

    def render(self, view) -> None:
        self.drawing.render(positions=self.frames[0][0], **view)

    def close(self) -> None:
        pass  # the env's drawing: the env releases it


def bench_size(
    size: int, seconds: float = 3.0, blocks: int = 5, backends=BACKENDS, egl_device: int | None = None
) -> list[dict]:
    """Median steps/s of the env and renders/s of its bare baseline at one square size, for each backend,
    their blocks interleaved so that all share the machine's load of the moment; gl on `egl_device`."""
    sides = {}
    for backend in backends:
        device = egl_device if backend == "gl" else None
        env = SpokesterEnv(width=size, height=size, observations=("depth", "flow"), backend=backend, egl_device=device)
        env.reset(seed=0)
        bare = BareGLScene(env) if backend == "gl" else BareBoxScene(env)
        rng = np.random.default_rng(0)
        policy = lambda rng=rng: int(rng.choice(3, p=[0.8, 0.1, 0.1]))  # noqa: E731
        for _ in range(300):  # the replayed trajectory: a few hundred frames of the same kind of ride
            if env.step(policy())[2]:
                env.reset()
            bare.record(env)

        def env_step(env=env, policy=policy) -> None:
            if env.step(policy())[2]:
                env.reset()

        sides[backend] = (env, bare, env_step, bare.frames[0][1], iter(range(1 << 62)))
    per_block = seconds / blocks
    rates = {backend: ([], [], []) for backend in sides}
    for _ in range(blocks):
        for backend, (_env, bare, env_step, start_view, counter) in sides.items():
            env_rates, bare_rates, static_rates = rates[backend]
            env_rates.append(_rate(env_step, per_block))
            bare_rates.append(_rate(lambda bare=bare, counter=counter: bare.replay(next(counter)), per_block))
            static_rates.append(_rate(lambda bare=bare, view=start_view: bare.render(view), per_block))
    rows = []
    for backend, (env, bare, *_) in sides.items():
        bare.close()
        env.close()
        env_sps, bare_sps, static_sps = (float(np.median(r)) for r in rates[backend])
        rows.append(
            {
                "size": size,
                "backend": backend,
                "driver": env.driver,
                "env_steps_per_s": env_sps,
                "bare_renders_per_s": bare_sps,
                "ratio": env_sps / bare_sps,
                "static_renders_per_s": static_sps,
                "ratio_static": env_sps / static_sps,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = CommandLine(prog="python -m spokester_env.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=at_least(1),
        nargs="+",
        default=list(BENCH_SIZES),
        help=f"square image sizes, pixels (default {' '.join(map(str, BENCH_SIZES))})",
    )
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, help="backends to measure (default: all; gl only where EGL works)"
    )
    parser.add_argument("--seconds", type=more_than(0), default=6.0, help="measuring time per size and side, s")
    parser.add_argument(
        "--egl-device", type=at_least(0), default=None, help="the EGL device gl draws on (default 0; gl.egl_devices())"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args(argv)
    if args.egl_device is not None and args.backends is not None and "gl" not in args.backends:
        parser.error(f"--egl-device {args.egl_device}: only the gl backend draws through EGL (--backends gl)")
    with user_errors(parser.prog):
        if args.backends is None:
            args.backends = list(BACKENDS)
            if (error := context_error(args.egl_device or 0)) is not None:
                print(f"{parser.prog}: not measuring gl: {error}", file=sys.stderr)
                args.backends.remove("gl")
        rows = [
            row
            for s in args.sizes
            for row in bench_size(s, args.seconds, backends=args.backends, egl_device=args.egl_device)
        ]
    if args.json:
        print(json.dumps(rows))
    else:
        print(
            f"{'size':>9} {'backend':>7} {'env steps/s':>12} {'bare boxes/s':>13} {'ratio':>6} "
            f"{'static boxes/s':>15} {'ratio':>6}  driver"
        )
        for r in rows:
            print(
                f"{r['size']:>4}x{r['size']:<4} {r['backend']:>7} {r['env_steps_per_s']:12.1f} "
                f"{r['bare_renders_per_s']:13.1f} "
                f"{r['ratio']:6.2f} {r['static_renders_per_s']:15.1f} {r['ratio_static']:6.2f}  {r['driver']}"
            )
    return rows


if __name__ == "__main__":
    main()
