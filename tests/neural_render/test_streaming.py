"""The KV-cached streaming path against the masked parallel forward pass, and the sampler's contracts."""

import numpy as np
import pytest
import torch

from neural_render import ConditionStats, FlowMatching, StreamingRenderer, build_renderer

from .conftest import randomize


def _random_video(cfg, batch, framelets, generator):
    shape = (batch, framelets * cfg.patch_frames, cfg.image_size, cfg.image_size, 3)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _framelet(video, index, frames):
    return video[:, index * frames : (index + 1) * frames]


@pytest.mark.parametrize("window", [1, 2, 3, 4])
@pytest.mark.parametrize("keep", ["last", "staged"])
def test_cached_passes_equal_masked_parallel_pass(tiny_model, window, keep):
    """Framelet by framelet through the ring buffer (7 framelets: it wraps), each framelet's output and
    the context it leaves equal the parallel pass with the same window mask."""
    cfg, f, n, b = tiny_model.config, tiny_model.config.patch_frames, 7, 2
    generator = torch.Generator().manual_seed(1)
    x, cond, junk = (_random_video(cfg, b, n, generator) for _ in range(3))
    t = torch.rand(b, n, generator=generator, dtype=torch.float64)
    parallel = tiny_model(x, t, cond, window=window)

    cache = tiny_model.new_cache(batch_size=b, window=window)
    outputs = []
    for j in range(n):
        cache.begin()
        piece = (_framelet(x, j, f), t[:, j : j + 1], _framelet(cond, j, f))
        if keep == "last":  # an earlier pass of this framelet must be overwritten by the last one
            tiny_model(_framelet(junk, j, f), t[:, j : j + 1], piece[2], cache=cache)
            outputs.append(tiny_model(*piece, cache=cache))
            cache.commit()
        else:  # the staged pass must become the context, not the later one
            outputs.append(tiny_model(*piece, cache=cache))
            cache.stage()
            tiny_model(_framelet(junk, j, f), t[:, j : j + 1], piece[2], cache=cache)
            cache.restore_staged()
            cache.commit()
    torch.testing.assert_close(torch.cat(outputs, dim=1), parallel)
    if window < n:  # the window really limits what is seen
        assert not torch.allclose(tiny_model(x, t, cond, window=None), parallel)


def _reference_stream(model, conds, noises, *, window, num_steps, cache_at_step):
    """The streaming sampler rebuilt from parallel passes over the whole history (no cache at all)."""
    diffusion = FlowMatching.for_config(model.config)
    grid = diffusion.time_grid(num_steps).tolist()
    f, history, outputs = model.config.patch_frames, [], []
    for cond, z in zip(conds, noises, strict=True):
        b, kept = z.shape[0], None
        for index, (t, t_next) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
            xs = torch.cat([h[0] for h in history] + [z], dim=1)
            ts = torch.cat([h[1] for h in history] + [torch.full((b, 1), t, dtype=z.dtype)], dim=1)
            cs = torch.cat([h[2] for h in history] + [cond], dim=1)
            x_hat = model(xs, ts, cs, window=window)[:, -f:]
            if index == cache_at_step:
                kept = (z, torch.full((b, 1), t, dtype=z.dtype))
            z = diffusion.euler_step(z, x_hat, t, t_next)
        frames = z.clamp(-1, 1)
        history.append((*(kept or (frames, torch.ones(b, 1, dtype=z.dtype))), cond))
        outputs.append(frames)
    return outputs


