"""Fixtures for the recipe tests: a tiny training run on the road clip's label store."""

import dataclasses

import pytest

from spokester_train.recipe.config import Stage, TrainConfig

TINY_NET = {"patch_size": 8, "width": 64, "num_blocks": 2, "heads": 2}


class TinyRun:
    """`tiny_config(**overrides)`: a 2-block `size` px training run of a few steps on 12 road frames."""

    size = 32

    def __init__(self, label_root, road_clip, out):
        self.base = TrainConfig(
            videos=(f"{road_clip}@0:12",),
            out=str(out),
            label_root=str(label_root),
            renderer_overrides=TINY_NET,
            stages=(Stage(steps=4, image_size=self.size, clip_frames=4, batch_size=2),),
            skips=(1,),
            warmup_steps=2,
            log_every=1,
            checkpoint_every=2,
            eval_every=0,
            eval_frames=4,
            sample_steps=2,
            eval_cache_steps=(None,),
            game_stats_frames=8,
            progress=False,
            threads=1,
        )

    def __call__(self, **overrides) -> TrainConfig:
        return dataclasses.replace(self.base, **overrides)


@pytest.fixture
def tiny_config(label_root, road_clip, tmp_path) -> TinyRun:
    return TinyRun(label_root, road_clip, tmp_path / "run")
