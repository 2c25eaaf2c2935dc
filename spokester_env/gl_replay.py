"""A recorded ride's drawing, replayed without the game: checks and times the gl backend where there is no
pybullet (a GPU host), against the pictures drawn where the ride was recorded.

    python -m spokester_env.gl_replay record --out ride.npz [--sizes 84 160 320] [--frames 120] [--seed 0]
    python -m spokester_env.gl_replay replay ride.npz [--seconds 3] [--egl-device N] [--json]

`record` needs the game (pybullet). At each size it rides a seeded episode with the gl backend and keeps, for
every frame, what the env hands its drawing (`GLDrawing.render`: the bodies' positions, the camera's
view-projection, the flow's motion and limit, recorded as `bench.BareGLScene` does), the kinds of bodies (meshes,
colours) and the camera; and, for `REFERENCE_FRAMES` of them, the pictures that a drawing with the flow pass makes
here: inverse depth, body ids and flow.

`replay` needs numpy and moderngl only (importing `spokester_env` also needs gymnasium). It makes an EGL context,
draws every recorded frame as a GPU's env does, depth and ids in one instanced pass and the flow in a second, and
prints, per size: draws per second with and without the flow pass (the bodies moved and the pictures read back,
no game around them), and how its reference frames differ from the recorded ones. On the same driver they are the
same; another driver may differ on silhouette pixels (a pixel whose centre lies on an edge) and by float rounding:

    ids_differ        share of pixels whose body id differs
    depth_rel_median, depth_rel_max   |relative difference| of inverse depth where the ids agree and a body is drawn
    flow_median, flow_max             |difference| of flow, pixels, where the ids agree

Printed JSON: {"driver": GL_RENDERER, "version": GL_VERSION, "flow_pass_pays", "egl_devices": [the GL_RENDERER
of each of the host's EGL devices], "egl_device": the one drawn on, "sizes": [{"size", "frames", "draws_per_s",
"draws_per_s_no_flow", the four figures above}]}.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bench import BENCH_SIZES, BareGLScene
from .camera import Intrinsics
from .commandline import CommandLine, at_least, more_than, user_errors
from .env import SpokesterEnv
from .gl import GLDrawing, GLKind, create_context, egl_devices, flow_pass_pays
from .output import atomic_path, check_output

__all__ = ["REFERENCE_FRAMES", "compare", "record", "replay"]

REFERENCE_FRAMES = 4
"""Frames per size whose pictures are recorded and compared (spread over the ride)."""
FORMAT = 1
"""Version of the recorded file's layout."""


def _kinds_arrays(kinds: Sequence[GLKind]) -> dict[str, np.ndarray]:
    out = {"kinds": np.array([kind.name for kind in kinds])}
    for k, kind in enumerate(kinds):
        out[f"kind{k}/vertices"] = kind.vertices
        out[f"kind{k}/indices"] = kind.indices
        out[f"kind{k}/bodies"] = kind.bodies
        out[f"kind{k}/albedo"] = np.asarray(kind.albedo)
    return out


def _kinds(data) -> list[GLKind]:
    """The recorded kinds of bodies (flat colours: the replay draws no cube view)."""
    kinds = []
    for k, name in enumerate(data["kinds"]):
        v = data[f"kind{k}/vertices"]
        kinds.append(
            GLKind(
                str(name),
                v[:, :3],
                data[f"kind{k}/indices"],
                v[:, 3:6],
                v[:, 6:8],
                data[f"kind{k}/bodies"],
                tuple(data[f"kind{k}/albedo"]),
            )  # fmt: skip
        )
    return kinds


def _reference_picks(frames: int) -> np.ndarray:
    return np.linspace(0, frames - 1, min(REFERENCE_FRAMES, frames)).round().astype(int)


