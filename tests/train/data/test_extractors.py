"""Extractors: the registry, DIS flow in the game's sign and units, PyDNet depth, DeepLab teacher features."""

import cv2
import numpy as np
import pytest

from spokester_train.data.extractors import (
    DEFAULT_EXTRACTORS,
    EXTRACTORS,
    FrameLabeler,
    build_extractor,
    register,
    warp_error,
    warp_previous,
)
from spokester_train.data.extractors.depth import crop_map
from spokester_train.data.video import read_video


@pytest.fixture(scope="module")
def pydnet():
    return build_extractor("depth", "pydnet")


@pytest.fixture(scope="module")
def deeplab():
    return build_extractor("teacher", "deeplab")


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (blurred noise): trackable at every pixel, no periodicity."""
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def test_registry_builds_by_name_and_rejects_unknown_and_duplicates():
    for kind, name in DEFAULT_EXTRACTORS.items():
        assert name in EXTRACTORS[kind]
    flow = build_extractor("flow", {"name": "dis", "preset": "fast"})
    assert flow.config() == {"name": "dis", "preset": "fast"}
    with pytest.raises(ValueError, match="unknown depth extractor 'nope'.*pydnet"):
        build_extractor("depth", "nope")
    with pytest.raises(ValueError, match="already registered"):
        register("depth", "pydnet")(type("Again", (FrameLabeler,), {"kind": "depth"}))
    with pytest.raises(ValueError, match="is a flow extractor, not depth"):
        build_extractor("depth", flow)


@pytest.mark.parametrize("kind, name", [("depth", "depth-anything-v2-small"), ("teacher", "dinov2")])
def test_local_weight_extractors_say_what_they_need(kind, name, tmp_path):
    with pytest.raises(ValueError, match="needs weights=<local folder>"):
        build_extractor(kind, name)
    with pytest.raises(FileNotFoundError, match="no such weights folder"):
        build_extractor(kind, name, weights=tmp_path / "absent")


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-2, 1)])
def test_dis_flow_has_the_games_sign_and_units(dx, dy):
    """Content moving by (dx, dy) pixels from the previous to the current frame has flow (dx, dy)."""
    big = _texture(160, 160)
    previous = big[32:128, 32:128]
    current = big[32 - dy : 128 - dy, 32 - dx : 128 - dx]  # current(p) = previous(p - (dx, dy))
    flow = build_extractor("flow", "dis")(previous[None], current[None])[0]
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    inner = flow[12:-12, 12:-12].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [dx, dy], atol=0.1)
    assert np.mean(np.abs(inner - [dx, dy]) < 0.5) > 0.9
    # and by definition of the convention, sampling the previous frame at p - flow gives the current one
    warped, inside = warp_previous(previous, flow)
    error = np.abs(warped.astype(float) - current.astype(float)).mean(axis=-1)
    assert error[12:-12, 12:-12].mean() < 2.0 < np.abs(previous.astype(float) - current).mean()
    assert inside[12:-12, 12:-12].all()


def test_dis_flow_warps_the_previous_real_frame_onto_the_current(road_clip):
    frames = read_video(road_clip, 96, max_frames=17).frames
    previous, current = frames[:-1], frames[1:]
    flow = build_extractor("flow", "dis")(previous, current)
    pairs = list(zip(previous, current, flow, strict=True))
    errors = {
        name: np.mean([warp_error(p, c, sign * f, border=4) for p, c, f in pairs])
        for name, sign in (("flow", 1.0), ("zero", 0.0), ("negated", -1.0))
    }
    assert errors["flow"] < 0.8 * errors["zero"], errors
    assert errors["zero"] < errors["negated"], errors
    # the road rushes towards the camera: below the horizon what moves (lane marks) moves down (+y)
    below = flow[:, 60:]
    moving = np.linalg.norm(below, axis=-1) > 0.5
    assert moving.mean() > 0.1 and below[..., 1][moving].mean() > 0.3


def test_dis_flow_agrees_with_the_games_analytic_flow_on_a_cube_view_clip():
    """The game's own flow (known exactly) and DIS on its rendered cube view agree in sign and units."""
    from spokester_env.env import SpokesterEnv

    env = SpokesterEnv(width=160, height=160, observations=("flow", "rgb"))
    try:
        obs, _ = env.reset(seed=0)
        frames, truth = [obs["rgb"]], []
        for _ in range(6):
            obs, *_ = env.step(0)
            frames.append(obs["rgb"])
            truth.append(obs["flow"])
    finally:
        env.close()
    frames, truth = np.stack(frames), np.stack(truth)  # (7, s, s, 3), (6, s, s, 2)
    flow = build_extractor("flow", "dis")(frames[:-1], frames[1:])
    speed = np.linalg.norm(truth, axis=-1)
    moving = (speed > 0.5) & (speed < 4)  # DIS under-reads the fastest, aliased checker floor rows
    assert moving.mean() > 0.2
    along = (flow * truth).sum(axis=-1)[moving]
    assert np.mean(along > 0) > 0.97  # same direction
    scale = along.sum() / np.square(speed[moving]).sum()  # least-squares DIS / game
    assert 0.65 < scale < 1.2, scale  # same units (measured 0.79: DIS smooths a little)


