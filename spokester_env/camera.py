"""Camera maths: the pinhole model, the follow rig with lag, depth linearisation and analytic optical flow.

Pure numpy; no pybullet state. Conventions:
- Camera frame: x right, y down, z forward (along the optical axis). `CameraPose.rotation` holds the
  camera's axes as rows in world coordinates, so `rotation @ (p - eye)` is `p` in the camera frame.
- Pixels: column u right, row v down; pixel (row i, column j) has its centre at (u, v) = (j + 0.5, i + 0.5).
- Flow at a pixel = its position now minus the position one frame earlier of the surface point seen there
  now, in pixels per frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .config import CameraConfig


@dataclass(frozen=True)
class Intrinsics:
    """A square-pixel pinhole camera with OpenGL-style near/far clipping."""

    width: int
    height: int
    fov: float
    """Vertical field of view, degrees."""
    near: float
    far: float

    @property
    def focal(self) -> float:
        """Focal length in pixels (the same along both axes)."""
        return (self.height / 2) / math.tan(math.radians(self.fov) / 2)

    @property
    def center(self) -> tuple[float, float]:
        return self.width / 2, self.height / 2

    @functools.cached_property
    def ray_components(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of the camera-frame rays through the pixel centres, scaled so that z = 1.

        Returns float32 arrays of shapes (1, W) and (H, 1): the ray of pixel (i, j) is (rx[0, j], ry[i, 0], 1).
        """
        cx, cy = self.center
        rx = (np.arange(self.width) + 0.5 - cx) / self.focal
        ry = (np.arange(self.height) + 0.5 - cy) / self.focal
        return rx.astype(np.float32)[None, :], ry.astype(np.float32)[:, None]

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) -> pixel coordinates (..., 2)."""
        cx, cy = self.center
        z = points_cam[..., 2]
        return np.stack([cx + self.focal * points_cam[..., 0] / z, cy + self.focal * points_cam[..., 1] / z], -1)

    def projection_matrix(self) -> list[float]:
        """pybullet's column-major OpenGL projection matrix for this camera."""
        n, f = self.near, self.far
        t = 1.0 / math.tan(math.radians(self.fov) / 2)
        a = self.width / self.height
        return [t / a, 0, 0, 0, 0, t, 0, 0, 0, 0, -(f + n) / (f - n), -1, 0, 0, -2 * f * n / (f - n), 0]

    def inverse_depth(self, zbuffer: np.ndarray) -> np.ndarray:
        """pybullet's non-linear depth buffer in [0, 1] -> inverse depth 1/z in 1/m (float32).

        With an OpenGL projection, 1/z is affine in the buffer value; a buffer value of 1 (nothing drawn)
        gives 1/far, which callers replace by 0 using the segmentation mask.
        """
        n, f = self.near, self.far
        return (np.float32(1.0 / n) - zbuffer * np.float32((f - n) / (f * n))).astype(np.float32, copy=False)