def record(path: str | Path, sizes: Sequence[int] = BENCH_SIZES, frames: int = 120, seed: int = 0) -> Path:
    """Ride `frames` steps at each size with the gl backend and write what its drawing was given, with reference
    pictures drawn here by the flow pass, to `path` (.npz, atomically)."""
    path = check_output(Path(path), option="--out")
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "sizes": np.array(sizes)}
    for size in sizes:
        env = SpokesterEnv(width=size, height=size, observations=("depth", "flow"), backend="gl")
        try:
            env.reset(seed=seed)
            ride = BareGLScene(env, flow=True)
            rng = np.random.default_rng(seed)
            for _ in range(frames):
                if env.step(int(rng.choice(3, p=[0.8, 0.1, 0.1])))[2]:
                    env.reset()
                ride.record(env)
            kinds, intr = env.scene._gl.kinds, env.intrinsics
            arrays.update(_kinds_arrays(kinds))
            views = [view for _, view in ride.frames]
            prefix = f"s{size}/"
            arrays[prefix + "intrinsics"] = np.array([intr.width, intr.height, intr.fov, intr.near, intr.far])
            arrays[prefix + "bodies"] = np.array(env.scene.num_bodies)
            arrays[prefix + "positions"] = np.stack([positions for positions, _ in ride.frames])
            arrays[prefix + "view_projection"] = np.stack([view["view_projection"] for view in views])
            arrays[prefix + "turn"] = np.stack([view["motion"][0] for view in views])
            arrays[prefix + "offsets"] = np.stack([view["motion"][1] for view in views])
            arrays[prefix + "flow_limit"] = np.array(views[0]["flow_limit"])
            drawn = _draw_references(arrays, size, kinds)
            arrays.update({prefix + "reference/" + name: picture for name, picture in drawn.items()})
        finally:
            env.close()
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez_compressed(file, **arrays)
    return path


def _drawing(data, size: int, kinds: list[GLKind], egl_device: int = 0) -> GLDrawing:
    width, height, fov, near, far = data[f"s{size}/intrinsics"].tolist()
    intrinsics = Intrinsics(int(width), int(height), fov, near, far)
    bodies = int(data[f"s{size}/bodies"])
    return GLDrawing(create_context(egl_device), intrinsics, kinds, colour=False, flow=True, bodies=bodies)


def _frame(data, size: int, i: int, flow: bool = True) -> dict:
    p = f"s{size}/"
    motion = (data[p + "turn"][i], data[p + "offsets"][i]) if flow else None
    return {
        "view_projection": data[p + "view_projection"][i],
        "positions": data[p + "positions"][i],
        "motion": motion,
        "flow_limit": float(data[p + "flow_limit"]),
    }


def _references(drawing: GLDrawing, data, size: int) -> dict[str, np.ndarray]:
    """The reference frames drawn by `drawing`: inverse_depth, ids and flow, each stacked (k, H, W[, 2])."""
    frames = len(data[f"s{size}/positions"])
    drawn = [drawing.render(**_frame(data, size, int(i))) for i in _reference_picks(frames)]
    return {name: np.stack([d[name] for d in drawn]) for name in ("inverse_depth", "ids", "flow")}


def _draw_references(data, size: int, kinds: list[GLKind]) -> dict[str, np.ndarray]:
    """The reference frames drawn here, by a drawing of their own."""
    drawing = _drawing(data, size, kinds)
    try:
        return _references(drawing, data, size)
    finally:
        drawing.close()


