"""Benchmark of one training step of a preset: steps/s, clips/s, peak memory, TFLOP/s, and what the whole
curriculum would take at that rate.

    python -m spokester_train.recipe.bench                                   # cpu-tiny on the CPU
    python -m spokester_train.recipe.bench --preset gpu-base --attention sdpa flex --compile

Each stage of the preset is timed with synthetic clips of its shape (frames in [-1, 1], a normal condition,
random teacher features) through the very step the loop runs (`spokester_train.recipe.optimizer_step`: augmentation,
diffusion-forcing loss under bf16 autocast on CUDA (on the CPU too with --bf16), iREPA, backward,
clipping, AdamW, EMA), so data loading is left out: this is the model's ceiling, and a real run adds the time to
read clips from the label stores.
Under torchrun (`torchrun --nproc_per_node N -m spokester_train.recipe.bench ...`) each stage is timed once as
one plain process on the whole batch and once as N DistributedDataParallel processes on their shares, with
the steps/s of each process, the total and the scaling efficiency.
TFLOP/s counts the matmul FLOPs the window lets through (3 x the forward pass); a dense mask computes every
key anyway, so its achieved rate on useful work drops as clips grow.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import torch

from neural_render import FlowMatching, build_renderer
from neural_render.bench import PEAK_BF16_TFLOPS, forward_flops
from spokester_env.commandline import CommandLine, at_least, device_option
from spokester_train.data.batches import batch_share
from spokester_train.recipe.config import TRAIN_PRESETS, Stage, TrainConfig, irepa_layer, make_config
from spokester_train.recipe.distributed import Ranks, join
from spokester_train.recipe.irepa import TEACHER_CHANNELS, TEACHER_GRID, Projector
from spokester_train.recipe.optimizer_step import apply_update, clip_generators, make_optimizer, step_loss, uses_bf16

__all__ = ["StageTiming", "training_flops", "time_stage", "main"]


@dataclasses.dataclass(frozen=True)
class StageTiming:
    """Median seconds per optimiser step of one stage, with its FLOPs and peak device memory."""

    stage: Stage
    attention: str
    seconds: float
    flops: float
    peak_gib: float | None

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.seconds

    @property
    def tflops(self) -> float:
        return self.flops / self.seconds / 1e12

    @property
    def stage_hours(self) -> float:
        return self.stage.steps * self.seconds / 3600.0


def training_flops(config, stage: Stage, window: int | None) -> float:
    """Matmul FLOPs of one optimiser step: 3 x the forward pass of every clip over the keys its window allows."""
    n = stage.clip_frames // config.patch_frames
    s = config.tokens_per_framelet
    seen = [min(i + 1, window) if window is not None else i + 1 for i in range(n)]  # framelets each one sees
    keys = s * sum(seen) / n  # mean keys per query token
    return 3.0 * stage.batch_size * forward_flops(config, n * s, keys)


def _batch(config, stage: Stage, irepa: bool, device: torch.device, generator: torch.Generator) -> dict:
    shape = (stage.batch_size, stage.clip_frames, stage.image_size, stage.image_size, 3)
    batch = {
        "x": torch.rand(shape, generator=generator, device=device) * 2 - 1,
        "cond": torch.randn(shape, generator=generator, device=device),
    }
    if irepa:
        teacher = (stage.batch_size, stage.clip_frames, *TEACHER_GRID, TEACHER_CHANNELS)
        batch["teacher"] = torch.rand(teacher, generator=generator, device=device).to(torch.float16)
    return batch


def time_stage(
    config: TrainConfig, stage: Stage, *, steps: int, warmup: int, ranks: Ranks | None = None
) -> StageTiming:
    """Time `steps` optimiser steps of `stage` (after `warmup` untimed ones, which include compiling); with
    `ranks` of a distributed run, this process's DistributedDataParallel step on its share of the batch."""
    ranks = ranks or Ranks()
    device = ranks.device(config.device)
    rows = batch_share(stage.batch_size, ranks.rank, ranks.world_size)
    size, overrides = stage.image_size, config.renderer_overrides
    model = build_renderer(config.renderer_preset, device=device, image_size=size, **overrides)
    model.attention = config.attention
    model.checkpoint_activations = stage.checkpoint_activations
    layer = irepa_layer(config, model.config.num_blocks)
    projector = Projector(model.config.width, model.config.patch_frames, TEACHER_CHANNELS) if config.irepa else None
    projector = projector.to(device) if projector is not None else None
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = make_optimizer(model, projector, config)
    forward = ranks.wrap(model, device)
    forward = torch.compile(forward) if config.compile else forward
    projector_step = ranks.wrap(projector, device)
    diffusion = FlowMatching.for_config(model.config)
    generator = torch.Generator(device).manual_seed(0)
    batch = _batch(model.config, dataclasses.replace(stage, batch_size=len(rows)), config.irepa, device, generator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        generators = clip_generators(0, index, rows, device)
        loss, _ = step_loss(
            forward, model, diffusion, batch, config, clip=4.0, generators=generators, projector=projector_step,
            layer=layer,
        )  # fmt: skip
        apply_update(loss * (len(rows) * ranks.world_size / stage.batch_size), index, optimizer, model, ema, config)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    flops = training_flops(model.config, stage, config.window)
    return StageTiming(stage, config.attention, times[len(times) // 2], flops, peak)


def _line(timing: StageTiming, peak_tflops: float | None) -> str:
    st = timing.stage
    of_peak = f" ({100 * timing.tflops / peak_tflops:.1f}% of {peak_tflops:.0f})" if peak_tflops else ""
    memory = f", peak {timing.peak_gib:.1f} GiB" if timing.peak_gib is not None else ""
    return (
        f"  {st.image_size}^2 x {st.clip_frames} frames x batch {st.batch_size}, {timing.attention}"
        f"{', recompute' if st.checkpoint_activations else ''}: "
        f"{1000 * timing.seconds:9.1f} ms/step {timing.steps_per_s:7.2f} steps/s "
        f"{st.batch_size * timing.steps_per_s:7.1f} clips/s {timing.tflops:7.2f} TFLOP/s{of_peak}{memory}; "
        f"{st.steps} steps = {timing.stage_hours:.2f} h"
    )


def main(argv: list[str] | None = None) -> None:
    parser = CommandLine(prog="python -m spokester_train.recipe.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-tiny", choices=sorted(TRAIN_PRESETS))
    parser.add_argument("--stage", default="all", help="stage index to time, or all")
    parser.add_argument("--steps", type=at_least(1), default=10, help="timed steps per stage")
    parser.add_argument("--warmup", type=at_least(0), default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--attention", nargs="+", default=None, choices=("sdpa", "flex"), help="backends to time")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile")
    parser.add_argument("--no-irepa", action="store_true", help="time the step without the iREPA loss")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU too (default: CUDA only)")
    parser.add_argument("--device", type=device_option, default=None, help="torch device (default: the preset's)")
    parser.add_argument("--size", type=at_least(1), default=None, help="override every stage's frame side")
    parser.add_argument("--clip-frames", type=at_least(1), default=None, help="override every stage's clip length")
    parser.add_argument("--batch", type=at_least(1), default=None, help="override every stage's batch size")
    parser.add_argument("--checkpoint-activations", action=argparse.BooleanOptionalAction, default=None,
                        help="override every stage's activation checkpointing")  # fmt: skip
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"progress": False, "irepa": not args.no_irepa}
    overrides |= {"device": args.device} if args.device else {}
    overrides |= {"compile": args.compile} if args.compile is not None else {}
    overrides |= {"autocast": True} if args.bf16 else {}
    try:
        config = make_config(args.preset, **overrides)
        for attention in args.attention or []:
            dataclasses.replace(config, attention=attention)  # validates the backend for the device
    except ValueError as error:
        parser.error(str(error))
    changes = {"image_size": args.size, "clip_frames": args.clip_frames, "batch_size": args.batch,
               "checkpoint_activations": args.checkpoint_activations}  # fmt: skip
    changes = {k: v for k, v in changes.items() if v is not None}
    stages = [dataclasses.replace(stage, **changes) for stage in config.stages]
    if args.stage != "all":
        if not args.stage.isdigit() or int(args.stage) >= len(stages):
            parser.error(f"--stage {args.stage}: choose all or an index below {len(stages)}")
        stages = [stages[int(args.stage)]]
    ranks = join(config.device)
    device = ranks.device(config.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((p for key, p in PEAK_BF16_TFLOPS.items() if key in name), None) if device.type == "cuda" else None
    if ranks.main:
        print(
            f"[{device}: {name}] training preset {args.preset} ({config.renderer_preset} renderer), "
            f"irepa {config.irepa}, window {config.window}, {'torch.compile' if config.compile else 'eager'}, "
            f"{'bf16 autocast' if uses_bf16(config, device) else 'float32'}; "
            f"{args.steps} timed steps after {args.warmup}",
            flush=True,
        )
    if ranks.distributed:
        _distributed(config, stages, args, ranks, peak)
        return
    for stage in stages:
        baseline = None
        for attention in args.attention or [config.attention]:
            try:
                timing = time_stage(dataclasses.replace(config, attention=attention), stage, steps=args.steps,
                                    warmup=args.warmup)  # fmt: skip
            except torch.cuda.OutOfMemoryError:
                print(f"  {stage.image_size}^2 x {stage.clip_frames} frames x batch {stage.batch_size}, "
                      f"{attention}: out of device memory", flush=True)  # fmt: skip
                torch.cuda.empty_cache()
                continue
            ratio = f" [{baseline.seconds / timing.seconds:.2f}x {baseline.attention}]" if baseline else ""
            print(_line(timing, peak) + ratio, flush=True)
            baseline = baseline or timing
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _distributed(config: TrainConfig, stages: list[Stage], args, ranks: Ranks, peak: float | None) -> None:
    """Under torchrun: per stage, process 0 alone times the plain one-process step on the whole batch (the
    others wait), then every process times its DDP step on its share; process 0 prints each process's rate,
    the total and the scaling efficiency (N processes' clips/s over N x one process's)."""
    device = ranks.device(config.device)
    try:
        for stage in stages:
            single = time_stage(config, stage, steps=args.steps, warmup=args.warmup) if ranks.main else None
            ranks.barrier()
            timing = time_stage(config, stage, steps=args.steps, warmup=args.warmup, ranks=ranks)
            mine = [timing.seconds if r == ranks.rank else 0.0 for r in range(ranks.world_size)]
            seconds = ranks.sum(mine, device)
            if not ranks.main:
                continue
            print(_line(single, peak) + " [one process]", flush=True)
            slowest = max(seconds)  # every process waits for the slowest in the gradient all-reduce
            per_rank = " ".join(f"{1 / s:.2f}" for s in seconds)
            efficiency = single.seconds / (ranks.world_size * slowest)
            print(
                f"  torchrun, {ranks.world_size} processes: {1000 * slowest:9.1f} ms/step, steps/s per process "
                f"[{per_rank}], total {1 / slowest:.2f} steps/s = {stage.batch_size / slowest:.1f} clips/s; "
                f"scaling efficiency {100 * efficiency:.0f}%",
                flush=True,
            )
        ranks.barrier()  # the processes leave together (`Ranks.leave`)
    finally:
        ranks.leave()


if __name__ == "__main__":
    main()
