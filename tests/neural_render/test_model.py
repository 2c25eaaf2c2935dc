"""The network: token layout, the framelet-causal mask, initialisation, conditioning paths, presets."""

import pytest
import torch

from neural_render import RENDERER_PRESETS, Renderer, build_renderer
from neural_render.layers import PixelHead
from neural_render.layout import blend_weights, framelet_mask, from_uint8, patchify, to_uint8, unpatchify

from .conftest import randomize


def test_framelet_mask_has_the_expected_pattern():
    """4 framelets of 2 tokens, window 2: a framelet sees itself and the one before, never the future."""
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 1],
            [0, 0, 0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    torch.testing.assert_close(framelet_mask(4, 2, window=2), expected)
    causal = framelet_mask(3, 1, window=None)
    torch.testing.assert_close(causal, torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="window"):
        framelet_mask(3, 1, window=0)


def test_patchify_takes_the_right_pixels_and_inverts():
    f, p = 2, 4
    video = torch.randn(2, 3 * f, 8, 12, 3)  # 3 framelets of a 2x3 grid of patches
    tokens = patchify(video, f, p)
    assert tokens.shape == (2, 3, 6, f * p * p * 3)
    n, y, x = 1, 1, 2  # framelet 1, token row 1, token column 2
    block = video[0, n * f : (n + 1) * f, y * p : (y + 1) * p, x * p : (x + 1) * p]  # (f, p, p, 3)
    torch.testing.assert_close(tokens[0, n, y * 3 + x], block.reshape(-1))
    torch.testing.assert_close(unpatchify(tokens, f, p, (2, 3)), video)
    with pytest.raises(ValueError, match="does not tile"):
        patchify(torch.zeros(1, 3, 8, 8, 3), 2, 4)


def test_uint8_conversion_round_trips():
    pixels = torch.arange(256, dtype=torch.uint8)
    torch.testing.assert_close(to_uint8(from_uint8(pixels)), pixels)
    assert from_uint8(pixels).min() == -1 and from_uint8(pixels).max() == 1


def test_fresh_model_predicts_zero_with_zero_gates():
    model = build_renderer("tiny", image_size=32, num_blocks=2)
    x = torch.randn(1, 4, 32, 32, 3)
    out = model(x, torch.rand(1, 2), torch.randn(1, 4, 32, 32, 3))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    assert torch.count_nonzero(model.adaln.weight) == 0
    assert all(torch.count_nonzero(block.adaln_offset) == 0 for block in model.blocks)


def test_later_framelets_never_change_earlier_outputs(tiny_model):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 6, 32, 32, 3, generator=generator, dtype=torch.float64)
    cond = torch.randn(1, 6, 32, 32, 3, generator=generator, dtype=torch.float64)
    t = torch.rand(1, 3, generator=generator, dtype=torch.float64)
    out = tiny_model(x, t, cond)
    changed = x.clone()
    changed[:, 4:] += 1.0  # the last framelet only
    out2 = tiny_model(changed, t, cond)
    torch.testing.assert_close(out2[:, :4], out[:, :4])
    assert not torch.allclose(out2[:, 4:], out[:, 4:])


def test_null_condition_and_per_sample_dropout(tiny_model):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 32, 32, 3, generator=generator, dtype=torch.float64)
    cond = torch.randn(2, 4, 32, 32, 3, generator=generator, dtype=torch.float64)
    t = torch.full((2, 2), 0.5, dtype=torch.float64)
    conditioned, unconditioned = tiny_model(x, t, cond), tiny_model(x, t, None)
    dropped = tiny_model(x, t, cond, drop_cond=torch.tensor([False, True]))
    torch.testing.assert_close(dropped[0], conditioned[0])
    torch.testing.assert_close(dropped[1], unconditioned[1])
    assert not torch.allclose(conditioned[1], unconditioned[1])


