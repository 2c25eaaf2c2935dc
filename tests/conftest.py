"""Fixtures shared by several test folders."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A one-block 32 px renderer with small random weights (so its frames depend on depth and flow)."""
    from neural_render import build_renderer, save_renderer

    model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    return save_renderer(tmp_path_factory.mktemp("renderer") / "tiny", model, provenance={"test": "tiny"})
