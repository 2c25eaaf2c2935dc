"""iREPA: per-sample teacher normalisation, the projector onto the teacher grid, the cosine loss."""

import pytest
import torch

from spokester_train.recipe.irepa import Projector, irepa_loss, normalise_teacher


def test_teacher_normalisation_is_per_sample_over_all_tokens():
    features = torch.rand(2, 3, 5, 5, 8)
    scaled = torch.cat([features[:1], 10 * features[1:] + 3])  # a per-sample scale and offset
    normalised = normalise_teacher(scaled)
    tokens = normalised.reshape(2, -1, 8)
    torch.testing.assert_close(tokens.mean(dim=1), torch.zeros(2, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.std(dim=1), torch.ones(2, 8), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised[1], normalise_teacher(features)[1], atol=1e-4, rtol=0)


def test_projector_maps_tokens_to_the_teacher_grid_and_cosine_loss_is_zero_when_aligned():
    projector = Projector(width=16, frames_per_framelet=2, teacher_channels=8)
    hidden = torch.randn(2, 3, 4 * 4, 16)  # (b, n, s, d)
    projected = projector(hidden, (4, 4), (33, 33))
    assert projected.shape == (2, 6, 33, 33, 8)
    assert irepa_loss(projected, projected).item() == pytest.approx(0.0, abs=1e-5)
    assert irepa_loss(projected, -projected).item() == pytest.approx(2.0, abs=1e-5)
