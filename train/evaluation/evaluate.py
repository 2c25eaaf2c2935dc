"""Evaluate a renderer on a real clip: autoregressive reconstruction and temporal consistency.

    python -m spokester_train.evaluation.evaluate --checkpoint PATH --video PATH --frames N --json

The streaming sampler renders the clip, framelet by framelet, from the clip's own extracted depth and
flow (normalised with the clip's own statistics, as in training), once per `cache_at_step` value. The
clip's labels come from the extractors the renderer was trained on (its provenance says which; `--depth`,
`--flow`, `--weights` override them), read as its training videos were (its "video" source's flags). Printed
JSON (keys of the per-setting objects are "none" or the step number; `spokester_train.evaluation.metrics` defines each
measure):

    psnr                {cache_at_step: dB}  PSNR of the rendered frames against the real ones (capped at 100 dB)
    psnr_colour_matched {cache_at_step: dB}  the same after a per-channel affine colour match of the rendered
                                             clip to the real one: structure, whatever the palette
    ar_loss             {cache_at_step: mse} mean squared error of rendered vs real frames in [-1, 1] units:
                                             the seed's autoregressive reconstruction loss
    warp_error          {cache_at_step: mae} temporal consistency: mean absolute error (0..255) between each
                                             rendered frame and the previous one warped by the condition flow
    seam_ratio          {cache_at_step: x}   mean |luminance gradient| across patch boundaries / elsewhere
                                             (about 1: no visible tiles)
    boundary_ratio      {cache_at_step: x}   mean |frame difference| across framelet boundaries / within
                                             framelets (about 1: no jump as a framelet starts; null for one framelet)
    detail_share        {cache_at_step: x}   share of the colour-matched rendering's squared error in detail finer
                                             than a Gaussian blur of DETAIL_SIGMA (4) px (0: all coarse; 1: all detail)
    warp_error_real, seam_ratio_real, boundary_ratio_real   the same measures of the real frames
    psnr_real_blurred   {sigma: dB}          PSNR of the real frames blurred by a Gaussian of sigma 2, 4 and 8 px:
                                             what a picture right in everything but its detail scores
    sample_mean         null, or with --samples N > 1: {"samples": N, "cache_at_step": the first setting, "psnr",
                                             "psnr_colour_matched", "warp_error"} of the mean of N renderings (seeds
                                             seed .. seed + N - 1), the renderer's own average picture: how much of its
                                             error is sampling noise that averaging removes, and how much is bias
    frames, num_steps, window, seed, checkpoint, video, start, size, stats_source, sky_to_zero, car_slabs,
    extractors, noise_correlation

A renderer that paints detail of its own (texture, edges) the condition does not determine pays for it twice in
PSNR, once for the real detail it misses and once for the detail it invents; a blurred picture pays once.
`psnr_real_blurred`, `detail_share` and `sample_mean` say how much of a PSNR gap that explains.

`--sheet PNG` and `--mp4 PATH` also write a contact sheet (real | rendered | depth | flow, four frames) and
a video of real next to rendered, for the first `--cache-at-step` value, atomically.

Legend: t frames, s side, F frames per framelet.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from neural_render import ANY_LOOK, ConditionSource, ConditionStats, StreamingRenderer, load_renderer
from neural_render.checkpoint import LOOK_HELP, NUM_STEPS_HELP, LoadedRenderer, checkpoint_num_steps
from neural_render.sampler import NOISE_CORRELATION, NUM_STEPS
from spokester_env.commandline import CommandLine, at_least, device_option, user_errors
from spokester_env.output import check_output, write_png, write_video
from spokester_train.data.extract import add_extractor_options, extract, extractor_specs
from spokester_train.data.extractors import DEFAULT_EXTRACTORS
from spokester_train.data.sources import VIDEOS, video_source
from spokester_train.data.store import LABEL_ROOT_HELP, LabelStore, flow_stream
from spokester_train.data.video_depth import read_depth, slab_map
from spokester_train.evaluation.metrics import (
    BLUR_SIGMAS,
    ar_loss,
    blurred,
    boundary_ratio,
    colour_matched,
    detail_share,
    psnr,
    seam_ratio,
    temporal_warp_error,
)
from spokester_train.evaluation.pictures import condition_views, contact_sheet

__all__ = [
    "EvalClip",
    "checkpoint_extractors",
    "evaluate",
    "evaluate_clip",
    "load_eval_clip",
    "main",
    "parse_cache_steps",
    "with_eval_source",
]

EVAL_SOURCE = "eval"
"""Name of the evaluated clip's own condition source among the renderer's sources."""


def parse_cache_steps(text: str, num_steps: int) -> tuple[int | None, ...]:
    """ "none,3,6" -> (None, 3, 6); each value must be none or an integer in [0, num_steps)."""
    values: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower() == "none":
            values.append(None)
        elif part.isdigit() and int(part) < num_steps:
            values.append(int(part))
        else:
            raise ValueError(f"--cache-at-step {part!r}: allowed values are none or 0..{num_steps - 1}")
    if not values:
        raise ValueError("--cache-at-step: give at least one value (none or 0..steps-1)")
    return tuple(values)


def default_cache_steps(num_steps: int) -> tuple[int | None, ...]:
    """The settings evaluated unless told: a clean context pass (None) and the steps a quarter, half and three
    quarters of the way (none, 3, 6, 9 for 12 steps)."""
    return (None, *sorted({num_steps // 4, num_steps // 2, 3 * num_steps // 4}))


def cache_step_key(value: int | None) -> str:
    """The JSON key of a `cache_at_step` value: "none" or the step number."""
    return "none" if value is None else str(value)


class FrameletRenderer(Protocol):
    """What evaluation needs of a renderer (a `StreamingRenderer` is one)."""

    def reset(self, seed: int | None = None) -> None: ...

    def step(self, depth: np.ndarray, flow: np.ndarray, cars: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalClip:
    """Real frames (t, s, s, 3) uint8 with their depth (t, s, s, 1) and flow (t, s, s, 2) at skip 1, and their car
    mask (t, s, s, 1) bool for a renderer that wants it."""

    frames: np.ndarray
    depth: np.ndarray
    flow: np.ndarray
    cars: np.ndarray | None = None


def load_eval_clip(
    store: LabelStore,
    frames: int,
    patch_frames: int,
    first: int = 1,
    sky_to_zero: bool = False,
    car_slabs: bool = False,
    car_masks: bool = False,
) -> EvalClip:
    """`frames` (rounded down to whole framelets) consecutive stored frames from `first` on (frame 0 has no
    flow), depth with the sky at 0 and the cars as slabs if asked, and with `car_masks` the car mask (where
    `slab_map` has a slab); an error names the store when it is too short."""
    n = min(frames, store.n_frames - first) // patch_frames * patch_frames
    if n < patch_frames:
        raise ValueError(f"{store.dir}: {store.n_frames} frames; evaluation needs at least {first + patch_frames}")
    picks = slice(first, first + n)
    return EvalClip(
        frames=np.asarray(store.stream("frames")[picks]),
        depth=np.array(read_depth(store, sky_to_zero, car_slabs)[picks], dtype=np.float32),  # a copy: writable
        flow=np.asarray(store.stream(flow_stream(1))[picks], dtype=np.float32),
        cars=np.asarray(slab_map(store)[picks])[..., None] > 0 if car_masks else None,
    )


def reconstruct(renderer: FrameletRenderer, clip: EvalClip, patch_frames: int, seed: int = 0) -> np.ndarray:
    """Render the clip from its depth and flow, framelet by framelet: (t, s, s, 3) uint8."""
    renderer.reset(seed)
    out = []
    for i in range(0, len(clip.frames), patch_frames):
        part = slice(i, i + patch_frames)
        out.append(renderer.step(clip.depth[part], clip.flow[part], None if clip.cars is None else clip.cars[part]))
    return np.concatenate(out)


FIGURES = ("psnr", "psnr_colour_matched", "ar_loss", "warp_error", "seam_ratio", "boundary_ratio", "detail_share")
"""The per-`cache_at_step` figures of `evaluate_clip` (see `spokester_train.evaluation.metrics`)."""


def evaluate_clip(
    make_renderer: Callable[[int | None], FrameletRenderer],
    clip: EvalClip,
    cache_steps: Sequence[int | None],
    patch_frames: int,
    seed: int = 0,
    patch_size: int = 16,
    rendered: dict | None = None,
) -> dict:
    """Figures of one clip; `make_renderer(cache_at_step)` gives a fresh renderer. The same measures of the
    real frames are given as references (`*_real`). `rendered`, if given, receives the frames (t, s, s, 3)
    of each setting under its key."""
    figures: dict = {name: {} for name in FIGURES}
    for value in cache_steps:
        generated = reconstruct(make_renderer(value), clip, patch_frames, seed)
        key = cache_step_key(value)
        if rendered is not None:
            rendered[key] = generated
        figures["psnr"][key] = _figure(psnr(generated, clip.frames))
        figures["psnr_colour_matched"][key] = _figure(psnr(colour_matched(generated, clip.frames), clip.frames))
        figures["ar_loss"][key] = _figure(ar_loss(generated, clip.frames), 6)
        figures["warp_error"][key] = _figure(temporal_warp_error(generated, clip.flow))
        figures["seam_ratio"][key] = _figure(seam_ratio(generated, patch_size))
        figures["boundary_ratio"][key] = _figure(boundary_ratio(generated, patch_frames))
        figures["detail_share"][key] = _figure(detail_share(colour_matched(generated, clip.frames), clip.frames))
    figures["warp_error_real"] = _figure(temporal_warp_error(clip.frames, clip.flow))
    figures["seam_ratio_real"] = _figure(seam_ratio(clip.frames, patch_size))
    figures["boundary_ratio_real"] = _figure(boundary_ratio(clip.frames, patch_frames))
    figures["psnr_real_blurred"] = {
        f"{sigma:g}": _figure(psnr(blurred(clip.frames, sigma), clip.frames)) for sigma in BLUR_SIGMAS
    }
    figures["frames"] = len(clip.frames)
    return figures


def sample_mean(
    make_renderer: Callable[[int | None], FrameletRenderer],
    clip: EvalClip,
    cache_step: int | None,
    patch_frames: int,
    seeds: Sequence[int],
    first: np.ndarray | None = None,
) -> dict:
    """Figures of the mean of the clip rendered once per seed with `cache_step` (`first`, if given, is the
    rendering of seeds[0], not made again): the renderer's own average picture."""
    renderer = make_renderer(cache_step)
    total = np.zeros(clip.frames.shape, np.float64)
    for index, seed in enumerate(seeds):
        given = first is not None and index == 0
        total += first if given else reconstruct(renderer, clip, patch_frames, seed)
    mean = np.clip(np.round(total / len(seeds)), 0, 255).astype(np.uint8)
    return {
        "samples": len(seeds),
        "cache_at_step": cache_step_key(cache_step),
        "psnr": _figure(psnr(mean, clip.frames)),
        "psnr_colour_matched": _figure(psnr(colour_matched(mean, clip.frames), clip.frames)),
        "warp_error": _figure(temporal_warp_error(mean, clip.flow)),
    }


