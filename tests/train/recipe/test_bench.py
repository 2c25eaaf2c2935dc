"""The training benchmark: its FLOP count follows the window mask, and the command prints its figures."""

import re

import pytest
import torch

from neural_render.layout import framelet_mask
from neural_render.model import RENDERER_PRESETS
from spokester_train.recipe.bench import main, training_flops
from spokester_train.recipe.config import Stage


def test_training_flops_count_only_the_pairs_the_window_allows():
    """Changing the window changes the count by exactly 3 x 4 d x depth per allowed (query, key) pair
    of the framelet mask, per clip."""
    config = RENDERER_PRESETS["base"]()
    stage = Stage(steps=1, image_size=320, clip_frames=16, batch_size=2)
    n, s, d = 8, config.tokens_per_framelet, config.width
    pairs = {w: int(framelet_mask(n, s, w).sum()) for w in (1, 3, None)}
    for wide, narrow in ((None, 1), (3, 1), (None, 3)):
        expected = 3 * stage.batch_size * 4 * d * config.num_blocks * (pairs[wide] - pairs[narrow])
        assert training_flops(config, stage, wide) - training_flops(config, stage, narrow) == pytest.approx(expected)


def test_bench_prints_a_line_per_stage(capsys):
    main(["--steps", "2", "--warmup", "1", "--size", "32", "--clip-frames", "4", "--batch", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert "training preset cpu-tiny (tiny renderer), irepa True" in out
    line = re.search(r"32\^2 x 4 frames x batch 2, sdpa: +([\d.]+) ms/step +([\d.]+) steps/s", out)
    assert line and float(line[2]) == pytest.approx(1000 / float(line[1]), rel=0.01)
    assert re.search(r"4500 steps = [\d.]+ h", out)


def test_bench_refuses_flex_on_the_cpu(capsys):
    with pytest.raises(SystemExit):
        main(["--attention", "flex", "--steps", "1"])
    assert "attention='flex' needs a CUDA device" in capsys.readouterr().err


def test_gpu_base_preset_and_command_line_pick_the_attention_backend():
    from spokester_train.__main__ import build_config, parse_args
    from spokester_train.recipe.config import config_from_dict, make_config

    preset = make_config("gpu-base")
    assert preset.attention == "flex"
    assert [stage.checkpoint_activations for stage in preset.stages] == [False, True]
    assert config_from_dict(preset.to_dict()) == preset  # the new stage field survives a checkpoint round trip
    args = parse_args(["--preset", "gpu-base", "--video", "v.mp4", "--out", "o", "--attention", "sdpa"])
    assert build_config(args).attention == "sdpa"
    args = parse_args(["--preset", "cpu-tiny", "--video", "v.mp4", "--out", "o", "--attention", "flex"])
    with pytest.raises(ValueError, match="attention='flex' needs a CUDA device"):
        build_config(args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("recompute", ["--checkpoint-activations", "--no-checkpoint-activations"])
def test_one_training_step_of_each_backend_on_the_gpu(capsys, recompute):
    shape = ["--size", "64", "--clip-frames", "8", "--batch", "2", "--stage", "0"]
    main(["--preset", "gpu-base", "--no-compile", "--attention", "sdpa", "flex", "--steps", "1", "--warmup", "1",
                *shape, recompute])  # fmt: skip
    out = capsys.readouterr().out
    assert len(re.findall(r"64\^2 x 8 frames x batch 2, (sdpa|flex).*ms/step", out)) == 2, out