def _game_inputs(cfg, batch, count, seed):
    rng = np.random.default_rng(seed)
    shape = (batch, cfg.patch_frames, cfg.image_size, cfg.image_size)
    depths = [rng.uniform(0, 10, (*shape, 1)).astype(np.float32) for _ in range(count)]
    flows = [rng.normal(0, 3, (*shape, 2)).astype(np.float32) for _ in range(count)]
    return depths, flows


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("cache_at_step", [None, 0, 1, 2])
def test_streaming_renderer_equals_parallel_reference(tiny_model, window, cache_at_step):
    cfg, b, count, steps = tiny_model.config, 2, 5, 3
    renderer = StreamingRenderer(
        tiny_model,
        window=window,
        num_steps=steps,
        cache_at_step=cache_at_step,
        batch_size=b,
        dtype=torch.float64,
    )
    depths, flows = _game_inputs(cfg, b, count, seed=2)
    noises = [renderer.noise() for _ in range(count)]
    streamed = [renderer.step_tensor(d, v, noise=z) for d, v, z in zip(depths, flows, noises, strict=True)]
    conds = [renderer.stats.normalize(d, v).double() for d, v in zip(depths, flows, strict=True)]
    reference = _reference_stream(
        tiny_model, conds, noises, window=window, num_steps=steps, cache_at_step=cache_at_step
    )
    torch.testing.assert_close(torch.cat(streamed, 1), torch.cat(reference, 1))


def test_cache_at_step_changes_the_context(tiny_model):
    """Keeping a noisy step's keys/values is not the same as a clean pass (else the option is a no-op)."""
    cfg = tiny_model.config
    depths, flows = _game_inputs(cfg, 1, 3, seed=3)
    last = {}
    for cache_at_step in (None, 0):
        renderer = StreamingRenderer(tiny_model, num_steps=2, cache_at_step=cache_at_step, dtype=torch.float64)
        for d, v in zip(depths, flows, strict=True):
            last[cache_at_step] = renderer.step_tensor(d, v)
    assert not torch.allclose(last[None], last[0])


def test_same_seed_same_frames_other_seed_other_frames(tiny_model):
    cfg = tiny_model.config
    depths, flows = _game_inputs(cfg, 1, 3, seed=4)
    renderer = StreamingRenderer(tiny_model, num_steps=2, cache_at_step=1)

    def run(seed):
        renderer.reset(seed)
        return np.stack([renderer.step(d[0], v[0]) for d, v in zip(depths, flows, strict=True)])

    first, again, other = run(5), run(5), run(6)
    assert first.dtype == np.uint8 and first.shape == (3, cfg.patch_frames, cfg.image_size, cfg.image_size, 3)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.25  # random weights saturate many pixels at 0 or 255


def test_reset_of_one_stream_leaves_the_others_alone(tiny_model):
    """A batch of two streams equals two single streams, also after stream 1 alone is reset and reseeded."""
    cfg = tiny_model.config
    depths, flows = _game_inputs(cfg, 2, 6, seed=7)
    batch = StreamingRenderer(tiny_model, num_steps=2, cache_at_step=0, batch_size=2, seed=10, dtype=torch.float64)
    single0 = StreamingRenderer(tiny_model, num_steps=2, cache_at_step=0, seed=10, dtype=torch.float64)
    single1 = StreamingRenderer(tiny_model, num_steps=2, cache_at_step=0, seed=11, dtype=torch.float64)
    for j, (d, v) in enumerate(zip(depths, flows, strict=True)):
        if j == 3:
            batch.reset(99, slots=[1])
            single1.reset(99)
        both = batch.step_tensor(d, v)
        torch.testing.assert_close(both[0], single0.step_tensor(d[0], v[0])[0])
        torch.testing.assert_close(both[1], single1.step_tensor(d[1], v[1])[0])
    assert batch.cache.lengths.tolist() == [3, 3]
    batch.reset(None, slots=[])  # resetting no stream is a no-op
    assert batch.cache.lengths.tolist() == [3, 3]


def test_cache_memory_stays_put(tiny_model):
    renderer = StreamingRenderer(tiny_model, window=3, num_steps=2, cache_at_step=0)
    cache = renderer.cache
    tensors = (cache.keys, cache.values, cache.staged_keys, cache.staged_values)
    before = [(t.data_ptr(), t.shape, t.stride()) for t in tensors]
    depths, flows = _game_inputs(tiny_model.config, 1, 1, seed=8)
    for _ in range(40):
        renderer.step(depths[0][0], flows[0][0])
    after = [
        (t.data_ptr(), t.shape, t.stride()) for t in (cache.keys, cache.values, cache.staged_keys, cache.staged_values)
    ]
    assert after == before
    assert cache.write_index == 40 % 3 and cache.lengths.tolist() == [3]