def test_return_layers_gives_hidden_states_of_chosen_blocks(tiny_model):
    x = torch.randn(1, 4, 32, 32, 3, dtype=torch.float64)
    out, hidden = tiny_model(x, torch.rand(1, 2, dtype=torch.float64), None, return_layers=[1])
    assert set(hidden) == {1} and hidden[1].shape == (1, 2, 4, tiny_model.config.width)
    with pytest.raises(ValueError, match="return_layers"):
        tiny_model(x, torch.rand(1, 2, dtype=torch.float64), None, return_layers=[3])


@pytest.mark.parametrize(("name", "low", "high"), [("tiny", 3e6, 8e6), ("small", 20e6, 30e6), ("base", 85e6, 110e6)])
def test_presets_have_their_documented_sizes(name, low, high):
    with torch.device("meta"):
        model = Renderer(RENDERER_PRESETS[name]())
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert model.config.patch_frames == 2 and model.config.patch_size == 16


def test_shared_adaln_is_one_projection_for_all_blocks():
    shared = build_renderer("tiny", image_size=32, num_blocks=3)
    separate = build_renderer("tiny", image_size=32, num_blocks=3, shared_adaln=False)
    width = shared.config.width
    assert shared.adaln is not None and all(block.adaln is None for block in shared.blocks)
    assert all(block.adaln.weight.shape == (6 * width, width) for block in separate.blocks)


def test_unknown_preset_is_named():
    with pytest.raises(
        ValueError,
        match="unknown renderer preset 'huge'; known: tiny, tiny-head, tiny-p8, tiny-p8-head, tiny-overlap, "
        "tiny-overlap-head, tiny-overlap-blend, small, base",
    ):
        build_renderer("huge")


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # eager is the reference here
@pytest.mark.parametrize("window", [1, 3, None])
def test_flex_attention_equals_dense_mask(window):
    """The FlexAttention block mask gives the dense-mask pass's output, windowed or not (forward only:
    FlexAttention has no backward on the CPU; tests/neural_render/test_cuda.py checks gradients)."""
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2))
    generator = torch.Generator().manual_seed(4)
    n, f = 6, model.config.patch_frames
    x, cond = (torch.randn(2, n * f, 32, 32, 3, generator=generator) for _ in range(2))
    t = torch.rand(2, n, generator=generator)
    with torch.no_grad():
        dense = model(x, t, cond, window=window)
        model.attention = "flex"
        flexed = model(x, t, cond, window=window)
        torch.testing.assert_close(flexed, dense, atol=1e-5, rtol=1e-4)
        if window is not None:  # the window is really applied
            assert not torch.allclose(model(x, t, cond, window=None), flexed)


def test_unknown_attention_backend_is_an_error():
    with pytest.raises(ValueError, match="attention='xformers': choose one of sdpa, flex"):
        Renderer(RENDERER_PRESETS["tiny"](), attention="xformers")


def test_activation_checkpointing_recomputes_blocks_with_equal_gradients():
    """Recomputing each block in the backward pass gives the same loss and gradients, and really
    recomputes: every block runs twice per training step instead of once."""
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2, dtype=torch.float64))
    generator = torch.Generator().manual_seed(8)
    x, cond = (torch.randn(2, 6, 32, 32, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    t = torch.rand(2, 3, generator=generator, dtype=torch.float64)
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))  # recomputation may stop early
    results = []
    for recompute in (False, True):
        model.checkpoint_activations = recompute
        calls.clear()
        loss = model(x, t, cond, window=2).square().mean()
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        results.append((loss.detach(), [g for g in grads if g is not None], len(calls)))
    (loss, grads, plain_calls), (loss_r, grads_r, recompute_calls) = results
    assert (plain_calls, recompute_calls) == (1, 2)
    assert len(grads_r) == len(grads) > 20
    torch.testing.assert_close(loss_r, loss)
    for a, b in zip(grads_r, grads, strict=True):
        torch.testing.assert_close(a, b)


