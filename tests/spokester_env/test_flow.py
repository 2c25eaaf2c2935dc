"""Optical flow: closed forms, the projection convention against pybullet, and warping over many frames."""

import numpy as np
import pybullet
import pytest
from pybullet_utils.bullet_client import BulletClient

from spokester_env.camera import CameraPose, Intrinsics, analytic_flow


def test_translation_towards_fronto_parallel_plane():
    """Camera moving t metres along its axis towards a plane at distance D: flow = (p - c) t / D_prev."""
    intr = Intrinsics(48, 32, 60.0, 0.1, 100.0)
    h, w = 32, 48
    plane_z, t = 5.0, 0.5  # the plane is 5 m away now, 5.5 m one frame earlier
    pose_now = CameraPose.look_at((0, 0, 1), (0, 10, 1))
    pose_prev = CameraPose.look_at((0, -t, 1), (0, 10 - t, 1))
    inv = np.full((h, w), 1 / plane_z, np.float32)
    flow = analytic_flow(inv, np.zeros((h, w), int), np.zeros((1, 3)), pose_now, pose_prev, intr)
    u = np.arange(w) + 0.5 - w / 2
    v = np.arange(h) + 0.5 - h / 2
    expected_x = np.broadcast_to(u[None, :] * t / (plane_z + t), (h, w))
    expected_y = np.broadcast_to(v[:, None] * t / (plane_z + t), (h, w))
    np.testing.assert_allclose(flow[..., 0], expected_x, atol=1e-4)
    np.testing.assert_allclose(flow[..., 1], expected_y, atol=1e-4)
    # Expansion: right half flows right, lower half flows down.
    assert flow[0, -1, 0] > 2 and flow[-1, 0, 1] > 1


def test_moving_body_and_pure_rotation():
    """A body translating with the camera has zero flow; the sky follows the camera's rotation only."""
    intr = Intrinsics(32, 32, 60.0, 0.1, 100.0)
    pose_now = CameraPose.look_at((0, 1, 1), (0, 11, 1))
    pose_prev = CameraPose.look_at((0, 0, 1), (0, 10, 1))
    inv = np.full((32, 32), 0.2, np.float32)
    body = np.ones((32, 32), int)
    disp = np.array([[0, 0, 0], [0, 1.0, 0]])  # body 1 moved with the camera
    flow = analytic_flow(inv, body, disp, pose_now, pose_prev, intr)
    np.testing.assert_allclose(flow, 0, atol=1e-5)
    # Yaw to the left by a small angle: points at infinity shift right by about f * angle.
    angle = 0.02
    pose_yaw = CameraPose.look_at((0, 0, 1), (-10 * np.sin(angle), 10 * np.cos(angle), 1))
    sky = analytic_flow(np.zeros((32, 32), np.float32), body, disp, pose_yaw, pose_prev, intr)
    assert sky[16, 16, 0] == pytest.approx(intr.focal * np.tan(angle), rel=1e-3)
    assert abs(sky[16, 16, 1]) < 1e-3


def test_projection_matches_pybullet_render():
    """A box drawn by pybullet with our view/projection matrices covers exactly the pixels we project."""
    intr = Intrinsics(80, 60, 50.0, 0.1, 50.0)
    client = BulletClient(connection_mode=pybullet.DIRECT)
    try:
        half = [0.7, 0.4, 0.5]
        body = client.createMultiBody(
            0, -1, client.createVisualShape(pybullet.GEOM_BOX, halfExtents=half), [0.3, 6, 1.2]
        )
        pose = CameraPose.look_at((0, 0, 1.5), (0.5, 10, 1.0))
        _, _, _, _, seg = client.getCameraImage(
            intr.width,
            intr.height,
            pose.view_matrix(),
            intr.projection_matrix(),
            renderer=pybullet.ER_TINY_RENDERER,
        )
        seg = np.asarray(seg).reshape(intr.height, intr.width)
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half + [
            0.3,
            6,
            1.2,
        ]
        uv = intr.project((corners - pose.eye) @ pose.rotation.T)
        cols, rows = np.nonzero((seg == body).T)
        # The drawn silhouette's extent equals the projected corners' extent to within a pixel.
        assert abs(cols.min() - uv[:, 0].min()) <= 1.0 and abs(cols.max() + 1 - uv[:, 0].max()) <= 1.0
        assert abs(rows.min() - uv[:, 1].min()) <= 1.0 and abs(rows.max() + 1 - uv[:, 1].max()) <= 1.0
    finally:
        client.disconnect()


def prev_positions(flow: np.ndarray) -> np.ndarray:
    """Continuous (x, y) pixel coordinates, in the previous frame, of each pixel's surface point."""
    h, w = flow.shape[:2]
    xs = np.arange(w) + 0.5 - flow[..., 0]
    ys = (np.arange(h) + 0.5)[:, None] - flow[..., 1]
    return np.stack([xs, ys], -1)


