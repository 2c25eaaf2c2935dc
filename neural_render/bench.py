"""Benchmark of the streaming renderer: ms per framelet, frames/s, TFLOP/s, with and without the KV cache.

    python -m neural_render.bench                # tiny preset at 128x128 on the CPU (and CUDA if present)
    python -m neural_render.bench --preset base --size 320 --steps 12 --window 3 --device cuda --cuda-graph

"No cache" is the baseline a cache replaces: every denoising pass recomputes the whole window (the
context framelets' inputs are kept and run again with the new framelet under the window mask). The cached
run also reports the first-100 and last-100 framelet times and whether the cache's tensors stayed where
they were allocated, which is what constant memory and time per frame means here. `--cuda-graph` also
times the same renderer replaying CUDA graphs and prints its speed-up over eager; `--batch B` renders B
streams per forward pass (frames/s counts every stream). `--compile [MODE]` runs torch.compile (a mode from
`COMPILE_MODES`, e.g. max-autotune-no-cudagraphs). `--profile N` profiles N framelets of the last renderer
timed (the graphed one with --cuda-graph) and prints where the time goes: on CUDA the kernels' summed time
against the wall time (the gap is launch and host overhead) and the kernels that take most of it; on the CPU
the operators by self time. Weights are random: speed does not depend on them.

The renderer runs in bf16 where the device multiplies bf16 natively (`sampler.native_bf16`: CUDA, and CPUs
with AVX512-BF16 or AMX), as the wrapper and every command do; `--float32` times float32 instead.

`--game` times what a player or an agent gets instead: a Spokester game painted through
`NeuralRenderObservation` with a checkpoint (`--checkpoint`, default the shipped renderer; its camera, scene
and frame size), in frames/s of the game, against the same game stepped without the renderer in the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from neural_render.model import Renderer, RendererConfig, build_renderer
from neural_render.sampler import COMPILE_MODES, NUM_STEPS, StreamingRenderer
from spokester_env.commandline import CommandLine, at_least, device_option_or_all, user_errors

__all__ = [
    "BenchResult",
    "GameRate",
    "forward_flops",
    "bench_cached",
    "bench_uncached",
    "bench_game",
    "profile_framelets",
    "main",
]

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}
"""Dense bf16 tensor-core peaks by device-name fragment, for the 'of peak' figure on CUDA."""


@dataclass(frozen=True)
class BenchResult:
    """Per-framelet wall times (seconds) of one run and the matmul FLOPs of one framelet."""

    times: list[float]
    flops_per_framelet: float
    frames_per_framelet: int

    @property
    def ms(self) -> float:
        return 1000.0 * float(np.median(self.times))

    @property
    def fps(self) -> float:
        return self.frames_per_framelet * 1000.0 / self.ms

    @property
    def tflops(self) -> float:
        return self.flops_per_framelet / (self.ms / 1000.0) / 1e12


def forward_flops(config: RendererConfig, queries: int, keys: int) -> float:
    """Matmul FLOPs of one forward pass over `queries` tokens attending to `keys` tokens."""
    d, o = config.width, config.patch_frames * config.painted_patch**2 * config.channels
    i = config.patch_frames * config.embedded_patch**2 * config.channels  # what an embedder sees per token
    hidden = int(d * config.mlp_ratio)
    block = 2 * queries * (4 * d * d + 2 * d * hidden) + 4 * queries * keys * d
    adaln = 2 * queries * d * 6 * d * (1 if config.shared_adaln else config.num_blocks)
    ends = 2 * queries * (2 * i * d + 2 * d * d + d * o)  # embedders, final modulation and output layer
    return float(config.num_blocks * block + adaln + ends)


def _inputs(config: RendererConfig, seed: int = 0, batch: int = 1):
    rng = np.random.default_rng(seed)
    shape = (config.patch_frames, config.image_size, config.image_size)
    shape = shape if batch == 1 else (batch, *shape)
    depth = rng.uniform(0.0, 10.0, (*shape, 1)).astype(np.float32)
    flow = rng.normal(0.0, 4.0, (*shape, 2)).astype(np.float32)
    inputs = {"depth": depth, "flow": flow}
    return inputs | ({"cars": (depth > 8.0).astype(np.uint8)} if config.wants_cars else {})


def bench_cached(renderer: StreamingRenderer, framelets: int, warmup: int = 3) -> tuple[BenchResult, bool]:
    """Time `framelets` cached steps; also report whether the cache tensors never moved."""
    cfg, cache = renderer.config, renderer.cache
    inputs = _inputs(cfg, batch=renderer.batch_size)
    for _ in range(warmup):
        renderer.step(**inputs)
    pointers = [t.data_ptr() for t in (cache.keys, cache.values, cache.staged_keys, cache.staged_values)]
    times = []
    for _ in range(framelets):
        start = time.perf_counter()
        renderer.step(**inputs)
        times.append(time.perf_counter() - start)
    still = pointers == [t.data_ptr() for t in (cache.keys, cache.values, cache.staged_keys, cache.staged_values)]
    s, w = cfg.tokens_per_framelet, renderer.window
    passes = renderer.num_steps + (1 if renderer.cache_at_step is None else 0)
    b = renderer.batch_size
    return BenchResult(times, b * passes * forward_flops(cfg, s, w * s), b * cfg.patch_frames), still


@torch.no_grad()
def bench_uncached(renderer: StreamingRenderer, framelets: int, warmup: int = 2) -> BenchResult:
    """Time the baseline that reruns the whole window in every denoising pass (same steps, same model)."""
    model, cfg, window, b = renderer.network, renderer.config, renderer.window, renderer.batch_size
    inputs = {key: value[None] if b == 1 else value for key, value in _inputs(cfg, batch=b).items()}
    cond = renderer.stats.normalize(source=renderer.source, **inputs).to(renderer.device, renderer.dtype)
    context: list[tuple[torch.Tensor, float]] = []
    times = []
    for index in range(warmup + framelets):
        start = time.perf_counter()
        z = renderer.noise()
        kept = None
        for step, (t, t_next) in enumerate(zip(renderer.times[:-1], renderer.times[1:], strict=True)):
            xs = torch.cat([c[0] for c in context] + [z], dim=1)
            ts = torch.tensor([[c[1] for c in context] + [t]] * b, device=renderer.device, dtype=renderer.dtype)
            cs = cond.repeat(1, len(context) + 1, 1, 1, 1)
            with torch.autocast(renderer.device.type, dtype=torch.bfloat16, enabled=renderer.autocast):
                x_hat = model(xs, ts, cs, window=window)[:, -cfg.patch_frames :]
            if step == renderer.cache_at_step:
                kept = (z, t)
            z = renderer.diffusion.euler_step(z, x_hat.to(z.dtype), t, t_next)
        frames = z.clamp(-1, 1)
        context = (context + [kept or (frames, 1.0)])[-(window - 1) :] if window > 1 else []
        frames.cpu()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    s = cfg.tokens_per_framelet
    flops = b * renderer.num_steps * forward_flops(cfg, window * s, window * s)
    return BenchResult(times, flops, b * cfg.patch_frames)


@dataclass(frozen=True)
class ProfileRow:
    """One kernel (CUDA) or operator (CPU) name: its summed time and calls per framelet."""

    name: str
    us_per_framelet: float
    calls_per_framelet: float


def profile_framelets(renderer: StreamingRenderer, framelets: int) -> tuple[float, float, list[ProfileRow]]:
    """Profile `framelets` cached steps. Returns the wall time per framelet (us), the device time per
    framelet (us: summed CUDA kernel time, or on the CPU the summed self time of the operators) and the rows
    of that time, largest first."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = renderer.device.type == "cuda"
    inputs = _inputs(renderer.config, batch=renderer.batch_size)
    for _ in range(3):
        renderer.step(**inputs)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(framelets):
            renderer.step(**inputs)  # returns host frames: every framelet ends synchronised
        wall = (time.perf_counter() - start) / framelets * 1e6
    totals: dict[str, list[float]] = {}
    if cuda:
        for event in prof.events():
            if event.device_type == DeviceType.CUDA:
                row = totals.setdefault(event.name, [0.0, 0])
                row[0] += event.device_time
                row[1] += 1
    else:
        for event in prof.key_averages():
            if event.self_cpu_time_total > 0:
                totals[event.key] = [event.self_cpu_time_total, event.count]
    rows = [ProfileRow(name, us / framelets, calls / framelets) for name, (us, calls) in totals.items()]
    rows.sort(key=lambda row: -row.us_per_framelet)
    return wall, sum(row.us_per_framelet for row in rows), rows


