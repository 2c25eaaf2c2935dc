"""StreamingRenderer: turns the game's depth and flow into frames, one framelet at a time, in constant
memory and time per framelet.

Each `step` denoises one framelet with `num_steps` Euler steps. Every pass attends to the KV cache, which
holds the keys/values of the last `window - 1` framelets (the context) plus the framelet being made; the
context framelets were written when they were made, so no pass ever recomputes them.

Which keys/values become context (`cache_at_step`):
    None: after the last step, one more pass of the finished framelet (clipped to [-1, 1]) at t = 1
        (clean) writes the context; this is what a model trained with clean context expects. Costs
        num_steps + 1 passes per framelet.
    k (0 <= k < num_steps): the keys/values of denoising step k (input z_k at time t_k) are kept; no extra
        pass. The seed's best is about half of the steps (e.g. 6 of 12): its context is still a little
        noisy, which hides the model's own artefacts from the next framelets.
Either way, the frames equal what the masked parallel forward pass (`Renderer.forward` with the same
window) gives on the sequence of context inputs, which is what the tests check.

Noise (`noise_correlation` = rho): each framelet starts from noise, and a stream's consecutive framelets draw
correlated noise, z_n = rho z_(n-1) + sqrt(1 - rho^2) e_n (each z_n still standard normal). With independent
noise (rho = 0) every framelet is a different sample and the picture jumps where a framelet starts: on the
held-out clip the shipped default's mean |frame difference| across a framelet boundary was 1.71 x that
within a framelet; with rho = 0.95 it is 1.12, the warp error falls from 5.13 to 4.11 and PSNR is
unchanged (20.13 dB; cache_at_step 6). rho = 1 (the same noise every framelet) gives 1.08 but a pattern
that never moves. A reset of a stream (a new episode) starts its noise afresh.

CUDA graphs (`cuda_graph=True`, CUDA only): a framelet is num_steps (+1) passes of a dozen blocks, a few
thousand small kernel launches, and at 320x320 one pass is too little work to hide their launch cost. Once
every stream's window is full (no key mask), the whole denoising of one framelet (all passes, Euler steps,
the staging of the cached step) is captured once and replayed for every framelet: the cache addresses its
write slot through a device index tensor, so one graph serves every ring slot. Inputs are copied into
static buffers; noise is still drawn from each stream's own generator, outside the graph. Framelets made
while a window is filling (after a reset) run eagerly; the frames are the same.

Legend: B environments (batch), F frames per framelet, H/W frame height/width.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence

import numpy as np
import torch

from neural_render.conditioning import ConditionStats
from neural_render.diffusion import FlowMatching
from neural_render.layout import to_uint8
from neural_render.model import ANY_LOOK, Renderer

__all__ = ["StreamingRenderer", "COMPILE_MODES", "NOISE_CORRELATION", "NUM_STEPS", "native_bf16"]

NUM_STEPS = 12
"""Euler steps per framelet when neither the caller nor the renderer's checkpoint (its "sampling") says."""

NOISE_CORRELATION = 0.95
"""Correlation of a stream's consecutive framelet noises (see the module docstring for the measurement)."""

COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
"""torch.compile modes `compile=` accepts. "max-autotune-no-cudagraphs" also benchmarks matmul kernels
(slower to compile); the last two capture CUDA graphs of their own, so they do not mix with cuda_graph=True."""


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 matmuls run natively on `device`: on CUDA, and on a CPU with AVX512-BF16 or AMX. Elsewhere
    oneDNN emulates them, slower than float32. The speed-ups and the unchanged figures measured on this
    project's CPU are in the README ("bf16 on the CPU")."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes (private names)
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _bf16_copy(model: Renderer) -> Renderer:
    """A bf16 copy of the network for autocast inference (its matmuls would cast to bf16 anyway)."""
    return copy.deepcopy(model).to(torch.bfloat16).eval()