def _figure(value: float, digits: int = 4) -> float | None:
    """A figure rounded for JSON; None where it cannot be measured (NaN: JSON has no NaN)."""
    return None if math.isnan(value) else round(value, digits)


def streaming_factory(
    model,
    stats: ConditionStats,
    *,
    window: int,
    num_steps: int,
    seed: int,
    device: str = "cpu",
    noise_correlation: float = NOISE_CORRELATION,
    look: str = ANY_LOOK,
):
    """`make_renderer` for `evaluate_clip`: a StreamingRenderer of `model` on the stats' "eval" source."""

    def make(cache_at_step: int | None) -> StreamingRenderer:
        return StreamingRenderer(
            model,
            stats=stats,
            source=EVAL_SOURCE,
            window=window,
            num_steps=num_steps,
            cache_at_step=cache_at_step,
            seed=seed,
            device=device,
            noise_correlation=noise_correlation,
            look=look,
        )

    return make


def check_outputs(**outputs: tuple[str | os.PathLike | None, str]) -> dict[str, Path]:
    """{name: path} of the outputs asked for, each (path or None, required suffix); a wrong suffix or a path
    that cannot be written (`check_output`) is a one-line error naming the argument, before any work."""
    checked = {}
    for name, (path, suffix) in outputs.items():
        if path is None:
            continue
        path = Path(path)
        if path.suffix.lower() != suffix:
            raise ValueError(f"{name}={str(path)!r}: must end in {suffix}")
        checked[name] = check_output(path, option=f"{name}=")
    return checked


