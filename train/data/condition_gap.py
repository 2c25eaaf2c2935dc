"""How far the game's condition signals are from the footage's, per game setting (camera, scene).

    python -m spokester_train.data.condition_gap --video V [V ...] [--camera follow first_person] \
        [--scene city open] [--car-slabs] --json

The renderer is prompted with the game's depth and flow but learnt from the footage's: the closer their
distributions, the more of what it learnt it can use (the seed's lesson). For every source — each video's
label store, and a seeded game ride per setting — this builds per-pixel maps over its frames, at one frame
size:

    depth mean / spread   mean and std over frames of the standardised log inverse depth (each source
                          normalised with its own `ConditionSource`, so relative depth's scale cancels)
    flow                  mean |flow| relative to the source's mean |flow| over all pixels and frames (videos:
                          at frame skip 1): where the picture moves, whatever the speed (the renderer
                          standardises each source's flow with its own statistics)
    sky                   how often the pixel is sky (inverse depth 0; videos: their sky read as 0)

and summarises the gap between a setting's maps and the videos' (pooled, every video weighted by its frames)
as mean absolute differences over pixels:

    depth_map_gap, depth_spread_gap   in standard deviations
    flow_map_gap                      in units of each source's mean |flow|
    sky_map_gap                       in probability; and sky_fraction of the game and of the videos
    flow_scale                        the game's mean |flow| / the videos' (pixels per frame; a scale the
                                      standardisation removes, given for reference)

`reference` gives the same gaps of each video to the others pooled, averaged: how far real footage is from
itself, the scale on which a setting's gaps are small or large.

"cars" (of each setting, and `videos_cars` of the videos pooled) says what a car looks like in the condition:
over every car-shaped blob (`spokester_train.data.video_depth.car_blobs`: the game's class map, the videos'
DeepLab car mask), medians of

    depth_step      the blob's median standardised log inverse depth minus that of the ground and roadside
                    around it (a 3-pixel ring, sky and other cars left out): how far it stands out, in std
    edge_contrast   mean |gradient| of that depth on the blob's outline / over the whole frame: how sharp
    flow_step       |median flow in the blob - median flow of the ring| / the source's mean |flow|

with `blobs` and `per_frame` (blobs a frame). `--car-slabs` reads the videos' depth as training with it does.

Legend: n frames, s side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neural_render import ConditionSource
from spokester_env import CAMERA_PRESETS, CLASS_NAMES, SCENE_PRESETS
from spokester_env.commandline import CommandLine, at_least, user_errors
from spokester_train.data.extract import extract
from spokester_train.data.game import game_ride
from spokester_train.data.store import LABEL_ROOT_HELP, LabelStore, flow_stream
from spokester_train.data.video import parse_video
from spokester_train.data.video_depth import car_blobs, read_depth

__all__ = ["CarSteps", "SourceMaps", "car_steps", "condition_gap", "gaps", "game_maps", "main", "video_maps"]

GAPS = ("depth_map_gap", "depth_spread_gap", "flow_map_gap", "sky_map_gap")
"""The gap figures, in the order they are printed."""
CAR_FIGURES = ("depth_step", "edge_contrast", "flow_step")
"""The car figures, medians over the blobs, in the order they are printed."""
RING = 3
"""Width in pixels of the ring around a car that `depth_step` and `flow_step` compare it with."""


@dataclass(frozen=True)
class CarSteps:
    """Per car blob of a source (b,): its `CAR_FIGURES`, over `frames` frames."""

    depth_step: np.ndarray
    edge_contrast: np.ndarray
    flow_step: np.ndarray
    frames: int

    @classmethod
    def pool(cls, parts: Sequence[CarSteps]) -> CarSteps:
        """Every part's blobs together."""
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in CAR_FIGURES}
        return cls(**joined, frames=sum(p.frames for p in parts))

    def figures(self) -> dict:
        """The JSON figures: blobs, per_frame and the median of each of `CAR_FIGURES` (null without blobs)."""
        count = len(self.depth_step)
        medians = {name: round(float(np.median(getattr(self, name))), 4) if count else None for name in CAR_FIGURES}
        return {"blobs": count, "per_frame": round(count / max(self.frames, 1), 4), **medians}


