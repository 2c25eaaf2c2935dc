"""Train a renderer on one GPU from a training pack within a time budget, and hand its weights back in files
small enough to carry.

    python scripts/train_from_pack.py PACK --out DIR [--renderer tiny-overlap-blend] [--minutes 8.5]
    python scripts/train_from_pack.py PACK --out DIR --init-from neural_render/weights/default.safetensors
    python scripts/train_from_pack.py --join DIR     # where the files came back: DIR/renderer.safetensors again

For a GPU host with torch, numpy, safetensors, einops, rich, Pillow and gymnasium, but neither the game
(pybullet), video decoding (PyAV), OpenCV nor the extractors' networks. In order:
1. unpack the pack (`spokester_train.data.pack`) into label stores and the game's statistics, in a temporary folder;
2. time the `gpu-tiny` step of this renderer on this device (`spokester_train.recipe.bench.time_stage`) and
   fit the run's steps to the minutes left (`--minutes` counts from the script's start), keeping
   `READ_MARGIN` for reading clips and `EXPORT_SECONDS` for the last checkpoint and export: the learning
   rate's cool-down then ends where the time does (`--steps` fixes the steps instead);
3. train on every store of the pack (`spokester_train.recipe.loop.train`) at the pack's frame size, with the
   pack's game statistics and without evaluation; `--minutes` also stops the run, exported, should the
   steps run slower than timed; with `--init-from`, starting from that renderer's weights (its network,
   camera unless `--camera` says another, and sampling steps; the pack's scene), as `python -m spokester_train
   --init-from` does;
4. write to `--out` the exported renderer's JSON, its run log and its weights cut into parts of at most
   `PART_BYTES`, with the SHA-256 of the whole (`--join` puts them back together and checks it).

Evaluate the renderer where the game runs, with the same commands as any other (`scripts/renderer_figures.sh`).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _from_checkout() -> None:
    """Make the checkout's packages importable under their installed names where the project is not
    installed (a GPU host runs this from a copy of the repository): `train/` as spokester_train."""
    try:
        import spokester_train  # noqa: F401
    except ModuleNotFoundError:
        repo = Path(__file__).resolve().parents[1]
        names = Path(tempfile.mkdtemp(prefix="spokester-names-"))
        atexit.register(shutil.rmtree, names, True)
        (names / "spokester_train").symlink_to(repo / "train")
        (names / "spokester_agents").symlink_to(repo / "agents")
        sys.path[:0] = [str(repo), str(names)]


_from_checkout()

from neural_render import RENDERER_PRESETS  # noqa: E402
from spokester_env import CAMERA_PRESETS  # noqa: E402
from spokester_env.commandline import CommandLine, at_least, device_option, more_than, user_errors  # noqa: E402
from spokester_env.output import atomic_write_bytes, atomic_write_text, check_output  # noqa: E402

PART_BYTES = 15 * 2**20
"""Largest part of the weights written to --out (a call to the GPU host brings back files of at most 16 MiB)."""
READ_MARGIN = 0.85
"""Share of the timed step rate the run is planned at: reading clips and logging take the rest."""
EXPORT_SECONDS = 30
"""Seconds kept for the last checkpoint and export."""
WEIGHTS = "renderer.safetensors"
PARTS_RECORD = "renderer.parts.json"
"""The whole weights file's name, size and SHA-256, and how many parts it was cut into."""


def split_weights(run: Path, out: Path) -> dict:
    """Copy the run's renderer JSON and log to `out`, and its weights in parts of at most `PART_BYTES`."""
    data = (run / WEIGHTS).read_bytes()
    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    for index, part in enumerate(parts):
        atomic_write_bytes(out / f"{WEIGHTS}.part{index:02d}", part)
    record = {"file": WEIGHTS, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "parts": len(parts)}
    atomic_write_text(out / PARTS_RECORD, json.dumps(record))
    for name in ("renderer.json", "log.jsonl"):
        shutil.copyfile(run / name, out / name)
    return record


def join_weights(folder: Path) -> Path:
    """Put `folder/renderer.safetensors` back together from its parts; the SHA-256 must match and the renderer
    must load."""
    from neural_render import load_renderer

    record = json.loads((folder / PARTS_RECORD).read_text())
    data = b"".join((folder / f"{WEIGHTS}.part{i:02d}").read_bytes() for i in range(record["parts"]))
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ValueError(f"{folder}: the parts of {WEIGHTS} do not add up to the file that was split (SHA-256)")
    atomic_write_bytes(folder / WEIGHTS, data)
    load_renderer(folder / WEIGHTS)
    return folder / WEIGHTS


def plan_steps(config, seconds_left: float, margin: float = READ_MARGIN) -> tuple[int, float]:
    """(steps that fit in `seconds_left`, timed seconds per step) for `config`'s only stage on its device, planned
    at `margin` of the timed rate."""
    from spokester_train.recipe.bench import time_stage

    timing = time_stage(config, config.stages[0], steps=10, warmup=3)
    return max(1, int((seconds_left - EXPORT_SECONDS) * margin / timing.seconds)), timing.seconds


