"""Fixtures for the renderer tests: tiny networks with random (not zero-initialised) weights."""

import math

import pytest
import torch

from neural_render import build_renderer


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace every parameter with random values, so that gates, output layer and attention all matter
    (the zero-initialised network predicts 0 whatever its input)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            fan_in = math.prod(param.shape[1:]) if param.ndim > 2 else param.shape[-1] if param.ndim > 1 else 16
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            param.copy_(noise / math.sqrt(fan_in))
    return model


@pytest.fixture(params=[(0, 0, 0), (8, 0, 0), (0, 4, 0), (0, 4, 4)], ids=["seed", "pixel-head", "overlap", "blend"])
def tiny_model(request):
    """A random 2-block, 32x32 renderer in float64 (so cached and parallel passes agree to 1e-7): the seed's
    design, with a pixel head, with overlapping patch embedding, and with that and blended paintings."""
    head, overlap, decode = request.param
    options = dict(image_size=32, num_blocks=2, width=64, heads=2, pixel_head=head, patch_overlap=overlap,
                   decode_overlap=decode, dtype=torch.float64)  # fmt: skip
    return randomize(build_renderer("tiny", **options))
