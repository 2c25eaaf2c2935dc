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


def test_the_choices_come_from_their_own_generator_and_on_the_cpu_it_is_the_clips_own():
    """Which degradations happen and how strong depends on `choices` alone (noise off here); on the CPU a clip's
    choices are drawn from its own generator, so CPU runs draw what they always drew."""
    from spokester_train.recipe.optimizer_step import choice_generators

    cond = torch.randn(4, 16, 16, 3).clamp(-4, 4)
    config = Augment(prob=0.5, max_noise=0.0)
    seeded = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    picked = [augment_clip(cond, config, 4.0, seeded(0), choices=seeded(s)) for s in range(6)]
    assert all(torch.equal(augment_clip(cond, config, 4.0, seeded(9), choices=seeded(s)), picked[s]) for s in range(6))
    assert len({tuple(p.flatten()[:64].tolist()) for p in picked}) > 2  # the choices differ from seed to seed
    own = [seeded(3), seeded(4)]
    assert choice_generators(own) == own


def test_a_car_mask_is_scaled_and_blurred_with_the_condition_but_never_posterized_noised_or_clamped():
    """The depth and flow channels of a clip with a car mask are degraded exactly as the same clip without one;
    the mask (clip on a car, 0 elsewhere) keeps its two values through posterize, noise and clamp, and is
    blurred with the rest when blur happens."""
    cond = torch.randn(4, 16, 16, 3).clamp(-4, 4)
    mask = torch.zeros(4, 16, 16, 1)
    mask[:, 4:10, 3:9] = 4.0
    told = torch.cat([cond, mask], dim=-1)
    values_only = Augment(prob=1.0, max_downscale=1.0, max_blur_sigma=0.0)  # posterize, noise, clamp: always
    seeded = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    for seed in range(4):
        out = augment_clip(told, values_only, 4.0, seeded(seed))
        assert torch.equal(out[..., 3:], mask)
        torch.testing.assert_close(out[..., :3], augment_clip(cond, values_only, 4.0, seeded(seed)))
        assert not torch.allclose(out[..., :3], cond)
    blurred = augment_clip(told, Augment(prob=1.0, max_downscale=1.0, max_noise=0.0, min_clip=4.0), 4.0, seeded(1))
    edge = blurred[..., 3][:, 3:11, 2:10]
    assert ((edge > 0.01) & (edge < 3.99)).any()  # soft edges