def _cross(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross is slow for single vectors, and this runs every frame)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@dataclass(frozen=True)
class CameraPose:
    """Where a camera is and where it looks."""

    eye: np.ndarray
    """(3,) world position, m."""
    rotation: np.ndarray
    """(3, 3) rows = the camera's right, down and forward axes in world coordinates."""

    @classmethod
    def look_at(cls, eye, target, up=(0.0, 0.0, 1.0)) -> CameraPose:
        eye = np.asarray(eye, np.float64)
        forward = np.asarray(target, np.float64) - eye
        forward /= math.sqrt(forward @ forward)
        right = _cross(forward, up)
        right /= math.sqrt(right @ right)
        return cls(eye=eye, rotation=np.stack([right, _cross(forward, right), forward]))

    def view(self, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
        """The OpenGL view matrix (4, 4), row-major, for a scene drawn relative to `origin`."""
        r, d, f = self.rotation
        eye = self.eye - np.asarray(origin)
        gl = np.stack([r, -d, -f])  # OpenGL camera axes: x right, y up, z backwards
        m = np.eye(4)
        m[:3, :3] = gl
        m[:3, 3] = -gl @ eye
        return m

    def view_matrix(self, origin=(0.0, 0.0, 0.0)) -> list[float]:
        """pybullet's column-major OpenGL view matrix, for a scene drawn relative to `origin`."""
        return self.view(origin).T.reshape(-1).tolist()


class FollowCamera:
    """The over-the-shoulder camera: eye and look-at point follow the rider's x with exponential lag.

    All of its state is set by `reset`, so a seeded reset reproduces the same images.
    """

    def __init__(self, config: CameraConfig, dt: float) -> None:
        self.config = config
        self._eye_alpha = 1.0 - math.exp(-dt / config.eye_lag) if config.eye_lag > 0 else 1.0
        self._target_alpha = 1.0 - math.exp(-dt / config.target_lag) if config.target_lag > 0 else 1.0
        self.eye_x = 0.0
        self.target_x = 0.0

    def reset(self, rider_x: float) -> None:
        self.eye_x = rider_x
        self.target_x = rider_x

    def update(self, rider_x: float) -> None:
        """Advance the smoothing by one frame towards the rider's new x."""
        self.eye_x += self._eye_alpha * (rider_x - self.eye_x)
        self.target_x += self._target_alpha * (rider_x - self.target_x)

    def pose(self, rider_y: float) -> CameraPose:
        c = self.config
        return CameraPose.look_at(
            (self.eye_x, rider_y - c.behind, c.height), (self.target_x, rider_y + c.look_ahead, c.look_height)
        )


def flow_motion(displacement: np.ndarray, pose_now: CameraPose, pose_prev: CameraPose):
    """What the flow of a scene of translating rigid bodies needs besides depth and ids: (M, offsets).

    A point seen now at depth z along the ray r = (rx, ry, 1) lies, in the previous camera's frame, at
    z (M r + (1/z) offsets[body]): M (3, 3) turns the now-camera's axes into the previous camera's, and each
    body's offset (num_bodies, 3) is R' (e - e' - d_body) (e, e' the eyes, R' the previous rotation, d_body
    the body's world translation over the last frame). Both float32.
    """
    turn = (pose_prev.rotation @ pose_now.rotation.T).astype(np.float32)
    offsets = ((pose_now.eye - pose_prev.eye - displacement) @ pose_prev.rotation.T).astype(np.float32)
    return turn, offsets


def analytic_flow(
    inv_depth: np.ndarray,
    body_index: np.ndarray,
    displacement: np.ndarray,
    pose_now: CameraPose,
    pose_prev: CameraPose,
    intrinsics: Intrinsics,
    return_prev_depth: bool = False,
):
    """Optical flow of a scene of translating rigid bodies, in pixels per frame.

    inv_depth: (H, W) 1/z now, 0 where nothing is drawn (sky); body_index: (H, W) int row of
    `displacement` for the body seen at each pixel (sky pixels may point anywhere: they are treated as
    points at infinity, which move with the camera's rotation only); displacement: (B, 3) each body's world
    translation over the last frame, m.

    Returns flow (H, W, 2) float32 (and, if asked, the depth z of each point in the previous camera,
    inf for sky, for visibility tests).
    """
    f = intrinsics.focal
    rx, ry = intrinsics.ray_components  # (1, W), (H, 1): a pixel's ray is (rx, ry, 1)
    # X' / z = M (rx, ry, 1) + (1/z) offsets[body] (flow_motion). Sky: 1/z = 0. (Sky pixels' body_index may
    # be anything, even -1: their 1/z of 0 cancels the offset.)
    m, offsets = flow_motion(displacement, pose_now, pose_prev)
    rows = body_index.astype(np.intp, copy=False)  # take() with int32 indices converts them on every call: 7x slower
    prev = []
    for k in range(3):
        p = offsets[:, k].take(rows)
        p *= inv_depth
        p += m[k, 0] * rx
        p += m[k, 1] * ry + m[k, 2]
        prev.append(p)
    zp = np.maximum(prev[2], np.float32(1e-6), out=prev[2])  # behind the previous camera: clipped later
    flow = np.empty(inv_depth.shape + (2,), np.float32)
    for k, r in ((0, rx), (1, ry)):
        q = np.divide(prev[k], zp, out=prev[k])
        np.subtract(r, q, out=q)
        np.multiply(q, np.float32(f), out=flow[..., k])
    if return_prev_depth:
        with np.errstate(divide="ignore"):
            return flow, np.where(inv_depth > 0, zp / inv_depth, np.inf)
    return flow
