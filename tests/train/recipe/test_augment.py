"""Condition augmentation: bounded, seeded, optional."""

import torch

from spokester_train.recipe.augment import augment_clip
from spokester_train.recipe.config import Augment


def test_condition_augmentation_is_bounded_seeded_and_optional():
    cond = torch.randn(4, 16, 16, 3).clamp(-4, 4)  # one clip: (t, H, W, k)
    draw = lambda seed, prob: augment_clip(cond, Augment(prob=prob), 4.0, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(0, 0.0), cond)
    changed = draw(0, 1.0)
    assert changed.abs().max() <= 4.0 and not torch.allclose(changed, cond)
    torch.testing.assert_close(draw(0, 1.0), changed)
    assert not torch.equal(draw(1, 1.0), changed)
