"""The benchmark command runs end to end and reports what it promises."""

import re

import pytest

from neural_render import build_renderer, save_renderer
from neural_render.bench import bench_game, forward_flops, main
from neural_render.model import RENDERER_PRESETS
from neural_render.sampler import native_bf16

from .conftest import randomize


def test_bench_reports_cached_uncached_and_flat_memory(capsys):
    main(["--size", "32", "--steps", "2", "--framelets", "4", "--baseline-framelets", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert re.search(r"cached: +[\d.]+ ms/framelet +[\d.]+ frames/s", out)
    assert re.search(r"no cache: +[\d.]+ ms/framelet", out)
    assert "cache tensors never moved: True" in out and re.search(r"cache speed-up: [\d.]+x", out)


def test_bench_renders_in_bf16_where_native_unless_told_float32(capsys):
    argv = ["--size", "32", "--steps", "1", "--framelets", "1", "--baseline-framelets", "1", "--device", "cpu"]
    main(argv)
    default = capsys.readouterr().out.splitlines()[0]
    main([*argv, "--float32"])
    baseline = capsys.readouterr().out.splitlines()[0]
    assert default.endswith("bf16 autocast" if native_bf16("cpu") else "float32") and baseline.endswith("float32")


def test_flop_count_of_the_base_preset():
    """About 2 FLOPs per parameter per token, plus attention: base at 400 tokens, 1200 keys."""
    config = RENDERER_PRESETS["base"]()
    flops = forward_flops(config, 400, 1200)
    attention = 4 * 400 * 1200 * config.width * config.num_blocks
    assert 0.9 < (flops - attention) / (2 * 400 * 94.1e6) < 1.0


def test_profile_lists_where_the_time_goes(capsys):
    """On the CPU the profile sums operator self times: the matmuls (addmm) of a 2-step framelet are 3
    passes x (4 blocks x 4 linears + 6 others) + the condition's embedding, once for all passes = 67 calls
    per framelet, and its share is the largest."""
    main(["--size", "32", "--steps", "2", "--framelets", "2", "--baseline-framelets", "1", "--device", "cpu",
          "--profile", "3"])  # fmt: skip
    out = capsys.readouterr().out
    pattern = r"profile \(3 framelets\): wall ([\d.]+) ms/framelet, CPU operators \(self time\) ([\d.]+) ms"
    head = re.search(pattern, out)
    assert head and 0 < float(head[2]) <= float(head[1]), out
    rows = re.findall(r"^ +([\d.]+) ms +([\d.]+)% +(\d+) calls  (\S+)$", out, flags=re.M)
    assert rows and [float(r[0]) for r in rows] == sorted((float(r[0]) for r in rows), reverse=True)
    assert ("67", "aten::addmm") in [(r[2], r[3]) for r in rows], rows


@pytest.mark.parametrize(
    "argv, status, words",
    [
        (["--steps", "0"], 2, "argument --steps: must be >= 1, got 0"),
        (["--cache-at-step", "-1"], 2, "argument --cache-at-step: must be >= 0, got -1"),
        (["--cache-at-step", "x"], 2, "argument --cache-at-step: must be an integer, got 'x'"),
        (["--size", "32", "--steps", "2", "--cache-at-step", "2", "--device", "cpu"], 1, "cache_at_step must be"),
        (["--preset", "huge", "--device", "cpu"], 1, "unknown renderer preset 'huge'"),
        (["--checkpoint", "r.safetensors"], 2, "--checkpoint: only with --game"),
        (["--game", "--checkpoint", "nope.safetensors", "--device", "cpu"], 1, "nope.safetensors: no such file"),
    ],
)
def test_bad_options_are_one_line_errors(argv, status, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == status and len(err.splitlines()) == 1, err
    assert err.startswith("python -m neural_render.bench: error: ") and words in err, err


@pytest.mark.parametrize("given, shown", [("None", "cache_at_step None"), ("0", "cache_at_step 0")])
def test_cache_at_step_takes_a_step_or_none(given, shown, capsys):
    main(["--size", "32", "--steps", "1", "--window", "1", "--framelets", "1", "--baseline-framelets", "1",
          "--device", "cpu", "--cache-at-step", given])  # fmt: skip
    assert f"{shown}, 1 stream(s)" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:.*normalised with unit statistics")
def test_game_rate_through_the_wrapper_uses_the_checkpoints_game(tmp_path, capsys):
    """A first-person renderer is timed in its own game (camera, scene, frame size and sampling steps from its
    checkpoint), and painting costs: the painted game is slower than the same game alone."""
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=1, width=64, heads=2))
    game = {"camera": "first_person", "scene": "open"}
    path = save_renderer(tmp_path / "r", model, game=game, num_steps=3)
    rate = bench_game(path, steps=3, warmup=1, num_steps=2)
    assert (rate.camera, rate.scene, rate.image_size, rate.num_steps) == ("first_person", "open", 32, 2)
    assert 0 < rate.painted < rate.alone
    main(["--game", "--checkpoint", str(path), "--framelets", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "32x32, first_person camera, open scene, 3 steps" in out
    assert re.search(r"through NeuralRenderObservation: +[\d.]+ frames/s +\[2 wrapper steps\]", out), out
    assert re.search(r"the game alone: +[\d.]+ frames/s", out), out