def train_from_pack(args, started: float) -> dict:
    from spokester_train.data.pack import unpack
    from spokester_train.data.store import LabelStore
    from spokester_train.recipe.config import make_config
    from spokester_train.recipe.loop import train
    from spokester_train.recipe.setup import init_from_choices

    out = check_output(args.out, folder=True)
    work = Path(tempfile.mkdtemp(prefix="spokester-pack-"))
    try:
        unpacked = unpack(args.pack, work / "labels")
        game = json.loads(Path(unpacked["game_stats"]).read_text())
        network = {"renderer_preset": args.renderer or "tiny", "camera": args.camera or "first_person"}
        if args.init_from is not None:
            network = init_from_choices(args.init_from) | {"init_from": args.init_from}
            del network["scene"]  # the pack's: its game statistics were fitted in it
            network |= {"camera": args.camera} if args.camera else {}
        network |= {"looks": True} if args.looks else {}
        network |= {"sky_at_clip": True} if args.sky_at_clip else {}
        network |= {"car_slabs": True} if args.car_slabs else {}
        network |= {"car_masks": True} if args.car_masks else {}
        network |= {"mirror": True} if args.mirror else {}
        network |= {"cars_enter": args.cars_enter} if args.cars_enter else {}
        network |= {"car_loss_weight": args.car_loss_weight} if args.car_loss_weight is not None else {}
        network |= {"lr": args.lr} if args.lr else {}
        config = make_config(
            "gpu-tiny",
            **network,
            videos=tuple(unpacked["stores"]),
            out=str(work / "run"),
            label_root=str(work / "labels"),
            game_stats=unpacked["game_stats"],
            game_stats_frames=game["frames"],
            seed=game["seed"],
            scene=game["scene"],
            device=args.device or "cuda",
            progress=False,
        )
        skips = set.intersection(*(set(LabelStore(store).skips) for store in unpacked["stores"]))
        config = dataclasses.replace(config, skips=tuple(sorted(skips)))  # the flows every store holds
        stage = dataclasses.replace(config.stages[0], image_size=game["size"])
        if args.batch is not None:
            stage = dataclasses.replace(stage, batch_size=args.batch)
        config = dataclasses.replace(config, stages=(stage,))
        seconds_per_step = None
        steps = args.steps
        if steps is None:
            steps, seconds_per_step = plan_steps(config, 60 * args.minutes - (time.time() - started), args.margin)
        config = config.with_total_steps(steps)
        minutes_left = args.minutes - (time.time() - started) / 60 - EXPORT_SECONDS / 60
        config = dataclasses.replace(config, max_minutes=max(minutes_left, 0.1))
        print(f"training {steps} steps ({seconds_per_step or 0:.3f} s/step timed)", file=sys.stderr, flush=True)
        result = train(config)
        record = split_weights(result.out, out)
        return {"steps": result.step, "planned_steps": steps, "timed_s_per_step": seconds_per_step, **record,
                "wall_s": round(time.time() - started, 1)}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    started = time.time()
    parser = CommandLine(prog="scripts/train_from_pack.py", description=__doc__.splitlines()[0])
    parser.add_argument("pack", nargs="?", help="the training pack (python -m spokester_train.data.pack)")
    parser.add_argument("--out", help="folder for the renderer's JSON, log and weight parts")
    parser.add_argument("--join", metavar="DIR", help="put DIR's weight parts back together instead")
    parser.add_argument("--renderer", default=None, choices=list(RENDERER_PRESETS),
                        help="the network's preset (default: tiny)")  # fmt: skip
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start from this renderer's weights (its network, camera and sampling steps): "
                        "fine-tuning it, e.g. neural_render/weights/default.safetensors")  # fmt: skip
    parser.add_argument(
        "--camera",
        default=None,
        choices=list(CAMERA_PRESETS),
        help="the game camera the renderer is made for (default: --init-from's, else the footage's, first_person)",
    )
    parser.add_argument(
        "--looks",
        action="store_true",
        help="teach a look per video of the pack (default: none, or as --init-from's renderer does)",
    )
    parser.add_argument(
        "--sky-at-clip",
        action="store_true",
        help="read the sky as the lowest depth value in every source (default: as --init-from's)",
    )
    parser.add_argument(
        "--car-slabs",
        action="store_true",
        help="read each car of the videos as a slab where it meets the road (the pack carries the slabs; default: as "
        "--init-from's)",
    )
    parser.add_argument(
        "--car-masks",
        action="store_true",
        help="tell the network where the cars are, a car mask after depth and flow (default: as --init-from's)",
    )
    parser.add_argument("--mirror", action="store_true", help="mirror half the training clips left to right")
    parser.add_argument("--cars-enter", type=at_least(0.0, float), default=None, metavar="SHARE",
                        help="with --car-masks: the share of the clips whose cars are hidden before a random "
                        "framelet (default: 0)")  # fmt: skip
    parser.add_argument("--car-loss-weight", type=at_least(0.0, float), default=None, metavar="W",
                        help="with --car-masks: the loss's weight on the car mask's pixels (default: 1)")  # fmt: skip
    parser.add_argument("--lr", type=more_than(0), default=None, help="peak learning rate (default: the preset's)")
    parser.add_argument("--minutes", type=more_than(0), default=8.5, help="the whole script's time, minutes")
    parser.add_argument("--steps", type=at_least(1), default=None, help="train this many steps (no timing)")
    parser.add_argument("--margin", type=more_than(0), default=READ_MARGIN,
                        help=f"share of the timed step rate the steps are planned at (default {READ_MARGIN}; two runs "
                        "on one host: 0.7)")  # fmt: skip
    parser.add_argument("--batch", type=at_least(1), default=None, help="clips per step (default: the preset's)")
    parser.add_argument("--device", type=device_option, default=None, help="torch device (default: cuda)")
    args = parser.parse_args(argv)
    if bool(args.join) == bool(args.pack or args.out) or (args.pack is None) != (args.out is None):
        parser.error("give PACK and --out to train, or --join DIR")
    if args.init_from and args.renderer:
        parser.error("--renderer: a run started from a renderer (--init-from) trains that renderer's network")
    with user_errors(parser.prog):
        if args.join:
            result = {"renderer": str(join_weights(Path(args.join)))}
        else:
            result = train_from_pack(args, started)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