class StreamingRenderer:
    """Renders framelets of depth+flow into uint8 frames for one or `batch_size` streams at once.

    Arguments:
        model: a Renderer; it is moved to `device`/`dtype` and put in eval mode.
        stats: condition statistics (from the checkpoint); None = identity statistics, for untrained models.
        source: which source's statistics normalise the inputs ("game" for the game).
        window: framelets each framelet sees, itself included (>= 1).
        num_steps: Euler steps per framelet (a checkpoint says how many it is meant for:
            `load_renderer(...).num_steps`).
        cache_at_step: None or a step index whose keys/values become context; see the module docstring.
        batch_size: number of streams (environments) rendered together.
        seed: seed of stream 0 (stream j gets seed + j); each stream has its own torch.Generator.
        noise_correlation: correlation rho in [0, 1] of a stream's consecutive framelet noises (0 = independent
            noise, as in training; see the module docstring).
        device, dtype: where and in which precision the model runs.
        autocast: bf16 autocast; None = for a float32 `dtype` where bf16 matmuls are native (`native_bf16`:
            CUDA, and CPUs with AVX512-BF16 or AMX), `dtype` throughout elsewhere. With autocast the passes run
            a bf16 copy of the network (made once; `model` itself is not changed).
        compile: wrap the network in torch.compile (CUDA mostly; the first framelets are slow): True for
            torch's default mode, or one of COMPILE_MODES.
        cuda_graph: capture and replay each framelet's denoising as a CUDA graph (see the module docstring).
        look: the look every stream paints, one of the network's (`RendererConfig.looks`; a checkpoint names the
            one it is meant for: `load_renderer(...).look`), or `ANY_LOOK`.

    Attributes: `model` is the network as given (moved to `device`/`dtype`); `network` is what the passes
    run: `model` itself, or its bf16 copy under autocast.
    """

    def __init__(
        self,
        model: Renderer,
        *,
        stats: ConditionStats | None = None,
        source: str = "game",
        window: int = 3,
        num_steps: int = NUM_STEPS,
        cache_at_step: int | None = None,
        batch_size: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        autocast: bool | None = None,
        compile: bool | str = False,
        cuda_graph: bool = False,
        noise_correlation: float = NOISE_CORRELATION,
        look: str = ANY_LOOK,
    ):
        row = model.config.look_index(look)  # a ValueError naming the looks there are
        if not 0.0 <= noise_correlation <= 1.0:
            raise ValueError(f"noise_correlation must lie in [0, 1], got {noise_correlation}")
        if cache_at_step is not None and not 0 <= cache_at_step < num_steps:
            raise ValueError(f"cache_at_step must be None or in [0, num_steps={num_steps}), got {cache_at_step}")
        mode = "default" if compile is True else compile or None
        if mode is not None and mode not in COMPILE_MODES:
            raise ValueError(f"compile={compile!r}: choose True, False or one of {', '.join(COMPILE_MODES)}")
        if cuda_graph and mode in COMPILE_MODES[2:]:
            raise ValueError(
                f"compile={mode!r} captures CUDA graphs of its own; with cuda_graph=True use "
                f"{COMPILE_MODES[0]!r} or {COMPILE_MODES[1]!r}"
            )
        self.device = torch.device(device)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device, got device={str(self.device)!r}")
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.config = model.config
        self.stats = stats if stats is not None else ConditionStats.unit(source)
        if source not in self.stats.sources:
            raise ValueError(f"statistics have no source {source!r}; have {sorted(self.stats.sources)}")
        self.source = source
        self.window = window
        self.num_steps = num_steps
        self.cache_at_step = cache_at_step
        self.batch_size = batch_size
        self.dtype = dtype
        self.autocast = native_bf16(self.device) and dtype == torch.float32 if autocast is None else autocast
        self.diffusion = FlowMatching.for_config(self.config)
        self.times = self.diffusion.time_grid(num_steps).tolist()
        cache_dtype = torch.bfloat16 if self.autocast else dtype
        self.cache = model.new_cache(batch_size=batch_size, window=window, device=self.device, dtype=cache_dtype)
        self.generators = [torch.Generator(device=self.device) for _ in range(batch_size)]
        self.noise_correlation = float(noise_correlation)
        self._previous_noise: torch.Tensor | None = None  # (B, F, H, W, 3), the last framelet's
        self._noise_goes_on = np.zeros(batch_size, dtype=bool)  # which streams continue their noise
        # Under bf16 autocast every matmul casts its fp32 weights to bf16; with a captured graph or a compiled
        # model (no autocast weight cache) that happens in every pass. A bf16 copy of the network, made once,
        # computes the same products without re-reading and re-writing all the weights each pass. The fp32
        # `self.model` (the caller's module) is left as it was.
        self.network = _bf16_copy(self.model) if self.autocast and dtype == torch.float32 else self.model
        self.compile_mode = mode
        self._forward = torch.compile(self.network, dynamic=False, mode=mode) if mode else self.network
        self.look = look
        self._look = None if row < 0 else torch.full((batch_size,), row, device=self.device, dtype=torch.long)
        self.cuda_graph = cuda_graph
        self._graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.graph_captures = 0
        self.reset(seed)

    def reset(self, seed: int | Sequence[int] | None = None, *, slots: Sequence[int] | None = None) -> None:
        """Forget the context of the streams in `slots` (None = all) and reseed their noise: an int seed
        gives the k-th listed stream seed + k, a sequence gives one seed per stream, None keeps each
        stream's noise going."""
        slots = list(range(self.batch_size)) if slots is None else list(slots)
        self.cache.reset(slots)
        self._noise_goes_on[slots] = False
        if seed is None:
            return
        seeds = [seed + k for k in range(len(slots))] if isinstance(seed, int) else list(seed)
        if len(seeds) != len(slots):
            raise ValueError(f"got {len(seeds)} seeds for {len(slots)} streams")
        for slot, value in zip(slots, seeds, strict=True):
            self.generators[slot].manual_seed(int(value))

    def _condition(self, depth, flow, cars=None) -> torch.Tensor:
        """Normalised condition (B, F, H, W, k) on the device, from inputs with or without the B axis; `cars`, the
        car mask (as depth), is for a network that wants it (`RendererConfig.wants_cars`) and no other."""
        cfg = self.config
        frame = (cfg.patch_frames, cfg.image_size, cfg.image_size)
        if cfg.wants_cars != (cars is not None):
            said = "this renderer paints from a car mask too: give cars=" if cfg.wants_cars else "no car mask"
            raise ValueError(f"{said} (its condition has {cfg.cond_channels} channels)")
        depth = torch.as_tensor(depth).to(self.device)
        flow = torch.as_tensor(flow).to(self.device)
        cars = None if cars is None else torch.as_tensor(cars).to(self.device)
        if depth.ndim == 4:
            depth, flow = depth[None], flow[None]
            cars = None if cars is None else cars[None]
        expected = (self.batch_size, *frame)
        shapes_ok = tuple(depth.shape) == (*expected, 1) and tuple(flow.shape) == (*expected, 2)
        if not shapes_ok or (cars is not None and tuple(cars.shape) != (*expected, 1)):
            lead = "(F, H, W, *)" if self.batch_size == 1 else "(B, F, H, W, *)"
            given = {"depth": depth, "flow": flow} | ({} if cars is None else {"cars": cars})
            names, channels = " and ".join(given), " and ".join(("(1,)", "(2,)", "(1,)")[: len(given)])
            got = " and ".join(str(tuple(value.shape)) for value in given.values())
            raise ValueError(f"need {names} of shape {lead} = {expected} + {channels}, got {got}")
        return self.stats.normalize(depth, flow, self.source, cars).to(self.dtype)

    def noise(self) -> torch.Tensor:
        """The noise of the next framelet of every stream (B, F, H, W, 3): fresh draws from each stream's own
        generator, correlated with the stream's last framelet's noise where its stream goes on."""
        cfg = self.config
        shape = (cfg.patch_frames, cfg.image_size, cfg.image_size, cfg.channels)
        draws = [torch.randn(shape, generator=g, device=self.device, dtype=self.dtype) for g in self.generators]
        fresh = torch.stack(draws)
        rho = self.noise_correlation
        if self._previous_noise is None or rho == 0.0 or not self._noise_goes_on.any():
            return fresh
        goes_on = torch.from_numpy(self._noise_goes_on).to(self.device)[:, None, None, None, None]
        correlated = rho * self._previous_noise + math.sqrt(1.0 - rho * rho) * fresh
        return torch.where(goes_on, correlated, fresh)

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        # A captured graph must not rely on autocast's weight-cast cache, which is freed when the context ends.
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.cuda_graph)

    def _denoise(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """All passes of one framelet between `cache.begin()` and `cache.commit()`: device work only, so
        that it can be captured as a CUDA graph. Returns the frames (B, F, H, W, 3) in [-1, 1]."""
        batch = cond.shape[0]
        with self._autocast():
            shape = (batch, 1, self.config.tokens_per_framelet)
            tokens = self.network.embed_condition(cond, None, shape)  # (B, 1, s, d): once for every pass
            for index, (t, t_next) in enumerate(zip(self.times[:-1], self.times[1:], strict=True)):
                time = torch.full((batch, 1), t, device=self.device, dtype=self.dtype)
                x_hat = self._forward(z, time, cond, cache=self.cache, cond_tokens=tokens, look=self._look)
                if index == self.cache_at_step:
                    self.cache.stage()
                z = self.diffusion.euler_step(z, x_hat.to(self.dtype), t, t_next)
            frames = z.clamp(-1.0, 1.0)
            if self.cache_at_step is None:
                clean = torch.ones((batch, 1), device=self.device, dtype=self.dtype)
                self._forward(frames, clean, cond, cache=self.cache, cond_tokens=tokens, look=self._look)
        if self.cache_at_step is not None and self.cache_at_step < self.num_steps - 1:
            self.cache.restore_staged()
        return frames

    def _replay(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`_denoise` through the captured CUDA graph, capturing it on first use."""
        if self._graph is None:
            static_z, static_cond = z.clone(), cond.clone()
            # Warm up on a side stream (this pass writes only the slot being made, as the replay will),
            # then capture; the replay below recomputes that slot from the same inputs.
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._denoise(static_z, static_cond)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                frames = self._denoise(static_z, static_cond)
            self._graph = (graph, static_z, static_cond, frames)
            self.graph_captures += 1
        graph, static_z, static_cond, frames = self._graph
        static_z.copy_(z)
        static_cond.copy_(cond)
        graph.replay()
        return frames.clone()

    @torch.no_grad()
    def step_tensor(self, depth, flow, cars=None, *, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Render the next framelet of every stream as a float tensor (B, F, H, W, 3) in [-1, 1]."""
        cond = self._condition(depth, flow, cars)  # (B, F, H, W, k)
        z = self.noise() if noise is None else noise.to(device=self.device, dtype=self.dtype)
        self._previous_noise = z
        self._noise_goes_on[:] = True
        self.cache.begin()
        if self.cuda_graph and self.cache.key_mask() is None:
            frames = self._replay(z, cond)
        else:
            frames = self._denoise(z, cond)
        self.cache.commit()
        return frames

    def step(
        self, depth: np.ndarray, flow: np.ndarray, cars: np.ndarray | None = None, *, noise: torch.Tensor | None = None
    ) -> np.ndarray:
        """Render the next framelet: depth (F, H, W, 1) and flow (F, H, W, 2) float32 (with a leading B axis
        for several streams), and for a renderer that wants it (`RendererConfig.wants_cars`) the car mask `cars`
        (F, H, W, 1) (the game's `cars` observation), give uint8 frames (F, H, W, 3) (or (B, F, H, W, 3))."""
        frames = to_uint8(self.step_tensor(depth, flow, cars, noise=noise)).cpu().numpy()
        return frames if np.ndim(depth) == 5 else frames[0]