def car_steps(depth: np.ndarray, flow: np.ndarray, cars: np.ndarray, source: ConditionSource) -> CarSteps:
    """The car figures of depth (n, s, s, 1), flow (n, s, s, 2) and a car mask (n, s, s), the depth
    standardised by `source`."""
    import cv2

    z = source.normalize(depth, flow).numpy()[..., 0]  # (n, s, s)
    scale = max(float(np.hypot(flow[..., 0], flow[..., 1]).mean()), 1e-9)
    ring_kernel = np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)
    edge_kernel = np.ones((3, 3), np.uint8)
    steps = {name: [] for name in CAR_FIGURES}
    for frame in range(len(z)):
        gy, gx = np.gradient(z[frame])
        gradient = np.hypot(gx, gy)
        others = (cars[frame] > 0) | (depth[frame, ..., 0] <= 0)
        for blob in car_blobs(cars[frame]):
            grown = cv2.dilate(blob.astype(np.uint8), ring_kernel) > 0
            ring = grown & ~others
            if not ring.any():
                continue
            outline = (cv2.dilate(blob.astype(np.uint8), edge_kernel) > 0) & ~(
                cv2.erode(blob.astype(np.uint8), edge_kernel) > 0
            )
            moved = np.median(flow[frame][blob], axis=0) - np.median(flow[frame][ring], axis=0)
            steps["depth_step"].append(float(np.median(z[frame][blob]) - np.median(z[frame][ring])))
            steps["edge_contrast"].append(float(gradient[outline].mean() / max(float(gradient.mean()), 1e-9)))
            steps["flow_step"].append(float(np.hypot(*moved)) / scale)
    return CarSteps(**{name: np.array(values, np.float64) for name, values in steps.items()}, frames=len(z))


@dataclass(frozen=True)
class SourceMaps:
    """Per-pixel maps (s, s) of one source over its `frames`: standardised log inverse depth mean and std,
    mean |flow| relative to the source's overall mean |flow| (`flow_scale`, px/frame) and sky frequency."""

    depth_mean: np.ndarray
    depth_std: np.ndarray
    flow: np.ndarray
    sky: np.ndarray
    frames: int
    flow_scale: float

    @classmethod
    def of(cls, depth: np.ndarray, flow: np.ndarray, source: ConditionSource) -> SourceMaps:
        """Maps of depth (n, s, s, 1) and flow (n, s, s, 2), the depth normalised by `source`."""
        normalised = source.normalize(depth, flow).numpy()[..., 0]  # (n, s, s)
        speed = np.hypot(flow[..., 0], flow[..., 1]).mean(axis=0)  # (s, s) px/frame
        scale = max(float(speed.mean()), 1e-9)
        return cls(
            depth_mean=normalised.mean(axis=0),
            depth_std=normalised.std(axis=0),
            flow=speed / scale,
            sky=(depth[..., 0] == 0).mean(axis=0),
            frames=len(depth),
            flow_scale=scale,
        )

    @classmethod
    def pool(cls, parts: Sequence[SourceMaps]) -> SourceMaps:
        """Several sources' maps as one, each weighted by its frames (the spread pooled as a mixture's)."""
        weights = np.array([p.frames for p in parts], np.float64)
        weights /= weights.sum()

        def mean(name):
            return sum(w * getattr(p, name) for w, p in zip(weights, parts, strict=True))

        depth_mean = mean("depth_mean")
        second = sum(w * (p.depth_std**2 + p.depth_mean**2) for w, p in zip(weights, parts, strict=True))
        depth_std = np.sqrt(np.maximum(second - depth_mean**2, 0.0))
        scale = float(sum(w * p.flow_scale for w, p in zip(weights, parts, strict=True)))
        flow = sum(w * p.flow * p.flow_scale for w, p in zip(weights, parts, strict=True)) / scale
        return cls(depth_mean, depth_std, flow, mean("sky"), int(sum(p.frames for p in parts)), scale)


def gaps(maps: SourceMaps, reference: SourceMaps) -> dict[str, float]:
    """The gap figures of `maps` against `reference` (see the module docstring)."""
    return {
        "depth_map_gap": round(float(np.abs(maps.depth_mean - reference.depth_mean).mean()), 4),
        "depth_spread_gap": round(float(np.abs(maps.depth_std - reference.depth_std).mean()), 4),
        "flow_map_gap": round(float(np.abs(maps.flow - reference.flow).mean()), 4),
        "sky_map_gap": round(float(np.abs(maps.sky - reference.sky).mean()), 4),
    }


def video_maps(store: LabelStore, sky_to_zero: bool = True, car_slabs: bool = False) -> tuple[SourceMaps, CarSteps]:
    """The maps and car figures of one video's label store (flow at skip 1, from frame 1 on), its depth read with
    the sky at 0 and its cars as slabs if asked (`read_depth`)."""
    depth = np.array(read_depth(store, sky_to_zero, car_slabs)[1:], dtype=np.float32)  # (n - 1, s, s, 1)
    flow = np.asarray(store.stream(flow_stream(1))[1:], dtype=np.float32)
    source = ConditionSource.fit(depth, flow, sky_to_zero=sky_to_zero, car_slabs=car_slabs)
    cars = np.asarray(store.stream("cars")[1:]) if "cars" in store.streams else np.zeros(depth.shape[:3], np.uint8)
    return SourceMaps.of(depth, flow, source), car_steps(depth, flow, cars, source)


def game_maps(size: int, frames: int, camera: str, scene: str, seed: int = 0) -> tuple[SourceMaps, CarSteps]:
    """The maps and car figures of a seeded game ride of `frames` frames at `size` x `size` with a camera and a
    scene."""
    ride = game_ride(size, frames, seed, classes=True, camera=camera, scene=scene)
    source = ConditionSource.fit(ride.depth, ride.flow)
    cars = ride.classes == CLASS_NAMES.index("cars")
    return SourceMaps.of(ride.depth, ride.flow, source), car_steps(ride.depth, ride.flow, cars, source)


