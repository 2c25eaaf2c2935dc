"""Flow matching: the loss, the shifted schedule and the Euler sampler."""

import math
from types import SimpleNamespace

import pytest
import torch

from neural_render import FlowMatching, build_renderer


class Oracle:
    """A 'network' that predicts the clean clip it was told, plus an optional error."""

    config = SimpleNamespace(patch_frames=2)

    def __init__(self, clean, error=0.0):
        self.clean, self.error = clean, error

    def __call__(self, z, t, cond, **kwargs):
        return self.clean + self.error


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_perfect_x_prediction_has_zero_loss(shift):
    x = torch.rand(3, 8, 4, 4, 3) * 2 - 1
    diffusion = FlowMatching(shift=shift)
    result = diffusion.loss(Oracle(x), x, None, generator=torch.Generator().manual_seed(0))
    assert result.loss.item() == 0.0 and result.t.shape == (3, 4)


def test_loss_is_the_velocity_error_with_clamped_one_minus_t():
    x = torch.zeros(1, 4, 2, 2, 3)
    t = torch.tensor([[0.5, 0.99]])  # 1 - t = 0.5, and 0.01 clamped up to 0.05
    result = FlowMatching(min_gap=0.05).loss(Oracle(x, error=0.1), x, None, t=t, noise=torch.randn(x.shape))
    expected = ((0.1 / 0.5) ** 2 + (0.1 / 0.05) ** 2) / 2
    assert math.isclose(result.loss.item(), expected, rel_tol=1e-5)


def test_true_velocity_is_data_minus_noise():
    diffusion, x, noise = FlowMatching(), torch.randn(2, 4, 2, 2, 3), torch.randn(2, 4, 2, 2, 3)
    t = torch.tensor([[0.1, 0.7], [0.3, 0.0]])
    torch.testing.assert_close(diffusion.velocity(diffusion.add_noise(x, t, noise), x, t), x - noise)


@pytest.mark.parametrize("shift", [1.0, 2.0, 5.0])
def test_shifted_schedule_is_biased_towards_noise(shift):
    """Median sampled noise level (1 - t) is shift / (1 + shift): 1/2 unshifted, more with shift > 1."""
    t = FlowMatching(shift=shift).sample_time(1000, 100, generator=torch.Generator().manual_seed(0))
    assert abs((1 - t).median().item() - shift / (1 + shift)) < 0.01
    assert t.min() >= 0 and t.max() <= 1


def test_shift_grows_with_the_framelet_size():
    assert FlowMatching.for_config(build_renderer("tiny", image_size=64).config).shift == 1.0
    assert FlowMatching.for_config(build_renderer("tiny").config).shift == 2.0  # 128x128
    grid = FlowMatching(shift=2.0).time_grid(4)
    plain = FlowMatching(shift=1.0).time_grid(4)
    assert grid[0] == 0 and grid[-1] == 1 and torch.all(grid[1:-1] < plain[1:-1])
    assert torch.all(grid[1:] > grid[:-1])


def test_framelets_get_independent_times():
    t = FlowMatching().sample_time(4, 8, generator=torch.Generator().manual_seed(0))
    assert t.shape == (4, 8) and all(len(set(row.tolist())) == 8 for row in t)


@pytest.mark.parametrize("num_steps", [1, 3, 12])
def test_euler_sampler_lands_on_the_prediction(num_steps):
    clean, noise = torch.rand(2, 4, 2, 2, 3), torch.randn(2, 4, 2, 2, 3)
    seen = []

    def denoise(z, t):
        seen.append(t)
        return clean

    out = FlowMatching(shift=2.0).sample(denoise, noise, num_steps, framelets=2)
    torch.testing.assert_close(out, clean)
    assert len(seen) == num_steps and seen[0].shape == (2, 2) and seen[0].max() == 0.0