def video_flags(stats: ConditionStats | None) -> dict:
    """The transform flags a renderer read its training videos with (its "video" source's; the defaults
    when it has none), which a new video must be read with too."""
    if stats is None or not stats.sources:
        return ConditionSource.unit().flags
    reference = stats.sources.get(VIDEOS) or next(iter(stats.sources.values()))
    videos = VIDEOS in stats.sources
    return {
        **reference.flags,
        "sky_to_zero": reference.sky_to_zero and videos,
        "car_slabs": reference.car_slabs and videos,
    }


def with_eval_source(stats: ConditionStats | None, store: LabelStore) -> ConditionStats:
    """The evaluated clip's own condition source, as "eval", fitted with the renderer's video flags."""
    return ConditionStats(sources={EVAL_SOURCE: video_source(store, **video_flags(stats))})


def checkpoint_extractors(loaded: LoadedRenderer) -> dict[str, object]:
    """The extractors a renderer was trained on (its provenance's), the defaults for what it does not say."""
    recorded = loaded.provenance.get("extractors") or (loaded.provenance.get("train_config") or {}).get("extractors")
    return {**DEFAULT_EXTRACTORS, **(recorded if isinstance(recorded, Mapping) else {})}


def evaluate(
    checkpoint: str | None,
    video: str,
    frames: int = 32,
    *,
    cache_steps: Sequence[int | None] | None = None,
    num_steps: int | None = None,
    window: int = 3,
    start: int = 0,
    seed: int = 0,
    label_root: str | None = None,
    extractors: Mapping[str, object] | None = None,
    device: str = "cpu",
    noise_correlation: float = NOISE_CORRELATION,
    progress: bool = False,
    sheet: str | os.PathLike | None = None,
    video_out: str | os.PathLike | None = None,
    look: str | None = None,
    samples: int = 1,
) -> dict:
    """Evaluate a renderer checkpoint (None = the shipped default) on `frames` frames of `video`, with the
    extractors it was trained on (or `extractors`, by kind, instead), sampled with `num_steps` and `look` (None =
    the checkpoint's) and each of `cache_steps` (None = `default_cache_steps`). With `sheet` (a .png) and `video_out`
    (an .mp4), also write a contact sheet (real | rendered | depth | flow, a few frames) and a video of real
    next to rendered, of the first `cache_steps` setting; both are checked before any work. With `samples` > 1, the
    first setting is rendered with `samples` seeds from `seed` on, and their mean is scored too ("sample_mean")."""
    if samples < 1:
        raise ValueError(f"samples={samples}: must be at least 1")
    outputs = check_outputs(sheet=(sheet, ".png"), video_out=(video_out, ".mp4"))
    loaded = load_renderer(checkpoint, device=device)
    num_steps, look = loaded.steps(num_steps), loaded.look_for(look)
    cache_steps = default_cache_steps(num_steps) if cache_steps is None else tuple(cache_steps)
    if any(step is not None and not 0 <= step < num_steps for step in cache_steps):
        raise ValueError(f"cache_steps={cache_steps}: each must be None or in [0, num_steps={num_steps})")
    cfg = loaded.model.config
    flags = video_flags(loaded.stats)
    extractors = {**checkpoint_extractors(loaded), **(extractors or {})}
    store = LabelStore(
        extract(
            video,
            label_root,
            size=cfg.image_size,
            flow=extractors["flow"],
            depth=extractors["depth"],
            teacher=extractors["teacher"] if flags["sky_to_zero"] or flags["car_slabs"] or cfg.wants_cars else None,
            start=start,
            max_frames=frames + 1,
            progress=progress,
        )
    )
    read = {"sky_to_zero": flags["sky_to_zero"], "car_slabs": flags["car_slabs"], "car_masks": cfg.wants_cars}
    clip = load_eval_clip(store, frames, cfg.patch_frames, **read)
    stats = with_eval_source(loaded.stats, store)
    options = dict(window=window, num_steps=num_steps, seed=seed, device=device, noise_correlation=noise_correlation)
    options["look"] = look
    make = streaming_factory(loaded.model, stats, **options)
    rendered: dict = {}
    figures = evaluate_clip(make, clip, cache_steps, cfg.patch_frames, seed, cfg.patch_size, rendered)
    shown = rendered[cache_step_key(cache_steps[0])]  # (t, s, s, 3)
    seeds = range(seed, seed + samples)
    figures["sample_mean"] = (
        sample_mean(make, clip, cache_steps[0], cfg.patch_frames, seeds, shown) if samples > 1 else None
    )
    if "sheet" in outputs:
        views = {"real": clip.frames, "rendered": shown, **condition_views(clip.depth, clip.flow)}
        write_png(outputs["sheet"], contact_sheet(views))
    if "video_out" in outputs:
        write_video(outputs["video_out"], np.concatenate([clip.frames, shown], axis=2), store.fps)
    info = {
        "checkpoint": str(loaded.path),
        "video": str(video),
        "start": start,
        "size": cfg.image_size,
        "num_steps": num_steps,
        "look": look,
        "window": window,
        "seed": seed,
        "stats_source": "the clip's own statistics (spokester_train.data.sources.video_source of its label store)",
        "sky_to_zero": flags["sky_to_zero"],
        "car_slabs": flags["car_slabs"],
        "noise_correlation": noise_correlation,
        "extractors": {kind: extractors[kind] for kind in ("flow", "depth")},
    }
    return {**figures, **info}


