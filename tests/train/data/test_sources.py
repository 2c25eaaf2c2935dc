"""Condition sources of the training data: a video's fit over its frame skips, the videos pooled, the game's."""

import numpy as np
import pytest

from neural_render import ConditionSource, ConditionStats
from spokester_train.data.sources import game_source, video_source, video_sources
from spokester_train.data.store import LabelStore


def test_video_source_fits_the_mixture_of_skips(small, road_clip, tmp_path):
    store = LabelStore(small(small.depth()))
    stats = video_source(store)
    flows = np.concatenate([store.stream(f"flow_{k}")[k:].astype(np.float64) for k in (1, 2, 3)])
    # equal weights per skip, as the dataset draws them; the counts differ by a frame, so nearly pooled
    np.testing.assert_allclose(stats.flow_mean, flows.reshape(-1, 2).mean(axis=0), rtol=0.05, atol=1e-3)
    np.testing.assert_allclose(stats.flow_std, flows.reshape(-1, 2).std(axis=0), rtol=0.05)
    assert stats.flow_std[1] > video_source(store, skips=(1,)).flow_std[1]  # skip 3 moves more
    log_depth = np.log(np.maximum(store.stream("depth")[..., None].astype(np.float64), stats.depth_floor))
    assert stats.depth_mean == pytest.approx(log_depth.mean(), rel=1e-6)
    normalised = ConditionStats(sources={"video": stats}).normalize(
        store.stream("depth")[..., None].astype(np.float32), store.stream("flow_1").astype(np.float32), "video"
    )
    assert (
        normalised.shape == (small.frames, small.size, small.size, 3) and abs(float(normalised[..., 0].mean())) < 0.05
    )


def test_training_videos_have_a_source_each_and_one_pooled(road_stores):
    parts = video_sources(road_stores, ["near", "far"], (1,), sky_to_zero=True)
    assert sorted(parts) == ["video", "video/far", "video/near"]
    assert parts["video/near"] == video_source(road_stores[0], (1,), sky_to_zero=True)
    assert parts["video"] == ConditionSource.pool([parts["video/near"], parts["video/far"]])
    assert parts["video"].frames == 12 + 9 and all(p.sky_to_zero for p in parts.values())
    with pytest.raises(ValueError, match="two training videos share the name 'road'"):
        video_sources(road_stores, ["road", "road"], (1,))


def test_the_games_source_is_a_seeded_ride_with_its_sky_at_zero():
    first, again, other = game_source(32, 8, seed=0), game_source(32, 8, seed=0), game_source(32, 8, seed=5)
    assert first == again and first != other and first.frames == 8
    assert not first.sky_to_zero and first.log_depth
    assert first.flow_mean[1] > 0  # riding forward: the road below the horizon streams down the picture