def compare(drawn: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """How pictures drawn elsewhere differ from the recorded ones (the module docstring's four figures)."""
    same = drawn["ids"] == reference["ids"]
    body = same & (reference["ids"] >= 0) & (reference["inverse_depth"] > 0)
    relative = np.abs(drawn["inverse_depth"][body] / reference["inverse_depth"][body] - 1.0)
    flow = np.abs(drawn["flow"] - reference["flow"]).max(axis=-1)[same]
    figure = lambda values, f: float(f(values)) if values.size else 0.0  # noqa: E731
    return {
        "ids_differ": float(1.0 - same.mean()),
        "depth_rel_median": figure(relative, np.median),
        "depth_rel_max": figure(relative, np.max),
        "flow_median": figure(flow, np.median),
        "flow_max": figure(flow, np.max),
    }


def _rate(drawing: GLDrawing, views: list[dict], seconds: float) -> float:
    """Draws per second of `drawing` cycling through `views` (`GLDrawing.render`'s arguments) for `seconds`."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        drawing.render(**views[n % len(views)])
        n += 1
    return n / elapsed


def _replay_size(data: dict, size: int, kinds: list[GLKind], seconds: float, egl_device: int) -> tuple[dict, dict]:
    """The driver's info and the figures of one recorded size."""
    drawing = _drawing(data, size, kinds, egl_device)
    try:
        frames = len(data[f"s{size}/positions"])
        stacked = _references(drawing, data, size)
        reference = {name: data[f"s{size}/reference/{name}"] for name in stacked}
        row = {"size": size, "frames": frames}
        row["draws_per_s"] = _rate(drawing, [_frame(data, size, i) for i in range(frames)], seconds)
        row["draws_per_s_no_flow"] = _rate(drawing, [_frame(data, size, i, flow=False) for i in range(frames)], seconds)
        with drawing.ctx:  # a context's info is its own only while it is current
            info, pays = dict(drawing.ctx.info), flow_pass_pays(drawing.ctx)
        driver = {"driver": info["GL_RENDERER"], "version": info["GL_VERSION"], "flow_pass_pays": pays}
        return driver, row | compare(stacked, reference)
    finally:
        drawing.close()


def replay(path: str | Path, seconds: float = 3.0, egl_device: int = 0) -> dict:
    """Draw the recorded frames of `path` here, on `egl_device`: the driver, draws/s per size and the reference
    comparison; and every EGL device of the host (`gl.egl_devices()`)."""
    with np.load(path) as file:
        data = dict(file)
    if int(data.get("format", -1)) != FORMAT:
        raise ValueError(f"{path}: not a recorded ride of format {FORMAT} (python -m spokester_env.gl_replay record)")
    kinds = _kinds(data)
    result: dict = {"egl_devices": list(egl_devices()), "egl_device": egl_device, "sizes": []}
    for size in data["sizes"].tolist():
        driver, row = _replay_size(data, size, kinds, seconds, egl_device)
        result = driver | result
        result["sizes"].append(row)
    return result


def main(argv: Sequence[str] | None = None) -> dict | Path:
    parser = CommandLine(prog="python -m spokester_env.gl_replay", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser(
        "record", help="ride with the gl backend and record its drawing's inputs (needs pybullet)"
    )
    rec.add_argument("--out", required=True, help="the recorded ride, .npz")
    rec.add_argument("--sizes", type=at_least(8), nargs="+", default=list(BENCH_SIZES), help="square image sizes, px")
    rec.add_argument("--frames", type=at_least(1), default=120, help="frames per size (default 120)")
    rec.add_argument("--seed", type=int, default=0)
    rep = commands.add_parser("replay", help="draw a recorded ride here, timed and compared (needs moderngl only)")
    rep.add_argument("ride", help="a file made by record")
    rep.add_argument("--seconds", type=more_than(0), default=3.0, help="timing per size and kind of draw, s")
    rep.add_argument("--egl-device", type=at_least(0), default=0, help="the EGL device to draw on (default 0)")
    rep.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if args.command == "record" and not args.out.endswith(".npz"):
        parser.error(f"--out {args.out!r}: must end in .npz")
    with user_errors(parser.prog):
        if args.command == "record":
            return record(args.out, args.sizes, args.frames, args.seed)
        result = replay(args.ride, args.seconds, args.egl_device)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"egl_device {args.egl_device} of {len(result['egl_devices'])}: {', '.join(result['egl_devices'])}")
        print(f"{result['driver']} ({result['version']}); flow pass pays: {result['flow_pass_pays']}")
        print(f"{'size':>5} {'draws/s':>9} {'no flow':>9} {'ids differ':>11} {'depth rel':>10} {'flow px':>8}")
        for r in result["sizes"]:
            print(
                f"{r['size']:>5} {r['draws_per_s']:9.1f} {r['draws_per_s_no_flow']:9.1f} {r['ids_differ']:11.4f} "
                f"{r['depth_rel_max']:10.2e} {r['flow_max']:8.4f}"
            )
    return result


if __name__ == "__main__":
    main()
