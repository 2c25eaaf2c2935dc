"""Condition normalisation: bounded for any input, fitted statistics standardise, JSON round trip."""

import json
import warnings

import numpy as np
import pytest
import torch

from neural_render import ConditionStats
from neural_render.conditioning import fit_source_stats


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
    stats = ConditionStats.fit({"game": (depth, flow)}, log_depth=log_depth)
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
    out = ConditionStats.fit({"game": (depth, flow)}).normalize(depth, flow).reshape(-1, 3)
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(3), atol=0.05, rtol=0)


def test_log_depth_removes_the_unknown_scale_of_relative_depth():
    """A video's relative inverse depth (unknown scale x37) normalises like the game's metric one."""
    depth, flow = _road()
    stats = ConditionStats.fit({"game": (depth, flow), "video": (37.0 * depth, flow)})
    game, video = stats.normalize(depth, flow, "game"), stats.normalize(37.0 * depth, flow, "video")
    torch.testing.assert_close(game, video, atol=1e-4, rtol=0)
    linear = ConditionStats.fit({"video": (37.0 * depth, flow)}, log_depth=False)
    assert not torch.allclose(linear.normalize(depth, flow, "video"), game, atol=1e-2)


def test_statistics_survive_json_and_refuse_unknown_fields():
    depth, flow = _road()
    stats = ConditionStats.fit({"game": (depth, flow)}).with_source("video", 3 * depth, flow)
    again = ConditionStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats and sorted(again.sources) == ["game", "video"]
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
    whole, chunked = fit_source_stats(depth, flow, chunk=100), fit_source_stats(stored, flow, chunk=3)
    assert whole.frames == chunked.frames == 10
    assert np.isclose(whole.depth_mean, chunked.depth_mean) and np.isclose(whole.flow_std[1], chunked.flow_std[1])
    with pytest.raises(ValueError, match="no positive inverse depth"):
        fit_source_stats(np.zeros_like(depth), flow)