def test_overlapping_patches_hold_their_neighbours_margins():
    """Each token of an overlapping patchify holds its own patch in the middle, `overlap` pixels of the
    neighbouring patches around it and zeros beyond the frame; in the network, a condition change one pixel
    past a patch's edge moves that token's embedding, which disjoint patches cannot see."""
    video = torch.randn(1, 2, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    disjoint = patchify(video, 2, 16).reshape(1, 1, 2, 3, 2, 16, 16, 3)  # (b, n, y, x, f, p, q, k)
    windows = patchify(video, 2, 16, overlap=4).reshape(1, 1, 2, 3, 2, 24, 24, 3)
    assert torch.equal(windows[..., 4:20, 4:20, :], disjoint)
    assert torch.equal(windows[:, :, 0, 0, :, 4:20, 20:24], disjoint[:, :, 0, 1, :, :, 0:4])  # right neighbour
    assert torch.equal(windows[:, :, 1, 2, :, 0:4, 4:20], disjoint[:, :, 0, 2, :, 12:16, :])  # the one above
    assert windows[:, :, 0, :, :, 0:4].abs().max() == 0 and windows[:, :, :, 2, :, :, 20:].abs().max() == 0
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2, patch_overlap=4))
    plain = randomize(build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2))
    cond = torch.randn(1, 2, 32, 32, 3)
    changed = cond.clone()
    changed[:, :, 5, 16] += 3.0  # the first column of the second patch column
    for net, sees in ((model, True), (plain, False)):
        first = net.embed_condition(changed, None, (1, 1, 4)) - net.embed_condition(cond, None, (1, 1, 4))
        assert bool(first[0, 0, 0].abs().max() > 0) is sees  # token (0, 0): its right margin holds the change
    assert model.x_embedder.in_features == 2 * 24 * 24 * 3 and plain.x_embedder.in_features == 2 * 16 * 16 * 3


def test_blended_paintings_give_back_a_video_and_meet_without_a_step():
    """Tokens that paint what overlapping patchify cut give the video back exactly (the blend weights are
    normalised everywhere, the frame's edge included); tokens painting flat values meet in a ramp across the
    overlap, where disjoint patches meet in one step; a network with a decode overlap paints windows."""
    video = torch.randn(2, 4, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    for overlap in (2, 4, 8):
        tokens = patchify(video, 2, 16, overlap=overlap)
        torch.testing.assert_close(unpatchify(tokens, 2, 16, (2, 3), overlap), video, rtol=0, atol=1e-6)
    weights = blend_weights(24)
    assert torch.equal(weights, weights.T) and torch.equal(weights, weights.flip(0))
    assert weights.min() > 0 and weights[11, 11] == weights.max() == 1 and weights[0, 0] < 0.01 * weights.max()
    flat = torch.zeros(1, 1, 6, 2 * 24 * 24 * 3)
    flat[:, :, 1::2] = 1.0  # tokens 1, 3, 5 of the 2 x 3 grid paint 1, their neighbours 0
    blended = unpatchify(flat, 2, 16, (2, 3), 4)[0, 0, 5, :, 0]  # one row of pixels through three patches
    steps = blended.diff().abs()
    assert steps.max() < 0.2 and torch.equal(blended[[0, 11, 20, 24, 40]], torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0]))
    assert blended[15] < 0.5 < blended[16] and abs(float(blended[15] + blended[16]) - 1) < 1e-6  # 0 to 1 in 12..19
    disjoint = unpatchify(torch.zeros(1, 1, 6, 2 * 16 * 16 * 3).index_fill(2, torch.tensor([1, 4]), 1.0), 2, 16, (2, 3))
    assert disjoint[0, 0, 5, :, 0].diff().abs().max() == 1.0
    model = build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2, decode_overlap=4)
    assert model.final_layer.linear.out_features == 2 * 24 * 24 * 3


