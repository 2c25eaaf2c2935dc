"""One optimiser step's loss (`spokester_train.recipe.optimizer_step`): its precision on the CPU."""

import pytest
import torch

from neural_render import FlowMatching, build_renderer
from spokester_train.__main__ import build_config, parse_args
from spokester_train.recipe.config import RESUMABLE_CHANGES, config_from_dict, make_config
from spokester_train.recipe.optimizer_step import clip_generators, step_loss, uses_bf16


def _loss(autocast):
    torch.manual_seed(0)
    model = build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2)
    with torch.no_grad():  # as if trained a while: the zero-initialised output layers would hide the precision
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    config = make_config("cpu-tiny", irepa=False, autocast=autocast)
    generator = torch.Generator().manual_seed(1)
    batch = {key: torch.rand((2, 4, 32, 32, 3), generator=generator) * 2 - 1 for key in ("x", "cond")}
    generators = clip_generators(0, 0, range(2), torch.device("cpu"))
    loss, parts = step_loss(
        model, model, FlowMatching.for_config(model.config), batch, config, clip=4.0, generators=generators,
        projector=None, layer=1,
    )  # fmt: skip
    return loss, parts


def test_bf16_autocast_is_for_cuda_unless_the_config_asks_for_it_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert make_config("cpu-tiny").autocast is None
    assert (uses_bf16(make_config("cpu-tiny"), cpu), uses_bf16(make_config("cpu-tiny"), cuda)) == (False, True)
    assert uses_bf16(make_config("cpu-tiny", autocast=True), cpu)
    assert not uses_bf16(make_config("gpu-tiny", autocast=False), cuda)
    float32, _ = _loss(None)
    assert float32.dtype == torch.float32 and torch.equal(float32, _loss(False)[0])  # None on the CPU: float32
    bf16, parts = _loss(True)
    assert bf16.dtype == torch.float32 and parts["diffusion"] == pytest.approx(float(float32), rel=0.05)
    assert float(bf16) != float(float32), "the passes ran in bf16"


def test_bf16_is_asked_for_on_the_command_line_and_may_change_on_resume():
    assert build_config(parse_args(["--video", "v.mp4", "--out", "o", "--bf16"])).autocast is True
    assert build_config(parse_args(["--video", "v.mp4", "--out", "o"])).autocast is None
    assert parse_args(["--resume", "--out", "o", "--bf16"]).bf16 and "autocast" in RESUMABLE_CHANGES
    old = make_config("cpu-tiny").to_dict()
    del old["autocast"]  # a checkpoint made before the field: bf16 on CUDA only, as now
    assert config_from_dict(old).autocast is None