def test_bad_inputs_are_refused(tiny_model):
    with pytest.raises(ValueError, match="cache_at_step"):
        StreamingRenderer(tiny_model, num_steps=4, cache_at_step=4)
    renderer = StreamingRenderer(tiny_model, num_steps=1)
    with pytest.raises(ValueError, match="depth and flow of shape"):
        renderer.step(np.zeros((1, 32, 32, 1), np.float32), np.zeros((1, 32, 32, 2), np.float32))
    with pytest.raises(ValueError, match="no source 'video'"):
        StreamingRenderer(tiny_model, stats=ConditionStats.unit("game"), source="video")


@pytest.mark.slow
def test_time_and_memory_are_flat_over_500_framelets():
    """The tiny preset at its native 128x128: no growth from the first hundred framelets to the last."""
    import time

    from neural_render import build_renderer

    model = build_renderer("tiny")
    renderer = StreamingRenderer(model, window=3, num_steps=2)
    pointers = [t.data_ptr() for t in (renderer.cache.keys, renderer.cache.values)]
    depths, flows = _game_inputs(model.config, 1, 1, seed=9)
    times = []
    for _ in range(500):
        start = time.perf_counter()
        renderer.step(depths[0][0], flows[0][0])
        times.append(time.perf_counter() - start)
    assert np.median(times[-100:]) < 1.5 * np.median(times[:100])
    assert [t.data_ptr() for t in (renderer.cache.keys, renderer.cache.values)] == pointers


def test_cuda_graph_needs_cuda(tiny_model):
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        StreamingRenderer(tiny_model, cuda_graph=True, device="cpu")


def test_compile_modes_are_checked(tiny_model):
    with pytest.raises(ValueError, match="compile='fast': choose True, False or one of default, max-autotune"):
        StreamingRenderer(tiny_model, compile="fast")
    with pytest.raises(ValueError, match="'reduce-overhead' captures CUDA graphs of its own"):
        StreamingRenderer(tiny_model, compile="reduce-overhead", cuda_graph=True, device="cuda")
    assert StreamingRenderer(tiny_model, compile=True).compile_mode == "default"
    assert StreamingRenderer(tiny_model).compile_mode is None


def test_autocast_runs_a_bf16_copy_and_leaves_the_model_alone(tiny_model):
    """bf16 autocast (here on the CPU) renders through a bf16 copy made once: frames within bf16 rounding
    of float32, and the caller's model keeps its float32 weights."""
    model = tiny_model.float()
    cfg = model.config
    rng = np.random.default_rng(0)
    shape = (cfg.patch_frames, cfg.image_size, cfg.image_size)
    inputs = [(rng.uniform(0, 5, (*shape, 1)).astype(np.float32), rng.normal(0, 2, (*shape, 2)).astype(np.float32))
              for _ in range(4)]  # fmt: skip
    frames = {}
    for autocast in (False, True):
        renderer = StreamingRenderer(model, window=2, num_steps=3, seed=5, autocast=autocast)
        frames[autocast] = torch.stack([renderer.step_tensor(d, f).float() for d, f in inputs])
        network = renderer.network
        assert (network is model) != autocast
        assert network.x_embedder.weight.dtype == (torch.bfloat16 if autocast else torch.float32)
    assert model.x_embedder.weight.dtype == torch.float32
    error = (frames[True] - frames[False]).norm() / frames[False].norm()
    assert 1e-4 < error < 0.05, f"relative error {error:.5f}"  # rounded, but the same picture


def test_bf16_by_default_where_it_is_native_and_never_for_float64(tiny_model, monkeypatch):
    """autocast=None renders a float32 network in bf16 where the device multiplies bf16 natively (CUDA; a CPU
    with AVX512-BF16 or AMX, asked of torch.cpu) and in float32 elsewhere; a float64 renderer stays exact."""
    import neural_render.sampler as sampler

    assert sampler.native_bf16("cuda") and not sampler.native_bf16("meta")
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert sampler.native_bf16("cpu") is native
        assert StreamingRenderer(tiny_model.float(), num_steps=1).autocast is native
        assert StreamingRenderer(tiny_model.double(), num_steps=1, dtype=torch.float64).autocast is False
        assert StreamingRenderer(tiny_model.float(), num_steps=1, autocast=True).autocast is True


