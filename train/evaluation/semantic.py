"""Semantic agreement: does the renderer paint the game's cube world as a road scene in the right places?

    python -m spokester_train.evaluation.semantic --checkpoint PATH --frames 48 --seed 0 --rides 5 --json

`--rides N` seeded game rides (`spokester_train.data.game.game_ride`, its scripted lane changes; seeds seed ..
seed + N - 1, default one) at the renderer's image size are painted together by the streaming sampler, one stream
each with its ride's seed, from the game's depth and flow ("game" statistics of the checkpoint). One ride is a
poor sample: a stream settles early on one of its footage's looks and keeps it, so the figures of one seed can be
far from another's (the default's car agreement was 0.21 on seed 0 and 0.11 over seeds 0-2). Every
frame has the game's own class of each pixel (`SpokesterEnv.class_map`: sky, ground, buildings, cars,
rider), and DeepLab's 19 Cityscapes classes of the neural frame (`DeepLabFeatures`: the frame resized up
to 513 x 513, its class map back down to the frame with nearest neighbours). A game class agrees with the
Cityscapes classes that `AGREEMENT` names for it:

    sky       -> sky
    ground    -> road, sidewalk
    buildings -> building, wall, fence, vegetation, terrain, pole: roadside structure. Vegetation and
                 terrain count because the training footage is of tree-lined roads: where the game has a
                 row of buildings beside the road, the renderer rightly paints the trees and verges that
                 stand there in its footage.
    cars      -> car, truck, bus
    rider     -> person, rider, bicycle, motorcycle

Printed JSON: "neural" and "cube" (the same figures for the game's own cube view, a reference for what
DeepLab makes of untextured boxes), each over the pixels of every ride,

    agreement   pixels whose DeepLab class agrees with their game class / all pixels (pixel-weighted)
    class_mean  the mean of the per-class agreements over the game classes that have pixels
    classes     {game class: {"pixels": n, "agreement": share of its pixels that agree (null without
                pixels), "fractions": {Cityscapes class: share of its pixels}}}, the TOP most frequent
                classes and "other" for the rest, so the fractions of a class sum to 1

"vehicles": {"neural": ..., "cube": ...}, cars as a viewer sees them (`vehicle_figures`: seen_cars,
seen_agreement, seen_detected, hallucinated), "camera" and "scene" of the ride (by default the renderer's
own), "mapping" (AGREEMENT), checkpoint, frames (per ride), seed (the first ride's), size, num_steps, window,
and "rides": one entry per ride, {"seed", "class_mean" and "agreement" of its neural frames, "vehicles": its
neural vehicle figures}, for the spread from ride to ride, and "car_spread" (`car_spread`: the rides' mean car
agreement and its standard error). The car figure moves far from ride to ride (the shipped default over seeds
0-19: 0.00 to 0.37, standard error 0.03), so two renderers a few hundredths apart on 20 rides are not told apart.

`--cars` says what the renderer is told of the game's cars, to find what it paints them from: `game` (default) as
the game gives them; `unmasked`, an empty car mask (for a renderer told where the cars are); `flat`, the cars flat
in the depth and flow (`flat_cars`: each car pixel takes the values of the road just below the car, as a video's
depth network reads a car). The game's class maps, and so the figures' cars, are the game's in every case; the JSON
says which ("cars").

`--camera all` is one report covering every camera preset in one run: {"cameras": {camera: the figures
above for a ride seen by that camera}}, each ride with the same seed and scene.

Legend: t frames, s side, g game classes, c Cityscapes classes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from neural_render import StreamingRenderer, load_renderer
from neural_render.checkpoint import LOOK_HELP, NUM_STEPS_HELP
from spokester_env import CAMERA_PRESETS, CLASS_NAMES, SCENE_PRESETS
from spokester_env.commandline import CommandLine, at_least, device_option, user_errors
from spokester_train.data.extractors.teacher import DeepLabFeatures
from spokester_train.data.game import Ride, game_ride
from spokester_train.evaluation.pictures import render_rides

__all__ = [
    "AGREEMENT",
    "CAR_CONDITIONS",
    "TOP",
    "segment",
    "confusion",
    "agreement_figures",
    "car_spread",
    "flat_cars",
    "semantic_agreement",
    "main",
]

CAR_CONDITIONS = ("game", "unmasked", "flat")
"""What the renderer is told of the game's cars (`--cars`): as the game gives them, an empty car mask, or the cars
flat in the depth and flow."""

CITYSCAPES = DeepLabFeatures.CLASSES
AGREEMENT = {
    "sky": DeepLabFeatures.MASKS["sky"],
    "ground": ("road", "sidewalk"),
    "buildings": ("building", "wall", "fence", "vegetation", "terrain", "pole"),
    "cars": DeepLabFeatures.MASKS["cars"],  # what the label store's car mask holds
    "rider": ("person", "rider", "bicycle", "motorcycle"),
}
"""Game class -> the Cityscapes classes that agree with it (see the module docstring for why)."""
TOP = 5
"""Cityscapes classes listed by name per game class; the rest are summed as "other"."""
MIN_CAR_SHARE = 0.005
"""A game car counts as seen when it covers at least this share of the frame (82 pixels at 128 x 128)."""


def _agrees() -> np.ndarray:
    """(g, c) bool: AGREEMENT as a table over CLASS_NAMES x CITYSCAPES."""
    table = np.zeros((len(CLASS_NAMES), len(CITYSCAPES)), bool)
    for game, names in AGREEMENT.items():
        table[CLASS_NAMES.index(game), [CITYSCAPES.index(name) for name in names]] = True
    return table


def segment(frames: np.ndarray, net: DeepLabFeatures) -> np.ndarray:
    """DeepLab's Cityscapes class of every pixel: (t, s, s, 3) uint8 -> (t, s, s) uint8."""
    side, full = frames.shape[1], net.INPUT_SIDE
    out = np.empty(frames.shape[:3], np.uint8)
    for index, frame in enumerate(frames):
        _, classes = net.features(cv2.resize(frame, (full, full), interpolation=cv2.INTER_LINEAR))  # (513, 513)
        out[index] = cv2.resize(classes.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    return out


def confusion(game: np.ndarray, cityscapes: np.ndarray) -> np.ndarray:
    """Pixel counts (g, c) of each game class (indices into CLASS_NAMES) given each Cityscapes class."""
    if game.shape != cityscapes.shape:
        raise ValueError(f"class maps of different shapes: {game.shape} and {cityscapes.shape}")
    pairs = game.astype(np.int64).ravel() * len(CITYSCAPES) + cityscapes.astype(np.int64).ravel()
    return np.bincount(pairs, minlength=len(CLASS_NAMES) * len(CITYSCAPES)).reshape(len(CLASS_NAMES), -1)


def agreement_figures(counts: np.ndarray, top: int = TOP) -> dict:
    """The JSON figures (agreement, class_mean, classes) of a (g, c) confusion table."""
    agreeing = (counts * _agrees()).sum(axis=1)  # (g,)
    pixels = counts.sum(axis=1)  # (g,)
    classes = {}
    for g, name in enumerate(CLASS_NAMES):
        if pixels[g] == 0:
            classes[name] = {"pixels": 0, "agreement": None, "fractions": {}}
            continue
        share = counts[g] / pixels[g]  # (c,)
        order = [c for c in np.argsort(-share, kind="stable")[:top] if share[c] > 0]
        fractions = {CITYSCAPES[c]: round(float(share[c]), 4) for c in order}
        rest = round(1.0 - float(share[order].sum()), 4)
        if rest > 0:
            fractions["other"] = rest
        classes[name] = {
            "pixels": int(pixels[g]),
            "agreement": round(float(agreeing[g] / pixels[g]), 4),
            "fractions": fractions,
        }
    present = pixels > 0
    return {
        "agreement": round(float(agreeing.sum() / max(pixels.sum(), 1)), 4),
        "class_mean": round(float(np.mean(agreeing[present] / pixels[present])), 4) if present.any() else None,
        "classes": classes,
    }


def vehicle_figures(game: np.ndarray, cityscapes: np.ndarray, min_share: float = MIN_CAR_SHARE) -> dict:
    """Cars as a viewer sees them, from game (t, s, s) and Cityscapes (t, s, s) class maps:

    seen_cars         game cars (connected car pixels of a frame) covering at least `min_share` of it
    seen_agreement    share of the seen cars' pixels read as a vehicle (car, truck, bus); None without any
    seen_detected     share of the seen cars of which at least a quarter of the pixels are read as a vehicle
    hallucinated      share of the pixels that are no car in the game but are read as a vehicle
    """
    car, vehicles = CLASS_NAMES.index("cars"), [CITYSCAPES.index(name) for name in AGREEMENT["cars"]]
    vehicle = np.isin(cityscapes, vehicles)  # (t, s, s)
    minimum = max(1, round(min_share * game.shape[1] * game.shape[2]))
    seen, agreeing, pixels, detected = 0, 0, 0, 0
    for frame, read in zip(game == car, vehicle, strict=True):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(frame.astype(np.uint8), connectivity=8)
        for component in range(1, count):
            if stats[component, cv2.CC_STAT_AREA] < minimum:
                continue
            inside = labels == component
            hits = int(read[inside].sum())
            seen, agreeing, pixels = seen + 1, agreeing + hits, pixels + int(inside.sum())
            detected += hits >= 0.25 * inside.sum()
    elsewhere = game != car
    return {
        "seen_cars": seen,
        "seen_agreement": round(agreeing / pixels, 4) if pixels else None,
        "seen_detected": round(detected / seen, 4) if seen else None,
        "hallucinated": round(float(vehicle[elsewhere].mean()), 4) if elsewhere.any() else 0.0,
    }


def car_spread(rides: Sequence[dict]) -> dict:
    """The rides' car agreement as a sample: of the rides with seen cars, how many ("rides"), the mean of their
    `seen_agreement` and its standard error ("se", None with fewer than two; "mean" None with none)."""
    values = np.array([r["vehicles"]["seen_agreement"] for r in rides if r["vehicles"]["seen_agreement"] is not None])
    n = len(values)
    return {
        "rides": n,
        "mean": round(float(values.mean()), 4) if n else None,
        "se": round(float(values.std(ddof=1) / np.sqrt(n)), 4) if n >= 2 else None,
    }


def flat_cars(ride: Ride) -> Ride:
    """The ride with its cars flat in the depth and flow: each car pixel (its class map's) takes the depth and flow of
    the first pixel below the car in its column (a car touching the bottom edge keeps its own)."""
    car = ride.classes == CLASS_NAMES.index("cars")  # (t, s, s)
    depth, flow = ride.depth.copy(), ride.flow.copy()
    side = car.shape[1]
    rows = np.arange(side)[:, None]  # (s, 1)
    for frame in np.nonzero(car.any((1, 2)))[0]:
        # the first non-car row at or below each pixel, per column: a car pixel's road below it
        below = np.where(car[frame], side, rows.repeat(side, 1))  # (s, s): its own row where no car
        below = np.minimum.accumulate(below[::-1], axis=0)[::-1]
        cols = np.nonzero(car[frame])
        found = below[cols] < side
        picked = (cols[0][found], cols[1][found])
        source = (below[picked], picked[1])
        depth[frame][picked], flow[frame][picked] = depth[frame][source], flow[frame][source]
    return dataclasses.replace(ride, depth=depth, flow=flow)


def semantic_agreement(
    checkpoint: str | None = None,
    frames: int = 48,
    *,
    seed: int = 0,
    rides: int = 1,
    num_steps: int | None = None,
    window: int = 3,
    device: str = "cpu",
    threads: int | None = None,
    camera: str | None = None,
    scene: str | None = None,
    look: str | None = None,
    cars: str = "game",
) -> dict:
    """Semantic agreement of a renderer checkpoint (None = the shipped default) on `rides` game rides seeded
    seed, seed + 1, ... with a camera and a scene (None = the renderer's own), painted together and sampled with
    `num_steps` Euler steps per framelet and `look` (None = the checkpoint's), told of the game's cars as `cars`
    says (`CAR_CONDITIONS`); `threads`: torch CPU threads while rendering (None = torch's default)."""
    if cars not in CAR_CONDITIONS:
        raise ValueError(f"cars={cars!r}: choose one of {', '.join(CAR_CONDITIONS)}")
    loaded = load_renderer(checkpoint, device=device)
    num_steps, look = loaded.steps(num_steps), loaded.look_for(look)
    cfg = loaded.model.config
    if cars == "unmasked" and not cfg.wants_cars:
        raise ValueError("cars='unmasked': this renderer is not told where the cars are (no car mask to empty)")
    if frames < cfg.patch_frames:
        raise ValueError(f"frames={frames}: need at least one framelet ({cfg.patch_frames} frames)")
    if rides < 1:
        raise ValueError(f"rides={rides}: need at least one")
    camera, scene = camera or loaded.game["camera"], scene or loaded.game["scene"]
    seeds = [seed + k for k in range(rides)]
    played = [game_ride(cfg.image_size, frames, seed=s, classes=True, camera=camera, scene=scene) for s in seeds]
    renderer = StreamingRenderer(
        loaded.model,
        stats=loaded.stats,
        source=loaded.game_source(camera),
        window=window,
        num_steps=num_steps,
        batch_size=rides,
        device=device,
        look=look,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        told = [flat_cars(ride) for ride in played] if cars == "flat" else played
        neural = render_rides(renderer, told, seeds, car_masks=cars != "unmasked")  # (b, t, s, s, 3), whole framelets
    finally:
        torch.set_num_threads(before)
    t = neural.shape[1]
    game = np.stack([ride.classes[:t] for ride in played])  # (b, t, s, s)
    net = DeepLabFeatures()
    cube = np.stack([ride.rgb[:t] for ride in played])
    read = {view: np.stack([segment(x, net) for x in frames]) for view, frames in (("neural", neural), ("cube", cube))}
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731  (b, t, s, s) -> (b t, s, s)
    per_ride = []
    for k, ride_seed in enumerate(seeds):
        figures = agreement_figures(confusion(game[k], read["neural"][k]))
        per_ride.append({
            "seed": ride_seed,
            "class_mean": figures["class_mean"],
            "agreement": figures["agreement"],
            "vehicles": vehicle_figures(game[k], read["neural"][k]),
        })  # fmt: skip
    return {
        **{view: agreement_figures(confusion(flat(game), flat(classes))) for view, classes in read.items()},
        "vehicles": {view: vehicle_figures(flat(game), flat(classes)) for view, classes in read.items()},
        "camera": camera,
        "scene": scene,
        "mapping": {game_class: list(names) for game_class, names in AGREEMENT.items()},
        "checkpoint": str(loaded.path),
        "frames": t,
        "seed": seed,
        "size": cfg.image_size,
        "num_steps": num_steps,
        "look": look,
        "cars": cars,
        "window": window,
        "rides": per_ride,
        "car_spread": car_spread(per_ride),
    }


def parse_args(argv: Sequence[str] | None = None):
    parser = CommandLine(prog="python -m spokester_train.evaluation.semantic", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="renderer checkpoint (default: the shipped one)")
    parser.add_argument("--frames", type=at_least(2), default=48, help="frames of the ride (>= 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the (first) ride and of its renderer's noise")
    parser.add_argument("--rides", type=at_least(1), default=1,
                        help="seeded rides painted together, seeds seed, seed + 1, ... (default 1)")  # fmt: skip
    parser.add_argument("--steps", type=at_least(1), default=None, help=NUM_STEPS_HELP)
    parser.add_argument("--window", type=at_least(1), default=3, help="framelets of context, itself included (>= 1)")
    parser.add_argument("--look", default=None, help=LOOK_HELP)
    parser.add_argument("--camera", choices=[*CAMERA_PRESETS, "all"], default=None,
                        help="game camera (default: the renderer's own); all: one report for every camera")  # fmt: skip
    parser.add_argument("--scene", choices=list(SCENE_PRESETS), default=None,
                        help="game scene (default: the renderer's own)")  # fmt: skip
    parser.add_argument("--cars", choices=CAR_CONDITIONS, default="game",
                        help="what the renderer is told of the game's cars: as the game gives them (default), an "
                        "empty car mask, or the cars flat in the depth and flow")  # fmt: skip
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=at_least(1),
        default=1,
        help="torch CPU threads (default 1: a second one is far slower on a busy CPU)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    return parser.parse_args(argv)


def _table(result: dict) -> str:
    """The figures as a few lines of text: per game class, its share of pixels and both agreements."""
    total = sum(c["pixels"] for c in result["neural"]["classes"].values())
    lines = [f"{'class':>9} {'pixels':>7} {'neural':>7} {'cube':>7}  neural's DeepLab classes"]
    for name in CLASS_NAMES:
        neural, cube = result["neural"]["classes"][name], result["cube"]["classes"][name]
        agree = [f"{'-' if c['agreement'] is None else c['agreement']:>7}" for c in (neural, cube)]
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(neural["fractions"].items())[:3])
        lines.append(f"{name:>9} {neural['pixels'] / max(total, 1):>7.1%} {agree[0]} {agree[1]}  {top}")
    lines.append(f"{'all':>9} {'':>7} {result['neural']['agreement']:>7} {result['cube']['agreement']:>7}")
    seeds = [ride["seed"] for ride in result["rides"]]
    rides = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} rides, seeds {seeds[0]}-{seeds[-1]}"
    lines.append(f"({result['frames']} frames at {result['size']} px, {rides}, {result['checkpoint']})")
    if len(seeds) > 1:
        lines.append("per ride, class mean / car agreement: " + ", ".join(
            f"{ride['class_mean']} / {ride['vehicles']['seen_agreement']}" for ride in result["rides"]))  # fmt: skip
        spread = result["car_spread"]
        if spread["se"] is not None:
            rides = f"{spread['rides']} rides with seen cars"
            lines.append(f"car agreement over {rides}: {spread['mean']} ± {spread['se']} (standard error)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    cameras = list(CAMERA_PRESETS) if args.camera == "all" else [args.camera]
    with user_errors("python -m spokester_train.evaluation.semantic"):
        results = {
            camera: semantic_agreement(
                args.checkpoint,
                args.frames,
                seed=args.seed,
                rides=args.rides,
                num_steps=args.steps,
                window=args.window,
                device=args.device,
                threads=args.threads,
                camera=camera,
                scene=args.scene,
                look=args.look,
                cars=args.cars,
            )
            for camera in cameras
        }
    result = {"cameras": results} if args.camera == "all" else results[args.camera]
    if args.json:
        print(json.dumps(result))
    else:
        print("\n\n".join(f"camera {r['camera']}, scene {r['scene']}:\n{_table(r)}" for r in results.values()))
    return result


if __name__ == "__main__":
    main()
