"""Evaluation: the command's JSON, PSNR ordering of renderers, augmentation and iREPA pieces."""

import json
import math

import numpy as np
import pytest
import torch

from neural_render import ConditionStats, build_renderer, save_renderer
from train.augment import augment_condition
from train.cache import Cache, extract
from train.config import Augment
from train.evaluate import MAX_PSNR, EvalClip, evaluate_clip, load_eval_clip, psnr
from train.evaluate import main as evaluate_main
from train.irepa import Projector, irepa_loss, normalise_teacher


@pytest.fixture(scope="module")
def eval_clip(road_clip, tmp_path_factory) -> EvalClip:
    """8 real road frames at 32 px with their DIS flow (depth is not needed by the test doubles)."""
    root = tmp_path_factory.mktemp("eval-cache")
    cache = Cache(extract(road_clip, root, size=32, depth=None, teacher=None, max_frames=9, progress=False))
    frames = np.asarray(cache.stream("frames")[1:9])
    flow = np.asarray(cache.stream("flow_1")[1:9], dtype=np.float32)
    return EvalClip(frames=frames, depth=np.ones((8, 32, 32, 1), np.float32), flow=flow)


class ReplayRenderer:
    """Test double: renders the real frames back, with Gaussian noise of a chosen std (0 = perfect)."""

    def __init__(self, frames: np.ndarray, noise: float):
        self.frames, self.noise, self.index = frames, noise, 0
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None):
        self.index, self.rng = 0, np.random.default_rng(seed)

    def step(self, depth, flow):
        real = self.frames[self.index : self.index + len(depth)].astype(np.float64)
        self.index += len(depth)
        noisy = real + self.noise * self.rng.standard_normal(real.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def test_psnr_orders_a_perfect_renderer_above_noisy_ones(eval_clip):
    figures = {
        noise: evaluate_clip(lambda k, n=noise: ReplayRenderer(eval_clip.frames, n), eval_clip, [None, 3], 2)
        for noise in (0.0, 8.0, 40.0)
    }
    perfect, slightly, very = (figures[n] for n in (0.0, 8.0, 40.0))
    assert perfect["psnr"] == {"none": MAX_PSNR, "3": MAX_PSNR} and perfect["ar_loss"]["none"] == 0.0
    assert perfect["psnr"]["none"] > slightly["psnr"]["none"] > very["psnr"]["none"] > 0
    assert 28 < slightly["psnr"]["none"] < 32  # 20 log10(255 / 8) = 30.1 dB
    assert perfect["ar_loss"]["none"] < slightly["ar_loss"]["none"] < very["ar_loss"]["none"]
    # the real frames are as steady as the real frames; noise makes the rendering flicker
    assert perfect["warp_error"]["none"] == pytest.approx(perfect["warp_error_real"], abs=1e-4)
    assert very["warp_error"]["none"] > slightly["warp_error"]["none"] > perfect["warp_error"]["none"]


def test_psnr_of_known_error():
    real = np.zeros((2, 4, 4, 3), np.uint8)
    assert psnr(real + 1, real) == pytest.approx(20 * math.log10(255.0))
    assert psnr(real, real) == MAX_PSNR


def test_eval_command_prints_the_documented_json(road_clip, tmp_path, capsys):
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, depth=2, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"), {"test": True})
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "4", "--json"]
    argv += ["--cache-at-step", "none,1", "--steps", "2", "--cache", str(tmp_path / "cache")]
    result = evaluate_main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    for key in ("psnr", "ar_loss", "warp_error"):
        assert set(printed[key]) == {"none", "1"} and all(math.isfinite(v) for v in printed[key].values())
    assert math.isfinite(printed["warp_error_real"]) and printed["frames"] == 4
    # the untrained network predicts 0 (mid grey) everywhere: PSNR is that of a grey picture
    assert 5 < printed["psnr"]["none"] < 20


@pytest.mark.parametrize(
    "extra, named",
    [(["--cache-at-step", "12"], "none or 0..11"), (["--frames", "1"], "--frames"), (["--window", "0"], "--window")],
)
def test_eval_command_bad_arguments_are_one_line(extra, named, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate_main(["--video", "v.mp4", *extra])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and err.count("\n") == 1


def test_eval_clip_needs_the_depth_stream(road_clip, tmp_path):
    cache = Cache(extract(road_clip, tmp_path, size=32, depth=None, teacher=None, max_frames=8, progress=False))
    with pytest.raises(KeyError, match="depth"):
        load_eval_clip(cache, 5, 2)


def test_condition_augmentation_is_bounded_seeded_and_optional():
    cond = torch.randn(2, 4, 16, 16, 3).clamp(-4, 4)
    draw = lambda seed, prob: augment_condition(cond, Augment(prob=prob), 4.0, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(0, 0.0), cond)
    changed = draw(0, 1.0)
    assert changed.abs().max() <= 4.0 and not torch.allclose(changed, cond)
    torch.testing.assert_close(draw(0, 1.0), changed)
    assert not torch.equal(draw(1, 1.0), changed)


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
