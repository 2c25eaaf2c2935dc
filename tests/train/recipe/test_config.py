"""The training config: presets, the curriculum, the learning rate, validation, old checkpoints' configs."""

import pytest

from spokester_train.recipe.config import TrainConfig, make_config
from spokester_train.recipe.loop import learning_rate


def test_learning_rate_warms_up_holds_and_cools_down():
    config = TrainConfig(lr=1.0, warmup_steps=10, cooldown_fraction=0.2, final_lr_fraction=0.05).with_total_steps(100)
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == 1.0 and rates[50] == 1.0 and rates[79] == 1.0
    assert rates[80] < 1.0 and rates[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))


def test_curriculum_is_cut_and_stretched_to_the_asked_steps():
    config = make_config("gpu-base")
    assert [s.image_size for s in config.stages] == [224, 320]
    assert [(s.clip_frames, s.batch_size) for s in config.stages] == [(16, 64), (256, 4)]
    cut = config.with_total_steps(100)
    assert [s.steps for s in cut.stages] == [100] and cut.total_steps == 100
    stretched = config.with_total_steps(config.stages[0].steps + 5)
    assert [s.steps for s in stretched.stages] == [config.stages[0].steps, 5]


def test_sky_to_zero_needs_the_deeplab_teacher():
    with pytest.raises(ValueError, match="sky_to_zero=True needs the deeplab teacher"):
        TrainConfig(extractors={"flow": "dis", "depth": "pydnet", "teacher": "dinov2"}, irepa=True)
    assert not TrainConfig(extractors={"flow": "dis", "depth": "pydnet"}, irepa=False, sky_to_zero=False).sky_to_zero


def test_the_evaluations_cache_settings_must_fit_its_sampling_steps():
    """Found when the config is made, not at the run's first evaluation hundreds of steps later."""
    with pytest.raises(
        ValueError, match=r"eval_cache_steps=\(None, 3, 6\): each must be None or in \[0, sample_steps=6\)"
    ):
        TrainConfig(sample_steps=6, eval_cache_steps=(None, 3, 6))
    with pytest.raises(ValueError, match="eval_cache_steps"):
        TrainConfig(sample_steps=0, eval_cache_steps=(None,))
    assert TrainConfig(sample_steps=6, eval_cache_steps=(None, 0, 5)).eval_cache_steps == (None, 0, 5)
