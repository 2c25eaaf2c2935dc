"""Condition sources: bounded for any input, fitted statistics standardise, mixtures pool, JSON round trips
(version 1 included)."""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from neural_render import ConditionSource, ConditionStats


def _road(n=8, size=16, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    depth = scale * rng.uniform(0.05, 5.0, (n, size, size, 1)).astype(np.float32)
    depth[:, :4] = 0.0  # sky
    flow = rng.normal((0.5, 2.0), (1.5, 3.0), (n, size, size, 2)).astype(np.float32)
    return depth, flow


@pytest.mark.parametrize("log_depth", [True, False])
def test_pathological_inputs_stay_finite_and_bounded(log_depth):
    """Camera inside a car: huge inverse depth and flow (also inf, negative, NaN) stay in [-clip, clip]."""
    depth, flow = _road()
    stats = ConditionStats(sources={"game": ConditionSource.fit(depth, flow, log_depth=log_depth)})
    bad_depth = np.array([1e6, 1e30, 3e38, np.inf, -5.0, 0.0, np.nan, 1e-30], np.float32).reshape(8, 1)
    bad_flow = np.array([1e6, -1e6, 3e38, -np.inf, np.inf, np.nan, 0.0, -3e38], np.float32)
    bad_flow = np.stack([bad_flow, bad_flow[::-1]], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = stats.normalize(bad_depth, bad_flow)
    assert out.shape == (8, 3) and torch.isfinite(out).all()
    assert out.abs().max() <= stats.clip
    assert out[0, 0] == stats.clip and out[0, 1] == stats.clip  # 1e6 is as near / as fast as can be
    assert out[5, 0] == out[6, 0] == out[7, 0]  # sky, NaN and 1e-30 all read as the floor


def test_fitted_statistics_standardise_their_data():
    depth, flow = _road(n=20)
    out = ConditionSource.fit(depth, flow).normalize(depth, flow).reshape(-1, 3)
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(3), atol=0.05, rtol=0)


def test_log_depth_removes_the_unknown_scale_of_relative_depth():
    """A video's relative inverse depth (unknown scale x37) normalises like the game's metric one."""
    depth, flow = _road()
    game, video = ConditionSource.fit(depth, flow), ConditionSource.fit(37.0 * depth, flow)
    torch.testing.assert_close(game.normalize(depth, flow), video.normalize(37.0 * depth, flow), atol=1e-4, rtol=0)
    linear = ConditionSource.fit(37.0 * depth, flow, log_depth=False)
    assert not torch.allclose(linear.normalize(depth, flow), game.normalize(depth, flow), atol=1e-2)


def test_sky_at_clip_reads_the_sky_alike_in_every_source_and_leaves_the_rest():
    """Sources with more or less sky standardise their floor differently; with sky_at_clip the sky (and anything
    at or beyond the floor) reads -clip in each, and every other pixel reads as without the flag."""
    depth_a, flow = _road(n=8)
    depth_b = depth_a.copy()
    depth_b[:, :10] = 0.0  # much more sky: a lower mean log depth, a floor nearer the mean
    a, b = ConditionSource.fit(depth_a, flow), ConditionSource.fit(depth_b, flow)
    sky = depth_b[..., 0] == 0
    plain = a.normalize(depth_b, flow)[..., 0], b.normalize(depth_b, flow)[..., 0]
    assert abs(float(plain[0][sky][0]) - float(plain[1][sky][0])) > 0.3  # the same sky, two codes
    assert float(plain[1][sky][0]) > -b.clip
    for source, before in zip((a, b), plain, strict=True):
        flagged = dataclasses.replace(source, sky_at_clip=True)
        after = flagged.normalize(depth_b, flow)[..., 0]
        assert (after[sky] == -source.clip).all() and torch.equal(after[~sky], before[~sky])
        at_floor = np.full((2, 1), source.depth_floor, np.float32)
        assert (flagged.normalize(at_floor, np.zeros((2, 2), np.float32))[:, 0] == -source.clip).all()
        again = ConditionSource.from_dict(json.loads(json.dumps(flagged.to_dict())))
        assert again.sky_at_clip and again.flags["sky_at_clip"]
    old = a.to_dict()
    del old["sky_at_clip"]  # statistics saved before the flag read the floor as before
    assert not ConditionSource.from_dict(old).sky_at_clip
    with pytest.raises(ValueError, match="different transforms"):
        ConditionSource.pool([a, dataclasses.replace(b, sky_at_clip=True)])


def test_car_slabs_is_a_flag_of_the_source_that_old_statistics_lack():
    depth, flow = _road(n=4)
    source = ConditionSource.fit(depth, flow, car_slabs=True)
    assert source.car_slabs and source.flags["car_slabs"]
    assert ConditionSource.from_dict(json.loads(json.dumps(source.to_dict()))) == source
    old = source.to_dict()
    del old["car_slabs"]  # statistics saved before the flag: their videos' depth was read as stored
    assert not ConditionSource.from_dict(old).car_slabs
    with pytest.raises(ValueError, match="different transforms"):
        ConditionSource.pool([source, dataclasses.replace(source, car_slabs=False)])
    with pytest.raises(ValueError, match="car_slabs = 1; must be true or false"):
        dataclasses.replace(source, car_slabs=1)


def test_statistics_survive_json_and_refuse_unknown_fields():
    depth, flow = _road()
    video = ConditionSource.fit(3 * depth, flow, sky_to_zero=True, clip=3.0)
    stats = ConditionStats.unit("game").with_source("video", video)
    again = ConditionStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats and sorted(again.sources) == ["game", "video"]
    assert again.sources["video"].sky_to_zero and again.sources["video"].clip == 3.0  # the flags are data
    torch.testing.assert_close(again.normalize(depth, flow, "video"), stats.normalize(depth, flow, "video"))
    data = stats.to_dict()
    data["sources"]["game"]["depth_scale"] = 2.0
    with pytest.raises(ValueError, match="unknown fields"):
        ConditionStats.from_dict(data)
    with pytest.raises(KeyError, match="no condition statistics for source 'sim'"):
        stats.normalize(depth, flow, "sim")


def test_fit_reads_memmaps_in_chunks(tmp_path):
    depth, flow = _road(n=10)
    stored = np.lib.format.open_memmap(tmp_path / "depth.npy", mode="w+", dtype=np.float32, shape=depth.shape)
    stored[:] = depth
    whole, chunked = ConditionSource.fit(depth, flow, chunk=100), ConditionSource.fit(stored, flow, chunk=3)
    assert whole.frames == chunked.frames == 10
    assert np.isclose(whole.depth_mean, chunked.depth_mean) and np.isclose(whole.flow_std[1], chunked.flow_std[1])
    with pytest.raises(ValueError, match="no positive inverse depth"):
        ConditionSource.fit(np.zeros_like(depth), flow)


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = values.astype(np.float64).reshape(-1, values.shape[-1])
    return flat.mean(axis=0), flat.std(axis=0)


def test_a_flow_mixture_weighs_its_parts_equally():
    """Flow given as parts (a video's skips) is fitted as the mixture a clip is drawn from: each part
    equally likely, whatever its frame count; depth comes from the depth array alone."""
    depth, slow = _road(n=12)
    fast = 3.0 * _road(n=6, seed=1)[1] + 2.0
    source = ConditionSource.fit(depth, [slow, fast])
    equal = np.concatenate([slow, np.concatenate([fast, fast])])  # fast repeated: as many frames as slow
    mean, std = _moments(equal)
    np.testing.assert_allclose(source.flow_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(source.flow_std, std, rtol=1e-9)
    assert not np.allclose(source.flow_mean, _moments(np.concatenate([slow, fast]))[0], rtol=1e-3)  # not pooled
    alone = ConditionSource.fit(depth, slow)
    assert (source.depth_mean, source.depth_std, source.depth_floor) == (
        alone.depth_mean,
        alone.depth_std,
        alone.depth_floor,
    )


def test_pooled_sources_have_the_moments_of_their_data_and_must_share_flags():
    depth_a, flow_a = _road(n=12)
    depth_b, flow_b = _road(n=4, scale=5.0, seed=2)
    a, b = ConditionSource.fit(depth_a, flow_a), ConditionSource.fit(depth_b, flow_b)
    pooled = ConditionSource.pool([a, b])
    assert pooled.frames == 16 and pooled.flags == a.flags
    mean, std = _moments(np.concatenate([flow_a, flow_b]))  # weighted by frames: the moments of all frames
    np.testing.assert_allclose(pooled.flow_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(pooled.flow_std, std, rtol=1e-9)
    assert a.depth_mean < pooled.depth_mean < b.depth_mean  # b is 5x nearer: its log depth is larger
    with pytest.raises(ValueError, match="different transforms"):
        ConditionSource.pool([a, ConditionSource.fit(depth_b, flow_b, sky_to_zero=True)])


def test_version_1_statistics_read_with_their_shared_flags():
    """Checkpoints of format version 1 kept log_depth and clip once and no sky_to_zero (their training config
    said it, for the video sources)."""
    game, video = ConditionSource.fit(*_road()), ConditionSource.fit(*_road(seed=3))
    fields = {name: {k: v for k, v in s.to_dict().items() if k not in ("log_depth", "sky_to_zero", "clip")}
              for name, s in (("game", game), ("video", video), ("video/road", video))}  # fmt: skip
    stats = ConditionStats.from_version_1({"log_depth": True, "clip": 4.0, "sources": fields}, sky_to_zero_videos=True)
    assert stats.sources["game"] == game and not stats.sources["game"].sky_to_zero
    assert stats.sources["video"].sky_to_zero and stats.sources["video/road"].sky_to_zero
    assert stats.sources["video"].depth_mean == video.depth_mean and stats.clip == 4.0
    with pytest.raises(ValueError, match="need fields log_depth, clip, sources"):
        ConditionStats.from_version_1({"sources": fields})


def test_a_car_mask_comes_after_depth_and_flow_at_the_clip():
    depth, flow = _road(n=2)
    source = ConditionSource.fit(depth, flow)
    cars = np.zeros(depth.shape, np.uint8)
    cars[:, 3:5] = 1
    told = source.normalize(depth, flow, cars)
    assert told.shape == (*depth.shape[:-1], 4)
    torch.testing.assert_close(told[..., :3], source.normalize(depth, flow))
    assert (told[..., 3][torch.from_numpy(cars[..., 0] > 0)] == source.clip).all()
    assert (told[..., 3][torch.from_numpy(cars[..., 0] == 0)] == 0).all()
    with pytest.raises(ValueError, match="need a car mask of the depth's shape"):
        source.normalize(depth, flow, cars[..., 0])