def neighbours(image: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 2x2 block of pixels around each continuous position: (H, W, 4, C); positions must be inside."""
    x0 = np.floor(pos[..., 0] - 0.5).astype(int)
    y0 = np.floor(pos[..., 1] - 0.5).astype(int)
    h, w = image.shape[:2]
    x0, y0 = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
    img = image.reshape(h, w, -1)
    return np.stack([img[y0, x0], img[y0, x0 + 1], img[y0 + 1, x0], img[y0 + 1, x0 + 1]], 2)


def step_with_visibility(env, action: int):
    """Step the unwrapped env and also return, per pixel, whether its point was visible one frame earlier."""
    prev_pose = env._pose
    prev_depth = env._last_inv_depth.copy()
    prev_rgb = env._cube_view().copy()
    obs, reward, terminated, truncated, info = env.step(action)
    seg = env.scene.render(env._pose).ids
    depth = obs["depth"][..., 0]
    flow, z_prev = analytic_flow(
        depth, seg, env._displacement, env._pose, prev_pose, env.intrinsics, return_prev_depth=True
    )
    pos = prev_positions(flow)
    h, w = depth.shape
    inside = (pos[..., 0] >= 1) & (pos[..., 0] <= w - 1) & (pos[..., 1] >= 1) & (pos[..., 1] <= h - 1)
    # Visible before: all four previous pixels around the point saw the same surface depth (this also
    # drops occlusion boundaries, where the four disagree).
    expected = np.where(np.isfinite(z_prev), 1.0 / np.maximum(z_prev, 1e-6), 0.0)
    around = neighbours(prev_depth, pos)[..., 0]
    tol = 0.03 * expected[..., None] + 1e-4
    visible = inside & (np.abs(around - expected[..., None]) <= tol).all(-1)
    return obs, prev_rgb, visible, flow, terminated


def reproduced(prev_rgb: np.ndarray, rgb: np.ndarray, flow: np.ndarray, tol: int = 8) -> np.ndarray:
    """Per pixel: does one of the four previous pixels around (pixel - flow) match this pixel's colour?"""
    block = neighbours(prev_rgb.astype(np.int16), prev_positions(flow))
    diff = np.abs(block - rgb.astype(np.int16)[:, :, None, :]).max(-1)
    return diff.min(-1) <= tol


def _edges(rgb):
    """Pixels whose colour differs from a horizontal or vertical neighbour: where warping can fail."""
    img = rgb.astype(np.int16)
    e = np.zeros(rgb.shape[:2], bool)
    dx = np.abs(np.diff(img, axis=1)).max(-1) > 10
    dy = np.abs(np.diff(img, axis=0)).max(-1) > 10
    e[:, :-1] |= dx
    e[:, 1:] |= dx
    e[:-1] |= dy
    e[1:] |= dy
    return e


@pytest.mark.parametrize("camera", ["follow", "first_person"])
def test_flow_reproduces_frames_by_warping(make_env, camera):
    """Over many seeded frames with lane changes, camera lag and moving cars, warping the previous cube view
    by the flow reproduces >= 95% of the pixels seen in both frames; wrong flows do clearly worse. For
    both camera presets."""
    env = make_env(width=96, height=96, observations=("depth", "flow", "rgb"), camera=camera).unwrapped
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    all_ok, moving_ok, half_ok, zero_ok = [], [], [], []
    cars_seen = 0
    for _ in range(60):
        obs, prev_rgb, visible, flow, terminated = step_with_visibility(env, int(rng.choice([0, 0, 0, 1, 2])))
        # The env's flow is analytic_flow's of its own depth and ids: computed in numpy (tiny), drawn in float32
        # by a full-screen shader pass (gl), within a thousandth of a pixel.
        np.testing.assert_allclose(np.clip(flow, -96, 96), obs["flow"], rtol=0, atol=1e-3)
        rgb, flow = obs["rgb"], obs["flow"]
        cars_seen += int(((rgb[..., 0] > 150) & (rgb[..., 1] < 60) & visible).sum())
        ok = reproduced(prev_rgb, rgb, flow)
        textured = visible & _edges(rgb) & (np.hypot(flow[..., 0], flow[..., 1]) > 1.5)
        all_ok.append(ok[visible].mean())
        if textured.sum() > 50:
            moving_ok.append(ok[textured].mean())
            half_ok.append(reproduced(prev_rgb, rgb, 0.5 * flow)[textured].mean())
            zero_ok.append(reproduced(prev_rgb, rgb, 0 * flow)[textured].mean())
        if terminated:
            env.reset(seed=int(rng.integers(1000)))
    assert cars_seen > 100, "the frames must include moving cars"
    assert min(all_ok) >= 0.95, f"worst frame reproduced only {min(all_ok):.3f} of the visible pixels"
    assert len(moving_ok) > 30
    assert np.mean(moving_ok) >= 0.95
    assert np.mean(half_ok) < np.mean(moving_ok) - 0.15
    assert np.mean(zero_ok) < np.mean(moving_ok) - 0.3