def parse_args(argv: Sequence[str] | None = None):
    parser = CommandLine(prog="python -m spokester_train.evaluation.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="renderer checkpoint (default: the shipped one)")
    parser.add_argument("--video", required=True, help="a real video (mp4, webm, mkv, avi)")
    parser.add_argument("--frames", type=at_least(2), default=32, help="frames to reconstruct (>= 2)")
    parser.add_argument("--start", type=at_least(0), default=0, help="first source frame")
    parser.add_argument("--cache-at-step", default=None,
                        help="comma-separated: none or 0..steps-1 (default: none and the steps a quarter, half and "
                        "three quarters of the way)")  # fmt: skip
    parser.add_argument("--steps", type=at_least(1), default=None, help=NUM_STEPS_HELP)
    parser.add_argument("--window", type=at_least(1), default=3, help="framelets of context, itself included (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--look", default=None, help=LOOK_HELP)
    parser.add_argument("--labels", default=None, help=LABEL_ROOT_HELP)
    add_extractor_options(parser)
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--noise-correlation", type=float, default=NOISE_CORRELATION,
                        help=f"framelet noise correlation, 0..1 (default {NOISE_CORRELATION})")  # fmt: skip
    parser.add_argument("--samples", type=at_least(1), default=1,
                        help="also score the mean of this many renderings (seeds --seed on) of the first "
                        "--cache-at-step setting: how much of the error is sampling noise (default 1)")  # fmt: skip
    parser.add_argument("--sheet", default=None, help="also write a contact sheet (real | rendered | depth | flow)")
    parser.add_argument("--mp4", default=None, help="also write real next to rendered as this mp4")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    for name, suffix in (("sheet", ".png"), ("mp4", ".mp4")):
        if getattr(args, name) is not None and not getattr(args, name).lower().endswith(suffix):
            parser.error(f"--{name} {getattr(args, name)!r}: must end in {suffix}")
    if not 0.0 <= args.noise_correlation <= 1.0:
        parser.error(f"--noise-correlation {args.noise_correlation}: must lie in [0, 1]")
    try:
        steps = args.steps or checkpoint_num_steps(args.checkpoint)
    except ValueError:  # an unreadable checkpoint: evaluate() names the file and what is wrong
        steps = args.steps or NUM_STEPS
    try:
        given = args.cache_at_step
        args.cache_steps = default_cache_steps(steps) if given is None else parse_cache_steps(given, steps)
    except ValueError as error:
        parser.error(str(error))
    args.extractors = extractor_specs(args.flow, args.depth, args.teacher, args.weights)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    with user_errors("python -m spokester_train.evaluation.evaluate"):
        result = evaluate(
            args.checkpoint,
            args.video,
            args.frames,
            cache_steps=args.cache_steps,
            num_steps=args.steps,
            window=args.window,
            start=args.start,
            seed=args.seed,
            label_root=args.labels,
            extractors=args.extractors,
            device=args.device,
            noise_correlation=args.noise_correlation,
            progress=not args.json,
            sheet=args.sheet,
            video_out=args.mp4,
            look=args.look,
            samples=args.samples,
        )
    if result["frames"] < args.frames:  # the clip ran out (or the count was cut to whole framelets)
        print(
            f"note: --frames {args.frames}: {Path(args.video).name} has {result['frames']} frames to evaluate from "
            f"--start {args.start} (the first frame has no flow; whole framelets only): evaluated {result['frames']}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key in FIGURES:
            print(f"{key:>19}: " + "  ".join(f"{k}={v}" for k, v in result[key].items()))
        print(f"{'real warp':>19}: {result['warp_error_real']}  ({result['frames']} frames of {Path(args.video).name})")
        blurs = "  ".join(f"sigma {k}: {v} dB" for k, v in result["psnr_real_blurred"].items())
        print(f"{'real blurred':>19}: {blurs}")
        if result["sample_mean"] is not None:
            mean = result["sample_mean"]
            figures = "  ".join(f"{k}={mean[k]}" for k in ("psnr", "psnr_colour_matched", "warp_error"))
            print(f"{'sample mean':>19}: {figures}  ({mean['samples']} seeds, cache_at_step {mean['cache_at_step']})")
    return result


if __name__ == "__main__":
    main()