def test_pixel_head_draws_locally_from_the_full_resolution_condition():
    """The head's residual at a pixel depends on the condition within 2 pixels (two 3x3 convolutions), so a
    change at the last pixel of a patch reaches into the next patch but not further; in the network it sees
    nothing of a dropped condition, and a fresh head is the identity."""
    generator = torch.Generator().manual_seed(0)
    head = randomize(PixelHead(3, 3, 8)).double()
    x = torch.randn(1, 2, 32, 32, 3, generator=generator, dtype=torch.float64)
    cond = torch.randn(1, 2, 32, 32, 3, generator=generator, dtype=torch.float64)
    changed = cond.clone()
    changed[:, :, 8, 15] += 3.0  # the last column of the first patch column (16-px patches)
    moved = (head(x, changed) - head(x, cond)).abs().amax(dim=(0, 1, 4))  # (H, W)
    assert moved[8, 15] > 0 and moved[8, 16] > 0 and moved[8, 17] > 0  # across the boundary
    assert moved[8, 18] == 0 and moved[11, 15] == 0 and moved[:, :13].max() == 0  # and no further
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2, pixel_head=8)).double()
    t, dropped = torch.full((1, 1), 0.5, dtype=torch.float64), torch.ones(1, dtype=torch.bool)
    torch.testing.assert_close(model(x, t, cond, drop_cond=dropped), model(x, t, changed, drop_cond=dropped))
    assert not torch.equal(model(x, t, cond), model(x, t, changed))
    fresh = build_renderer("tiny", image_size=32, num_blocks=1, pixel_head=8)
    assert fresh(x.float(), t.float(), cond.float()).abs().max() == 0  # zero-initialised: it predicts 0, as without


def test_looks_start_as_no_look_and_then_choose_what_is_painted():
    """A network given looks paints exactly as without them until its look vectors are learnt; then each clip
    paints its own look, and -1 (no look) what the look-less network paints."""
    options = dict(image_size=32, num_blocks=2, width=64, heads=2, dtype=torch.float64)
    plain = randomize(build_renderer("tiny", **options))
    looks = build_renderer("tiny", looks=("a", "b"), **options)
    missing, unexpected = looks.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["look_embedding"] and not unexpected
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 32, 32, 3, generator=generator, dtype=torch.float64)
    cond = torch.randn(3, 4, 32, 32, 3, generator=generator, dtype=torch.float64)
    t = torch.rand(3, 2, generator=generator, dtype=torch.float64)
    expected = plain(x, t, cond)
    torch.testing.assert_close(looks(x, t, cond, look=torch.tensor([0, 1, -1])), expected)  # zero vectors
    with torch.no_grad():
        looks.look_embedding[1] = torch.randn(64, generator=generator, dtype=torch.float64) / 64
    painted = looks(x, t, cond, look=torch.tensor([0, 1, -1]))
    torch.testing.assert_close(painted[0], expected[0])  # look "a" is still zero
    assert (painted[1] - expected[1]).abs().mean() > 1e-3  # look "b" moved
    torch.testing.assert_close(painted[2], expected[2])  # no look
    torch.testing.assert_close(looks(x, t, cond), expected)  # no look given at all
    assert looks.config.look_index("b") == 1 and looks.config.look_index("any") == looks.config.look_index(None) == -1
    with pytest.raises(ValueError, match="look 'c': this renderer paints any, a, b"):
        looks.config.look_index("c")
    with pytest.raises(ValueError, match=r"look 'a': this renderer paints only 'any' \(it has no looks\)"):
        plain.config.look_index("a")


@pytest.mark.parametrize("bad", [("a", "a"), ("any",), ("",), "ab", (3,)])
def test_bad_looks_are_refused_naming_the_rule(bad):
    with pytest.raises(ValueError, match=r"RendererConfig.looks = .*; must be a list of distinct non-empty names"):
        build_renderer("tiny", image_size=32, looks=bad)
