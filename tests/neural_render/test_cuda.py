"""The renderer's CUDA paths: CUDA-graph replay, bf16 autocast and torch.compile against the eager float32
reference. Marked `gpu` (deselected by default; run with `pytest -m gpu` on a machine with CUDA)."""

import numpy as np
import pytest
import torch

from neural_render import StreamingRenderer, build_renderer

from .conftest import randomize

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _model():
    """A random tiny renderer at 64x64 (16 tokens per framelet), float32."""
    return randomize(build_renderer("tiny", image_size=64, num_blocks=3, width=128, heads=2), seed=3)


def _conditions(cfg, count, batch, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, cfg.patch_frames, cfg.image_size, cfg.image_size)
    return [
        (rng.uniform(0, 5, (*shape, 1)).astype(np.float32), rng.normal(0, 2, (*shape, 2)).astype(np.float32))
        for _ in range(count)
    ]


def _stream(renderer, conditions, reset_at=()):
    frames = []
    for index, (depth, flow) in enumerate(conditions):
        if index in reset_at:
            renderer.reset(seed=100 + index, slots=[0])
        frames.append(renderer.step_tensor(depth, flow).float().cpu())
    return torch.stack(frames)


@needs_cuda
@pytest.mark.parametrize("cache_at_step", [None, 2])
def test_cuda_graph_replay_equals_eager(cache_at_step):
    """Same seed, same inputs: the graphed renderer gives the eager renderer's frames, over a wrapped ring
    (window 3, 9 framelets) and after resetting one stream mid-way (its window refills eagerly)."""
    model, batch = _model(), 2
    conditions = _conditions(model.config, 9, batch)
    options = dict(window=3, num_steps=4, cache_at_step=cache_at_step, batch_size=batch, seed=7, device="cuda")
    eager = _stream(StreamingRenderer(model, **options), conditions, reset_at=(5,))
    graphed_renderer = StreamingRenderer(model, cuda_graph=True, **options)
    graphed = _stream(graphed_renderer, conditions, reset_at=(5,))
    assert graphed_renderer.graph_captures == 1  # one graph serves every ring slot
    torch.testing.assert_close(graphed, eager, atol=1e-5, rtol=1e-5)
    assert eager.std() > 0.1  # a random network paints something, not a constant


@needs_cuda
def test_bf16_autocast_stays_close_to_float32():
    """bf16 autocast (the CUDA default) changes the frames only by rounding, not in structure."""
    model = _model()
    conditions = _conditions(model.config, 5, 1)
    options = dict(window=3, num_steps=4, seed=1, device="cuda")
    exact = _stream(StreamingRenderer(model, autocast=False, **options), conditions)
    rounded = _stream(StreamingRenderer(model, autocast=True, **options), conditions)
    error = (rounded - exact).norm() / exact.norm()
    assert error < 0.05, f"relative error {error:.4f}"


@needs_cuda
def test_compiled_renderer_matches_eager():
    model = _model()
    conditions = _conditions(model.config, 4, 1)
    options = dict(window=2, num_steps=3, seed=2, device="cuda", autocast=False)
    eager = _stream(StreamingRenderer(model, **options), conditions)
    compiled = _stream(StreamingRenderer(model, compile=True, **options), conditions)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


@needs_cuda
def test_flex_attention_matches_dense_mask_with_gradients():
    """Training's "flex" backend: same loss and gradients as the dense mask on a 12-framelet clip."""
    model = randomize(build_renderer("tiny", image_size=64, num_blocks=2, width=128, heads=2), seed=5).cuda()
    generator = torch.Generator("cuda").manual_seed(6)
    n, f = 12, model.config.patch_frames
    x, cond = (torch.randn(2, n * f, 64, 64, 3, generator=generator, device="cuda") for _ in range(2))
    t = torch.rand(2, n, generator=generator, device="cuda")
    results = {}
    for backend in ("sdpa", "flex"):
        model.attention = backend
        model.zero_grad()
        out = model(x, t, cond, window=3)
        out.square().mean().backward()
        results[backend] = (out.detach(), model.x_embedder.weight.grad.clone())
    torch.testing.assert_close(results["flex"][0], results["sdpa"][0], atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(results["flex"][1], results["sdpa"][1], atol=2e-4, rtol=1e-3)
