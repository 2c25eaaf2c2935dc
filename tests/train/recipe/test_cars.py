"""The recipe's car options (`spokester_train.recipe.cars`): cars that enter, the loss's weight on cars."""

import pytest
import torch

from neural_render import FlowMatching, build_renderer
from spokester_train.recipe.cars import GROW, car_weights, hide_cars
from spokester_train.recipe.config import make_config
from spokester_train.recipe.optimizer_step import _cars_enter, clip_generators, step_loss


def _clip(t=8, side=32):
    """A smooth road (a left-to-right ramp, another shade each frame) with a black car at rows 12-19,
    columns 8-15, and its car mask (clip = 4 on the car)."""
    ramp = torch.linspace(-0.5, 0.5, side).view(1, 1, side, 1).expand(t, side, side, 3)
    x = ramp + torch.linspace(-0.2, 0.2, t).view(t, 1, 1, 1)
    x = x.clone()
    x[:, 12:20, 8:16] = -1.0
    cond = torch.rand(t, side, side, 4) * 2 - 1
    cond[..., 3] = 0.0
    cond[:, 12:20, 8:16, 3] = 4.0
    return x, ramp + torch.linspace(-0.2, 0.2, t).view(t, 1, 1, 1), cond


def test_a_hidden_car_is_filled_in_from_the_road_around_it_its_mask_cleared_and_left_out_of_the_loss():
    x, road, cond = _clip()
    hidden_x, hidden_cond, weight = hide_cars(x, cond, 4)
    grown = torch.zeros(32, 32, dtype=torch.bool)
    grown[12 - GROW : 20 + GROW, 8 - GROW : 16 + GROW] = True
    # frames 0-3: no car in the picture (the smooth road within a tenth; the car was 0.9 or more off), none in
    # the mask, no loss on it
    assert (hidden_x[:4] - road[:4]).abs().max() < 0.1 and (x[:4] - road[:4]).abs().max() > 0.9
    assert not hidden_cond[:4, ..., 3].any() and torch.equal(hidden_cond[:4, ..., :3], cond[:4, ..., :3])
    assert torch.equal(weight[:4], (~grown).float().expand(4, 32, 32))
    # from frame 4 on the clip is as it was; the inputs are not changed
    assert torch.equal(hidden_x[4:], x[4:]) and torch.equal(hidden_cond[4:], cond[4:])
    assert (weight[4:] == 1).all()
    assert x[0, 15, 10, 0] == -1.0 and cond[0, 15, 10, 3] == 4.0


def test_a_clip_without_cars_or_hidden_from_no_frame_is_unchanged_and_a_car_filling_a_frame_gets_its_mean():
    x, _, cond = _clip()
    for clip_cond, enter in ((cond.clone().index_fill_(3, torch.tensor([3]), 0.0), 6), (cond, 0)):
        same_x, same_cond, weight = hide_cars(x, clip_cond, enter)
        assert torch.equal(same_x, x) and torch.equal(same_cond, clip_cond) and (weight == 1).all()
    everywhere = cond.clone()
    everywhere[..., 3] = 4.0
    filled, _, weight = hide_cars(x, everywhere, 2)
    assert torch.isfinite(filled).all() and (weight[:2] == 0).all() and torch.equal(filled[2:], x[2:])
    with pytest.raises(ValueError, match="enter=9"):
        hide_cars(x, cond, 9)


def test_a_share_of_the_clips_see_their_cars_enter_at_a_framelet_boundary_after_the_first():
    x, _, cond = _clip()
    batch_x, batch_cond = x.expand(64, *x.shape), cond.expand(64, *cond.shape)
    generators = clip_generators(0, 0, range(64), torch.device("cpu"))
    _, hidden_cond, weight = _cars_enter(batch_x, batch_cond, 0.5, 2, generators)
    hidden = (weight < 1).flatten(2).any(2)  # (b, t): the frames with a car hidden
    chosen = hidden.any(1)
    assert 20 < int(chosen.sum()) < 44  # about half the clips
    enters = hidden[chosen].sum(1)  # every hidden frame comes before the car's entry
    assert set(enters.tolist()) == {2, 4, 6}  # after the first framelet, before the last frame
    assert all(torch.equal(h, torch.arange(8) < e) for h, e in zip(hidden[chosen], enters, strict=True))
    assert torch.equal(hidden_cond[~chosen], batch_cond[~chosen])
    _, _, none = _cars_enter(batch_x, batch_cond, 0.0, 2, clip_generators(0, 0, range(64), torch.device("cpu")))
    assert (none == 1).all()