def _profile_lines(renderer: StreamingRenderer, framelets: int, top: int = 15) -> list[str]:
    wall, busy, rows = profile_framelets(renderer, framelets)
    what = "CUDA kernels" if renderer.device.type == "cuda" else "CPU operators (self time)"
    calls = sum(row.calls_per_framelet for row in rows)
    lines = [
        f"  profile ({framelets} framelets): wall {wall / 1000:.2f} ms/framelet, {what} {busy / 1000:.2f} ms "
        f"({100 * busy / wall:.0f}% of wall), {calls:.0f} calls/framelet"
    ]
    for row in rows[:top]:
        name = row.name if len(row.name) <= 90 else row.name[:87] + "..."
        lines.append(
            f"    {row.us_per_framelet / 1000:7.3f} ms {100 * row.us_per_framelet / busy:5.1f}% "
            f"{row.calls_per_framelet:6.0f} calls  {name}"
        )
    return lines


@dataclass(frozen=True)
class GameRate:
    """Game frames per second painted through `NeuralRenderObservation`, and of the same game alone."""

    painted: float
    alone: float
    camera: str
    scene: str
    image_size: int
    num_steps: int
    """Euler steps per framelet the wrapper sampled with."""


def bench_game(checkpoint=None, *, steps: int, warmup: int = 3, device: str = "cpu", **options) -> GameRate:
    """Step a seeded game painted by `checkpoint` (None = the shipped renderer) through
    `NeuralRenderObservation` for `steps` wrapper steps (each a framelet of the game's frames) after `warmup`
    ones, then the same game without the renderer for as many frames; `options` go to the wrapper
    (window, num_steps, cache_at_step, ...). A crash restarts the ride, as it would for a player."""
    import gymnasium as gym

    import spokester_env
    from neural_render.checkpoint import load_renderer
    from neural_render.wrapper import NeuralRenderObservation

    loaded = load_renderer(checkpoint)
    game, size = loaded.game, loaded.model.config.image_size
    make = dict(width=size, height=size, camera=game["camera"], scene=game["scene"])

    def frames_per_second(env, count: int, frames_per_step: int) -> float:
        env.reset(seed=0)
        for _ in range(warmup):
            env.step(1)
        started = time.perf_counter()
        for index in range(count):
            _, _, crashed, ended, _ = env.step(index // 5 % 3)
            if crashed or ended:
                env.reset()
        return count * frames_per_step / (time.perf_counter() - started)

    painted_env = NeuralRenderObservation(gym.make(spokester_env.ENV_ID, **make), checkpoint, device=device, **options)
    try:
        painted = frames_per_second(painted_env, steps, painted_env.frames_per_step)
        frames = steps * painted_env.frames_per_step
        num_steps = painted_env.renderer.num_steps
    finally:
        painted_env.close()
    alone_env = gym.make(spokester_env.ENV_ID, **make)
    try:
        alone = frames_per_second(alone_env, frames, 1)
    finally:
        alone_env.close()
    return GameRate(painted, alone, game["camera"], game["scene"], size, num_steps)


def _peak(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def _renderer(model: Renderer, args: argparse.Namespace, device: torch.device, **options) -> StreamingRenderer:
    return StreamingRenderer(
        model,
        window=args.window,
        num_steps=args.steps,
        cache_at_step=args.cache_at_step,
        batch_size=args.batch,
        device=device,
        compile=args.compile,
        autocast=False if args.float32 else None,
        **options,
    )


def _cached_line(label: str, renderer: StreamingRenderer, result: BenchResult, still: bool, peak) -> str:
    of_peak = f" ({100 * result.tflops / peak:.1f}% of {peak:.0f})" if peak else ""
    first, last = result.times[:100], result.times[-100:]
    cache = renderer.cache
    return (
        f"  {label:<9} {result.ms:8.2f} ms/framelet {result.fps:8.1f} frames/s {result.tflops:7.3f} TFLOP/s{of_peak}"
        f"  [{len(result.times)} framelets; median first 100 {1000 * np.median(first):.2f} ms, "
        f"last 100 {1000 * np.median(last):.2f} ms; cache tensors never moved: {still}; "
        f"cache {(cache.keys.nbytes * 2 + cache.staged_keys.nbytes * 2) / 2**20:.2f} MiB]"
    )


def run(args: argparse.Namespace, device: torch.device) -> None:
    """Benchmark one device and print the figures."""
    overrides = {"image_size": args.size} if args.size else {}
    model: Renderer = build_renderer(args.preset, **overrides)
    renderer = _renderer(model, args, device)
    cfg = model.config
    params = sum(p.numel() for p in model.parameters()) / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"[{device}: {name}] preset {args.preset} ({params:.1f}M parameters), {cfg.image_size}x{cfg.image_size}, "
        f"{cfg.patch_frames} frames per framelet, {args.steps} steps, window {args.window}, "
        f"cache_at_step {args.cache_at_step}, {args.batch} stream(s), "
        f"{'bf16 autocast' if renderer.autocast else 'float32'}"
        f"{f', torch.compile ({args.compile})' if args.compile else ''}"
    )
    peak = _peak(device, args.peak_tflops)
    cached, still = bench_cached(renderer, args.framelets)
    print(_cached_line("cached:", renderer, cached, still, peak), flush=True)
    graphed = None
    if args.cuda_graph:
        if device.type != "cuda":
            print("  cuda graph: needs a CUDA device, skipped")
        else:
            graphed = _renderer(model, args, device, cuda_graph=True)
            replayed, still = bench_cached(graphed, args.framelets)
            print(_cached_line("graphed:", graphed, replayed, still, peak), flush=True)
            print(f"  cuda graph speed-up over eager: {cached.ms / replayed.ms:.2f}x", flush=True)
    renderer.reset(0)
    baseline = bench_uncached(renderer, args.baseline_framelets)
    print(
        f"  no cache: {baseline.ms:8.2f} ms/framelet {baseline.fps:8.1f} frames/s "
        f"{baseline.tflops:7.3f} TFLOP/s  [{len(baseline.times)} framelets]"
    )
    print(f"  cache speed-up: {baseline.ms / cached.ms:.2f}x")
    if args.profile:
        renderer.reset(0)
        profiled = graphed if graphed is not None else renderer
        print("\n".join(_profile_lines(profiled, args.profile)), flush=True)


def run_game(args: argparse.Namespace, device: torch.device) -> None:
    """Time a game through the observation wrapper on one device and print the figures."""
    options = dict(window=args.window, num_steps=args.steps, cache_at_step=args.cache_at_step)
    rate = bench_game(args.checkpoint, steps=args.framelets, device=str(device), **options)
    name = args.checkpoint or "the shipped renderer"
    print(
        f"[{device}] {name}: {rate.image_size}x{rate.image_size}, {rate.camera} camera, {rate.scene} scene, "
        f"{rate.num_steps} steps, window {args.window}, cache_at_step {args.cache_at_step}\n"
        f"  through NeuralRenderObservation: {rate.painted:8.1f} frames/s  [{args.framelets} wrapper steps]\n"
        f"  the game alone:                  {rate.alone:8.1f} frames/s",
        flush=True,
    )


def _step_or_none(text: str) -> int | None:
    """An argparse `type` for --cache-at-step: a denoising step index >= 0, or "none"."""
    return None if text.lower() == "none" else at_least(0)(text)


_step_or_none.__name__ = "int"  # argparse names the type in its messages


def main(argv: list[str] | None = None) -> None:
    parser = CommandLine(prog="python -m neural_render.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=at_least(1), default=None, help="frame side in pixels (default: the preset's)")
    steps_help = f"Euler steps per framelet (default: {NUM_STEPS}; with --game, the checkpoint's)"
    parser.add_argument("--steps", type=at_least(1), default=None, help=steps_help)
    parser.add_argument("--window", type=at_least(1), default=3)
    parser.add_argument("--cache-at-step", type=_step_or_none, default=None, metavar="K|none")
    parser.add_argument("--framelets", type=at_least(1), default=300, help="cached framelets to time")
    parser.add_argument("--baseline-framelets", type=at_least(1), default=30, help="uncached framelets to time")
    parser.add_argument(
        "--device", type=device_option_or_all, default="all", help="cpu, cuda, or all (cpu, then cuda when present)"
    )
    parser.add_argument("--batch", type=at_least(1), default=1, help="streams rendered together")
    parser.add_argument(
        "--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES, metavar="MODE",
        help=f"torch.compile the model (MODE: {', '.join(COMPILE_MODES)}; default: default)",
    )  # fmt: skip
    parser.add_argument("--profile", type=at_least(0), default=0, metavar="N", help="profile N framelets (see above)")
    parser.add_argument("--cuda-graph", action="store_true", help="also time CUDA-graph replay (CUDA only)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the 'of peak' figure")
    parser.add_argument(
        "--float32", action="store_true",
        help="render in float32 even where bf16 is native (sampler.native_bf16): the default's baseline",
    )  # fmt: skip
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--game", action="store_true",
        help="time a game through NeuralRenderObservation (--framelets wrapper steps) instead of the bare renderer",
    )  # fmt: skip
    parser.add_argument("--checkpoint", default=None, help="with --game: a renderer checkpoint (default: shipped)")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.game:
        parser.error("--checkpoint: only with --game (the bare renderer is timed with random weights of --preset)")
    if args.steps is None and not args.game:  # with --game, None = the checkpoint's
        args.steps = NUM_STEPS
    with user_errors(parser.prog):
        if args.threads:
            torch.set_num_threads(args.threads)
        devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
        for name in devices:
            if name == "cuda" and not torch.cuda.is_available():
                print("[cuda] not available")
                continue
            (run_game if args.game else run)(args, torch.device(name))


if __name__ == "__main__":
    main()
