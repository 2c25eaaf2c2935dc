"""The benchmark command runs end to end and reports what it promises."""

import re

from neural_render.bench import forward_flops, main
from neural_render.model import RENDERER_PRESETS


def test_bench_reports_cached_uncached_and_flat_memory(capsys):
    main(["--size", "32", "--steps", "2", "--framelets", "4", "--baseline-framelets", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert re.search(r"cached: +[\d.]+ ms/framelet +[\d.]+ frames/s", out)
    assert re.search(r"no cache: +[\d.]+ ms/framelet", out)
    assert "cache tensors never moved: True" in out and re.search(r"cache speed-up: [\d.]+x", out)


def test_flop_count_of_the_base_preset():
    """About 2 FLOPs per parameter per token, plus attention: base at 400 tokens, 1200 keys."""
    config = RENDERER_PRESETS["base"]()
    flops = forward_flops(config, 400, 1200)
    attention = 4 * 400 * 1200 * config.width * config.depth
    assert 0.9 < (flops - attention) / (2 * 400 * 94.1e6) < 1.0