def condition_gap(
    videos: Sequence[str],
    cameras: Sequence[str] = tuple(CAMERA_PRESETS),
    scenes: Sequence[str] = tuple(SCENE_PRESETS),
    *,
    size: int = 64,
    frames: int = 240,
    seed: int = 0,
    label_root: str | None = None,
    car_slabs: bool = False,
    progress: bool = False,
) -> dict:
    """The gap figures of every (camera, scene) setting against `videos` (`PATH[@START[:END]]`, each cut to
    its first `frames` frames), with the videos' own reference gaps; the videos' cars as slabs if asked."""
    if len(videos) < 2:
        raise ValueError("videos: give at least two videos (the reference compares each with the others)")
    specs = [parse_video(video) for video in videos]
    parts, cars = [], []
    for spec in specs:
        count = frames if spec.frames is None else min(frames, spec.frames)
        store_dir = extract(
            spec.path, label_root, size=size, skips=(1,), start=spec.start, max_frames=count + 1, progress=progress
        )
        maps, steps = video_maps(LabelStore(store_dir), car_slabs=car_slabs)
        parts.append(maps)
        cars.append(steps)
    pooled = SourceMaps.pool(parts)
    reference = [gaps(part, SourceMaps.pool(parts[:i] + parts[i + 1 :])) for i, part in enumerate(parts)]
    settings = []
    for camera in cameras:
        for scene in scenes:
            game, game_cars = game_maps(size, frames, camera, scene, seed)
            settings.append(
                {
                    "camera": camera,
                    "scene": scene,
                    **gaps(game, pooled),
                    "sky_fraction": round(float(game.sky.mean()), 4),
                    "flow_scale": round(game.flow_scale / pooled.flow_scale, 4),
                    "cars": game_cars.figures(),
                }
            )
    return {
        "size": size,
        "frames": frames,
        "seed": seed,
        "videos": [
            {"video": spec.path.name, "start": spec.start, "frames": part.frames}
            for spec, part in zip(specs, parts, strict=True)
        ],
        "car_slabs": car_slabs,
        "videos_sky_fraction": round(float(pooled.sky.mean()), 4),
        "videos_cars": CarSteps.pool(cars).figures(),
        "reference": {key: round(float(np.mean([r[key] for r in reference])), 4) for key in GAPS},
        "settings": settings,
    }


def _table(result: dict) -> str:
    header = f"{'camera':>13} {'scene':>6} " + " ".join(f"{key:>16}" for key in GAPS)
    lines = [header + f" {'sky_fraction':>12} {'flow_scale':>10}"]
    for row in result["settings"]:
        figures = " ".join(f"{row[key]:>16}" for key in GAPS) + f" {row['sky_fraction']:>12} {row['flow_scale']:>10}"
        lines.append(f"{row['camera']:>13} {row['scene']:>6} {figures}")
    figures = " ".join(f"{result['reference'][key]:>16}" for key in GAPS)
    lines.append(f"{'videos':>13} {'(ref)':>6} {figures} {result['videos_sky_fraction']:>12}")
    lines.append("")
    lines.append(f"{'cars':>13} {'':>6} " + " ".join(f"{key:>16}" for key in (*CAR_FIGURES, "per_frame")))
    rows = [(row["camera"], row["scene"], row["cars"]) for row in result["settings"]]
    for camera, scene, cars in [*rows, ("videos", "", result["videos_cars"])]:
        figures = " ".join(f"{'-' if cars[key] is None else cars[key]:>16}" for key in (*CAR_FIGURES, "per_frame"))
        lines.append(f"{camera:>13} {scene:>6} {figures}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = CommandLine(prog="python -m spokester_train.data.condition_gap", description=__doc__.splitlines()[0])
    parser.add_argument("--video", nargs="+", required=True, help="two or more videos, PATH[@START[:END]]")
    parser.add_argument("--camera", nargs="+", default=list(CAMERA_PRESETS), choices=list(CAMERA_PRESETS))
    parser.add_argument("--scene", nargs="+", default=list(SCENE_PRESETS), choices=list(SCENE_PRESETS))
    parser.add_argument("--size", type=at_least(16), default=64, help="frame side the maps are made at, px")
    parser.add_argument("--frames", type=at_least(2), default=240, help="frames per video and per game ride")
    parser.add_argument("--seed", type=int, default=0, help="seed of the game rides")
    parser.add_argument("--labels", default=None, help=LABEL_ROOT_HELP)
    parser.add_argument(
        "--car-slabs", action="store_true", help="read the videos' cars as slabs, as training with --car-slabs does"
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    with user_errors(parser.prog):
        result = condition_gap(
            args.video,
            args.camera,
            args.scene,
            size=args.size,
            frames=args.frames,
            seed=args.seed,
            label_root=args.labels,
            car_slabs=args.car_slabs,
            progress=not args.json,
        )
    print(json.dumps(result) if args.json else _table(result))
    return result


if __name__ == "__main__":
    main()