def test_crop_map_of_a_coordinate_grid_lands_on_the_square():
    # a grid over a 320x180 frame at half resolution whose value is the source x of each grid pixel
    grid_x = np.tile((np.arange(160, dtype=np.float32) + 0.5) * 2 - 0.5, (90, 1))
    from spokester_train.data.video import CropBox

    out = crop_map(grid_x, CropBox.centred(320, 180), 90)  # 2 source pixels per output pixel
    np.testing.assert_allclose(out[45], 70 + (np.arange(90) + 0.5) * 2 - 0.5, atol=1e-3)


def test_pydnet_depth_gets_nearer_down_the_road_and_sky_is_far(pydnet, road_full_frames, road_box):
    depth = pydnet(road_full_frames[:2], road_box, 96)["depth"]
    assert depth.shape == (2, 96, 96) and np.isfinite(depth).all() and (depth > 0).all()
    assert pydnet.streams(96)["depth"].shape == (96, 96)
    for frame in depth:
        rows = np.median(frame, axis=1)  # row-wise median relative inverse depth
        road = rows[56:]  # below the horizon (about row 50 of 96 in this clip)
        assert _spearman(np.arange(len(road)), road) > 0.95
        assert rows[-1] > 4 * rows[56]
        sky = np.median(frame[:12])  # the top rows are sky
        assert sky < np.percentile(frame[56:], 10)


_BANDS = (slice(0, 4), slice(27, 33), slice(21, 27))  # feature rows: sky, near road, farther road


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_deeplab_teacher_features_separate_road_from_sky(deeplab, road_full_frames, road_box):
    out = deeplab(road_full_frames[:2], road_box, 64)
    spec = deeplab.streams(64)["teacher"]
    feats, sky = spec.decode(out["teacher"]), out["sky"]
    assert out["teacher"].dtype == np.uint8 and out["teacher"].max() > 100  # int8 codes, stored exactly
    assert feats.shape == (2, 33, 33, 128) and np.isfinite(feats).all() and feats.min() >= 0
    np.testing.assert_allclose(feats.max(), out["teacher"].max() * spec.scale, rtol=1e-6)
    assert 1.0 < feats.max() < 20.0  # dequantised activations, not codes
    sky_rows, road_near, road_far = (feats[:, rows].mean(axis=(0, 1, 2)) for rows in _BANDS)
    sky_road = _cosine(sky_rows, road_near)
    road_road = _cosine(road_far, road_near)
    assert sky_road < road_road - 0.1, (sky_road, road_road)
    assert np.abs(feats[0] - feats[1]).mean() < np.abs(sky_rows - road_near).mean()  # frames alike
    assert sky.shape == (2, 64, 64) and sky.dtype == np.uint8
    assert sky[:, :8].mean() > 0.4 and sky[:, -20:].max() == 0  # sky at the top, none on the road