@pytest.mark.slow
def test_compiled_cached_pass_writes_the_ring_in_place():
    """torch.compile must update the cache's ring in place: the generated kernels may index_copy into it
    but must not copy_ it back whole after the pass (what writing through `keys[layer]` used to cost, two
    copies of every block's ring per pass). Checked on the CPU's generated code, which shares this with
    the GPU's."""
    import re

    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    model = build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2).eval()
    cache = model.new_cache(batch_size=1, window=2)
    x, cond = torch.randn(1, 2, 32, 32, 3), torch.randn(1, 2, 32, 32, 3)
    with torch.no_grad():
        cache.begin()
        cache.commit()
        cache.begin()
        expected = model(x, torch.full((1, 1), 0.5), cond, cache=cache)
        out, code = run_and_get_code(torch.compile(model), x, torch.full((1, 1), 0.5), cond, cache=cache)
    torch.testing.assert_close(out, expected)
    kernels = re.findall(r"(\w*fused\w*) = async_compile", "\n".join(code))
    assert any("index_copy" in name for name in kernels), kernels
    assert not [name for name in kernels if re.search(r"(^|_)copy__", name)], kernels


def test_consecutive_framelets_draw_correlated_noise_and_a_reset_starts_afresh(tiny_model):
    """Framelet noise is an AR(1) process per stream: z_n = rho z_(n-1) + sqrt(1 - rho^2) e_n, so consecutive
    draws correlate by rho and stay unit normal; rho = 0 is independent, rho = 1 the same noise; a reset
    stream starts from fresh noise while the others go on."""
    cfg = tiny_model.config
    depths, flows = _game_inputs(cfg, 2, 2, seed=4)

    def consecutive(rho: float):
        renderer = StreamingRenderer(tiny_model, batch_size=2, num_steps=1, dtype=torch.float64, noise_correlation=rho)
        first = renderer.noise()
        renderer.step_tensor(depths[0], flows[0], noise=first)
        return renderer, first, renderer.noise()

    for rho in (0.0, 0.95):
        _, first, second = consecutive(rho)
        correlation = float(torch.corrcoef(torch.stack([first.flatten(), second.flatten()]))[0, 1])
        assert correlation == pytest.approx(rho, abs=0.03) and float(second.std()) == pytest.approx(1.0, abs=0.03)
    renderer, first, second = consecutive(1.0)
    torch.testing.assert_close(second, first)
    renderer.reset(7, slots=[1])
    after = renderer.noise()
    torch.testing.assert_close(after[0], first[0])  # stream 0 goes on
    assert abs(float(torch.corrcoef(torch.stack([after[1].flatten(), first[1].flatten()]))[0, 1])) < 0.05
    with pytest.raises(ValueError, match="noise_correlation must lie in \\[0, 1\\]"):
        StreamingRenderer(tiny_model, noise_correlation=1.5)


def test_a_stream_paints_the_look_it_is_given():
    """The sampler hands every pass its look: a learnt look vector changes the frames, no look (the default, or
    "any") gives the look-less network's frames, and an unknown look is refused naming the renderer's."""
    options = dict(image_size=32, num_blocks=2, width=64, heads=2, dtype=torch.float64)
    plain = randomize(build_renderer("tiny", **options))
    model = build_renderer("tiny", looks=("sunny", "rainy"), **options)
    model.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        model.look_embedding[1] = torch.linspace(-0.05, 0.05, 64, dtype=torch.float64)
    depths, flows = _game_inputs(model.config, 1, 3, seed=0)

    def frames(network, **look):
        renderer = StreamingRenderer(network, num_steps=2, dtype=torch.float64, seed=4, **look)
        return torch.cat([renderer.step_tensor(d, f) for d, f in zip(depths, flows, strict=True)], 1)

    expected = frames(plain)
    torch.testing.assert_close(frames(model), expected)
    torch.testing.assert_close(frames(model, look="any"), expected)
    torch.testing.assert_close(frames(model, look="sunny"), expected)  # its vector is still zero
    assert (frames(model, look="rainy") - expected).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="look 'snowy': this renderer paints any, sunny, rainy"):
        StreamingRenderer(model, look="snowy")