def test_the_loss_of_a_clip_whose_cars_enter_ignores_what_is_painted_where_they_were_hidden():
    """With cars_enter, what the network paints on a hidden car moves the loss not at all; elsewhere it does;
    without cars_enter it does everywhere. A run with cars_enter needs car masks."""
    torch.manual_seed(0)
    model = build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2, cond_channels=4)
    x, _, cond = _clip()
    batch = {"x": x[None], "cond": cond[None]}

    def loss(config, poke):
        def forward(z, t, c, **kwargs):
            out = model(z, t, c, **kwargs)
            return out + poke.to(out.dtype)

        value, _ = step_loss(
            forward, model, FlowMatching.for_config(model.config), batch, config, clip=4.0,
            generators=clip_generators(0, 0, range(1), torch.device("cpu")), projector=None, layer=1,
        )  # fmt: skip
        return float(value.detach())

    entering = make_config("cpu-tiny", irepa=False, car_masks=True, cars_enter=1.0)
    plain = make_config("cpu-tiny", irepa=False, car_masks=True)
    on_car, off_car = torch.zeros(1, 8, 32, 32, 3), torch.zeros(1, 8, 32, 32, 3)
    on_car[:, :2, 14:18, 10:14] = 0.5  # frames 0-1 are hidden whichever framelet the car enters at
    off_car[:, :2, 26:30, 24:28] = 0.5
    nothing = torch.zeros(1, 8, 32, 32, 3)
    assert loss(entering, on_car) == pytest.approx(loss(entering, nothing), rel=1e-6)
    assert loss(entering, off_car) > loss(entering, nothing) * 1.001
    assert loss(plain, on_car) > loss(plain, nothing) * 1.001
    with pytest.raises(ValueError, match="cars_enter=0.5 needs car_masks=True"):
        make_config("cpu-tiny", cars_enter=0.5)
    with pytest.raises(ValueError, match=r"cars_enter=1.5: need a share of the clips in \[0, 1\]"):
        make_config("cpu-tiny", car_masks=True, cars_enter=1.5)


def test_the_loss_weighs_the_car_masks_pixels_as_asked_and_hidden_cars_stay_out_of_it():
    """car_weights: the asked weight on the mask's cars, 1 elsewhere; in step_loss an error painted on a car moves
    the loss `car_loss_weight` times as much as without it, and a hidden car's pixels stay at 0."""
    _, _, cond = _clip()
    weights = car_weights(cond, 10.0)
    assert weights.shape == (8, 32, 32) and weights[0, 15, 10] == 10.0 and weights[0, 0, 0] == 1.0
    assert int((weights == 10.0).sum()) == 8 * 8 * 8
    torch.manual_seed(0)
    model = build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2, cond_channels=4)
    x, _, _ = _clip()
    batch = {"x": x[None], "cond": cond[None]}

    def loss(config, poke):
        value, _ = step_loss(
            lambda z, t, c, **kw: model(z, t, c, **kw) + poke, model, FlowMatching.for_config(model.config), batch,
            config, clip=4.0, generators=clip_generators(0, 0, range(1), torch.device("cpu")), projector=None, layer=1,
        )  # fmt: skip
        return float(value.detach())

    on_car = torch.zeros(1, 8, 32, 32, 3)
    on_car[:, 6:, 14:18, 10:14] = 0.5  # the last framelet: never hidden
    hidden = torch.zeros(1, 8, 32, 32, 3)
    hidden[:, :2, 14:18, 10:14] = 0.5  # the first framelet: always hidden with cars_enter=1
    nothing = torch.zeros(1, 8, 32, 32, 3)
    plain = make_config("cpu-tiny", irepa=False, car_masks=True)
    weighed = make_config("cpu-tiny", irepa=False, car_masks=True, car_loss_weight=10.0)
    both = make_config("cpu-tiny", irepa=False, car_masks=True, car_loss_weight=10.0, cars_enter=1.0)
    moved_plain, moved_weighed = (loss(c, on_car) - loss(c, nothing) for c in (plain, weighed))
    assert moved_weighed == pytest.approx(10 * moved_plain, rel=1e-3) and moved_plain > 0
    assert loss(both, hidden) == pytest.approx(loss(both, nothing), rel=1e-6)
    with pytest.raises(ValueError, match="car_loss_weight=2.0 needs car_masks=True"):
        make_config("cpu-tiny", car_loss_weight=2.0)
    with pytest.raises(ValueError, match="car_loss_weight=-1.0: need a weight >= 0"):
        make_config("cpu-tiny", car_masks=True, car_loss_weight=-1.0)