def test_the_car_mask_reaches_the_condition_embedding_at_car_scale():
    """The embedding of a condition with a car mask is the car weights' share times CAR_SCALE plus the rest's."""
    from neural_render.layout import patchify
    from neural_render.model import CAR_SCALE

    model = randomize(build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2, cond_channels=4))
    cond = torch.randn(1, 2, 32, 32, 4)
    cond[..., 3] = (cond[..., 3] > 0).float() * 4.0
    only_mask, no_mask = torch.zeros_like(cond), cond.clone()
    only_mask[..., 3], no_mask[..., 3] = cond[..., 3], 0.0
    with torch.no_grad():
        embed = lambda c: model.embed_condition(c, None, (1, 1, 4))  # noqa: E731
        bias = model.cond_embedder.bias
        mask_share = embed(only_mask) - bias
        torch.testing.assert_close(embed(cond), embed(no_mask) + mask_share)
        model.cond_embedder.weight.view(64, -1, 4)[..., :3] = 0.0
        cfg = model.config
        mask_tokens = patchify(cond[..., 3:], cfg.patch_frames, cfg.patch_size)  # (1, 1, 4, f*p*q)
        unscaled = torch.nn.functional.linear(mask_tokens, model.cond_embedder.weight.view(64, -1, 4)[..., 3])
    assert CAR_SCALE > 1
    torch.testing.assert_close(mask_share, CAR_SCALE * unscaled)


def test_a_renderer_told_where_the_cars_are_paints_from_the_mask_and_needs_it():
    """A network with a car mask channel (cond_channels 4) whose car weights are zero paints what the same network
    without it paints; once they are not, the mask changes the frames where the cars are. It refuses to paint
    without a mask, and a network without one refuses a mask."""
    options = dict(image_size=32, num_blocks=2, width=64, heads=2, dtype=torch.float64)
    plain = randomize(build_renderer("tiny", **options))
    model = build_renderer("tiny", cond_channels=4, **options)
    weights = plain.state_dict()
    saved = weights["cond_embedder.weight"].view(64, -1, 3)  # (width, f*p*q, channels): channels innermost
    weights["cond_embedder.weight"] = torch.cat([saved, torch.zeros_like(saved[..., :1])], -1).reshape(64, -1)
    model.load_state_dict(weights)
    assert model.config.wants_cars and not plain.config.wants_cars
    depths, flows = _game_inputs(model.config, 1, 3, seed=0)
    cars = [np.zeros(d.shape, np.uint8) for d in depths]
    for mask in cars:
        mask[..., 8:20, 4:16, :] = 1

    def frames(network, masks):
        renderer = StreamingRenderer(network, num_steps=2, dtype=torch.float64, seed=4)
        return torch.cat([renderer.step_tensor(d, f, c) for d, f, c in zip(depths, flows, masks, strict=True)], 1)

    expected = frames(plain, [None] * 3)
    torch.testing.assert_close(frames(model, cars), expected)  # the new channel starts at zero
    with torch.no_grad():
        weight = model.cond_embedder.weight.view(64, -1, 4)
        weight[:, :, 3] = 0.05 * torch.randn(weight.shape[:2], generator=torch.Generator().manual_seed(0))
    told = frames(model, cars)
    assert (told - expected).abs().mean() > 1e-3
    torch.testing.assert_close(frames(model, [np.zeros_like(c) for c in cars]), expected)  # no car: as before
    with pytest.raises(ValueError, match="this renderer paints from a car mask too: give cars="):
        StreamingRenderer(model).step(depths[0], flows[0])
    with pytest.raises(ValueError, match="no car mask"):
        StreamingRenderer(plain).step(depths[0], flows[0], cars[0])
