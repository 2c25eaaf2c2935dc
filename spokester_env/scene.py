"""The cube world in pybullet: its bodies, their textures, the camera image (TinyRenderer or `gl.py`) and contacts.

Each `Scene` owns one `BulletClient(DIRECT)`. Bodies are created once in `__init__` and afterwards only
moved. Static geometry (ground, buildings) stays put while the camera rides along the road; only the
rider and the cars move every frame. To keep float32 rendering exact on endless runs, everything is drawn
relative to a floating origin that jumps by whole checker periods every `REBASE` metres.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from typing import NamedTuple

import numpy as np

from .camera import CameraPose, Intrinsics, analytic_flow, flow_motion
from .config import GameConfig
from .game import GameState
from .gl import (
    AMBIENT,
    DIFFUSE,
    LIGHT_DIRECTION,
    GLDrawing,
    GLKind,
    NoGLContext,
    create_context,
    driver,
    flow_pass_pays,
)


@contextlib.contextmanager
def quiet_stdout(descriptors: tuple[int, ...] = (1,)):
    """Send to /dev/null what C code writes to the process's stdout (file descriptor 1; `descriptors` to
    choose) for a moment: pybullet prints its build time, 'argv[0]=' on every connect and the EGL plugin's GL
    strings there, and stdout carries only a command's output. Python's own `print` inside the block goes
    the same way, so keep the block to the pybullet call."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        saved = [os.dup(fd) for fd in descriptors]
    except OSError:  # no such file descriptor at all (a daemon): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in descriptors:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in zip(descriptors, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


pybullet = BulletClient = None
"""pybullet and its BulletClient, imported by the first `Scene` (`import_pybullet`): a process that never makes
one, such as a GPU host training the renderer from a pack (`spokester_train.data.pack`), needs no pybullet."""


def import_pybullet():
    """pybullet (imported once, its build-time line silenced: it is printed on stdout or stderr depending on
    the build, in every process)."""
    global pybullet, BulletClient
    if pybullet is None:
        with quiet_stdout((1, 2)):
            import pybullet as module
            from pybullet_utils.bullet_client import BulletClient as client
        pybullet, BulletClient = module, client
    return pybullet


BACKENDS = ("tiny", "gl")
"""Who draws the camera images: "tiny", pybullet's CPU TinyRenderer; "gl", moderngl through EGL, instanced
(`gl.py`: a GPU, or Mesa's llvmpipe). pybullet keeps the geometry and the contacts with either."""
CHECKER = 2.0
"""Side of one checker square on the ground and on buildings, m."""
REBASE = 1000.0
"""The drawing origin moves forward in steps of this many metres (a multiple of 2 * CHECKER)."""
GROUND_HALF_LENGTH = 1500.0
SKY_RGB = np.array([178, 204, 230], np.uint8)
PARKED = (0.0, -5000.0, -100.0)
"""Where unused car bodies wait: far behind and below the camera."""
CLASS_NAMES = ("sky", "ground", "buildings", "cars", "rider")
"""The game's semantic classes; `Scene.classes` gives each pixel its index in this tuple (sky: nothing drawn)."""

_COLOURS = {
    "rider": (0.15, 0.8, 0.25, 1),
    "car": (0.85, 0.12, 0.1, 1),
}
_CHECKERS = {
    "ground": ((38, 38, 44), (62, 62, 70)),
    "buildings": ((105, 105, 112), (150, 150, 158)),
}
"""(dark, light) RGB of the checker squares of the textured kinds."""


def _write_tga(path: str, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as an uncompressed, top-left-origin TGA (pybullet reads it)."""
    h, w, _ = rgb.shape
    header = bytes([0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, w & 255, w >> 8, h & 255, h >> 8, 24, 0x20])
    with open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(rgb[:, :, ::-1]).tobytes())


def _write_obj(path: str, verts, idx, normals, uvs) -> None:
    """A triangle mesh as a Wavefront OBJ with one normal and one UV per vertex."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvs]
    lines += [f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in normals]
    for a, b, c in zip(idx[0::3], idx[1::3], idx[2::3], strict=True):
        lines.append(f"f {a + 1}/{a + 1}/{a + 1} {b + 1}/{b + 1}/{b + 1} {c + 1}/{c + 1}/{c + 1}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _checker(dark, light, cells: int = 2, texels: int = 4) -> np.ndarray:
    """A `cells` x `cells` checkerboard, `texels` pixels per square."""
    idx = (np.arange(cells * texels) // texels) % 2
    mask = (idx[:, None] + idx[None, :]) % 2
    return np.where(mask[..., None] == 1, np.array(light, np.uint8), np.array(dark, np.uint8))


def _box_mesh(half: np.ndarray, cell: float):
    """Vertices, indices, normals and world-scaled UVs of a box (pybullet axes), one quad per face.

    UVs are positions divided by `cell`, so the texture repeats every 2 * cell metres on every face.
    """
    verts, uvs, normals, idx = [], [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            a, b = [i for i in range(3) if i != axis]
            corners = []
            for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[a], p[b] = sign * half[axis], sa * half[a], sb * half[b]
                corners.append(p)
            n = np.zeros(3)
            n[axis] = sign
            if np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), n) < 0:
                corners = corners[::-1]
            base = len(verts)
            for p in corners:
                verts.append(p.tolist())
                uvs.append([p[a] / (2 * cell), p[b] / (2 * cell)])
                normals.append(n.tolist())
            idx += [base, base + 1, base + 2, base, base + 2, base + 3]
    return verts, idx, normals, uvs


def _egl_probe() -> bool:
    """Whether the gl backend can make its EGL context here (tried once per process)."""
    from .gl import context_error

    return context_error() is None


def _pb(half_across_up_along) -> list[float]:
    """(across, up, along) half-extents -> pybullet (x, y, z)."""
    across, up, along = half_across_up_along
    return [across, along, up]


class Frame(NamedTuple):
    """What `Scene.render` gives, rows top-down (new arrays each call)."""

    rgba: np.ndarray | None
    """The cube view, uint8 (H, W, 4), undefined where nothing is drawn; None from a gl scene without it."""
    inverse_depth: np.ndarray
    """1/z, 1/m, float32 (H, W); 0 where nothing is drawn (the sky)."""
    ids: np.ndarray
    """The body id of each pixel, int32 (H, W), -1 where nothing is drawn."""
    flow: np.ndarray | None
    """Optical flow, pixels per frame, float32 (H, W, 2) (`camera.analytic_flow`'s), when it is asked for."""


class Scene:
    """Bodies of one game in one pybullet client; `sync` moves them, `render` takes the camera image."""

    def __init__(
        self,
        config: GameConfig,
        intrinsics: Intrinsics,
        backend: str = "tiny",
        textured: bool = True,
        flow: bool = True,
        egl_device: int = 0,
    ) -> None:
        """`textured`: the cube view's checker textures (and, for gl, its colours at all); `flow`: a gl scene on a
        GPU may draw the optical flow (`gl.flow_pass_pays`); elsewhere it is computed in numpy when asked for;
        `egl_device`: which of `gl.egl_devices()` a gl scene draws on."""
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
        import_pybullet()
        self.config = config
        self.intrinsics = intrinsics
        with quiet_stdout():
            self.client = BulletClient(connection_mode=pybullet.DIRECT)
        self.backend = backend
        self._gl = None
        self.driver = "TinyRenderer"
        """Who draws: pybullet's "TinyRenderer", or the GL_RENDERER of the gl backend's EGL device."""
        if backend == "gl":
            try:
                self._gl_context = create_context(egl_device)
            except (NoGLContext, ValueError):
                self.client.disconnect()
                raise
            self.driver = driver(self._gl_context)
        # pybullet functions bound to this client once (BulletClient builds a partial on every attribute access)
        self._place = functools.partial(pybullet.resetBasePositionAndOrientation, physicsClientId=self.client._client)
        self._camera_image = functools.partial(pybullet.getCameraImage, physicsClientId=self.client._client)
        self.textured = textured
        self.flow = flow
        self.origin = 0.0
        self._building_first = None
        self._build()

    # --- building the world once ------------------------------------------------------------------------

    def _texture(self, rgb: np.ndarray) -> int:
        path = os.path.join(self._tmp.name, f"texture{len(os.listdir(self._tmp.name))}.tga")
        _write_tga(path, rgb)
        return self.client.loadTexture(path)

    def _mesh_shape(self, name: str, verts, idx, normals, uvs) -> int:
        """A visual shape from an OBJ file (both backends read OBJ; EGL cannot take in-memory meshes)."""
        path = os.path.join(self._tmp.name, f"{name}.obj")
        _write_obj(path, verts, idx, normals, uvs)
        return self.client.createVisualShape(pybullet.GEOM_MESH, fileName=path, meshScale=[1, 1, 1])

    def _build(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="spokester-")
        try:
            self._build_bodies()
        finally:
            self._tmp.cleanup()

    def _build_bodies(self) -> None:
        c, cfg = self.client, self.config
        # Creation order is drawing order, and TinyRenderer tests depth before shading a pixel: bodies are
        # created near to far (rider, cars, buildings, ground) so that hidden pixels are not shaded.
        if self.textured:  # checker textures cost about 10% of render time; depth and flow do not need them
            ground_tex = self._texture(_checker(*_CHECKERS["ground"]))
            building_tex = self._texture(_checker(*_CHECKERS["buildings"]))

        # The rider.
        rider_h = _pb(cfg.rider_half_extents)
        self.rider_z = rider_h[2]
        self.rider = c.createMultiBody(
            0,
            c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=rider_h),
            c.createVisualShape(pybullet.GEOM_BOX, halfExtents=rider_h, rgbaColor=_COLOURS["rider"]),
            [0, 0, self.rider_z],
        )

        # Cars: body + roof in one base, with collision shapes for contact queries.
        body_h, roof_h = np.array(_pb(cfg.car_half_extents)), np.array(_pb(cfg.roof_half_extents))
        shift = [[0, 0, body_h[2]], [0, 0, 2 * body_h[2] + roof_h[2]]]
        vis = c.createVisualShapeArray(
            [pybullet.GEOM_BOX] * 2,
            halfExtents=[body_h.tolist(), roof_h.tolist()],
            visualFramePositions=shift,
            rgbaColors=[_COLOURS["car"]] * 2,
        )
        col = c.createCollisionShapeArray(
            [pybullet.GEOM_BOX] * 2,
            halfExtents=[body_h.tolist(), roof_h.tolist()],
            collisionFramePositions=shift,
        )
        self.cars = [c.createMultiBody(0, col, vis, list(PARKED)) for _ in range(cfg.max_cars)]
        for car in self.cars:
            c.changeVisualShape(car, -1, rgbaColor=_COLOURS["car"])
        self._car_parked = np.ones(cfg.max_cars, bool)

        # Buildings: a row on each side, recycled forwards as the rider passes them.
        half = np.array(_pb(cfg.building_half_extents))
        shape = self._mesh_shape("building", *_box_mesh(half, CHECKER))
        reach = cfg.camera.far + 2 * half[1] + cfg.building_spacing
        self.buildings_per_side = int(np.ceil(reach / cfg.building_spacing))
        self.building_x = cfg.road_half_width + cfg.building_setback + half[0]
        self.buildings = []
        for _side in (-1, 1):
            for _ in range(self.buildings_per_side):
                body = c.createMultiBody(0, -1, shape, list(PARKED))
                if self.textured:
                    c.changeVisualShape(body, -1, textureUniqueId=building_tex, rgbaColor=[1, 1, 1, 1])
                else:
                    c.changeVisualShape(body, -1, rgbaColor=[0.5, 0.5, 0.53, 1])
                self.buildings.append(body)

        # Ground: one quad with tiled UVs, far larger than the view.
        gw, gl = 200.0, GROUND_HALF_LENGTH
        verts = [[-gw, -gl, 0], [gw, -gl, 0], [gw, gl, 0], [-gw, gl, 0]]
        uvs = [[v[0] / (2 * CHECKER), v[1] / (2 * CHECKER)] for v in verts]
        shape = self._mesh_shape("ground", verts, [0, 1, 2, 0, 2, 3], [[0, 0, 1]] * 4, uvs)
        self.ground = c.createMultiBody(0, -1, shape, [0, 0, 0])
        if self.textured:
            c.changeVisualShape(self.ground, -1, textureUniqueId=ground_tex, rgbaColor=[1, 1, 1, 1])
        else:
            c.changeVisualShape(self.ground, -1, rgbaColor=[0.2, 0.2, 0.22, 1])

        self.num_bodies = c.getNumBodies()
        self.positions = np.zeros((self.num_bodies, 3))
        """Every body's base position, pybullet axes relative to the drawing origin, as the game has it (`sync`);
        what both backends draw. pybullet's own bodies follow it at every step only with TinyRenderer."""
        self.positions[self.cars] = PARKED
        if self.backend == "gl":
            self._gl = self._gl_drawing(rider_h, body_h, roof_h, shift, half, verts, uvs)
        self._body_class = np.zeros(self.num_bodies, np.uint8)  # body id -> index into CLASS_NAMES
        bodies = {"ground": [self.ground], "buildings": self.buildings, "cars": self.cars, "rider": [self.rider]}
        for name, ids in bodies.items():
            self._body_class[ids] = CLASS_NAMES.index(name)
        self._rebase(0.0)

    def _gl_drawing(self, rider_h, body_h, roof_h, shift, half, ground_verts, ground_uvs):
        """The gl backend's kinds of bodies: the same meshes, colours and checker cells as pybullet's."""

        def boxes(*halves_and_shifts):
            verts, idx, normals, uvs = [], [], [], []
            for h, at in halves_and_shifts:
                v, i, n, u = _box_mesh(np.asarray(h, float), CHECKER)
                idx += [len(verts) + k for k in i]
                verts += (np.asarray(v) + at).tolist()
                normals += n
                uvs += u
            return verts, idx, normals, uvs

        textured = self.textured
        untextured = {"ground": (0.2, 0.2, 0.22), "buildings": (0.5, 0.5, 0.53)}
        kinds = [
            GLKind("rider", *boxes((rider_h, 0.0)), [self.rider], _COLOURS["rider"]),
            GLKind("cars", *boxes((body_h, shift[0]), (roof_h, shift[1])), self.cars, _COLOURS["car"]),
            GLKind(
                "buildings",
                *_box_mesh(half, CHECKER),
                self.buildings,
                untextured["buildings"],
                _CHECKERS["buildings"] if textured else None,
            ),
            GLKind(
                "ground",
                ground_verts,
                [0, 1, 2, 0, 2, 3],
                [[0, 0, 1]] * 4,
                ground_uvs,
                [self.ground],
                untextured["ground"],
                _CHECKERS["ground"] if textured else None,
            ),
        ]
        context, self._gl_context = self._gl_context, None
        flow = self.flow and flow_pass_pays(context)
        return GLDrawing(context, self.intrinsics, kinds, colour=textured, flow=flow, bodies=self.num_bodies)

    # --- moving bodies ----------------------------------------------------------------------------------

    def _rebase(self, origin: float) -> None:
        """Move the drawing origin and re-place everything static relative to it."""
        self.origin = origin
        self._place(self.ground, (0, 0, 0), (0, 0, 0, 1))
        self.positions[self.ground] = 0.0
        self._building_first = None
        self._car_parked[:] = False  # force every car to be re-placed

    def _place_buildings(self, camera_y: float) -> None:
        """Building k of each row stands at y = (first + k) * spacing: near to far in drawing order, with the
        ones beside the camera (out of view) skipped. All move together once every `building_spacing` m."""
        first = int(np.floor(camera_y / self.config.building_spacing))
        if first == self._building_first:
            return
        self._building_first = first
        n, height = self.buildings_per_side, self.config.building_half_extents[1]
        y = (first + np.arange(n)) * self.config.building_spacing - self.origin
        at = self.positions[self.buildings].reshape(2, n, 3)
        at[..., 0] = np.array([-self.building_x, self.building_x])[:, None]
        at[..., 1], at[..., 2] = y, height
        self.positions[self.buildings] = at.reshape(-1, 3)
        for body in self.buildings:
            self._place(body, self.positions[body].tolist(), (0, 0, 0, 1))

    def sync(self, state: GameState, camera_y: float) -> None:
        """Move the rider and the cars to the game state (and the static world when it needs to): in `positions`,
        which both backends draw, and with TinyRenderer, which draws pybullet's bodies, in pybullet too (gl moves
        only the bodies `rider_hits_car` tests, when it tests them)."""
        if camera_y - self.origin > REBASE + 200.0 or camera_y < self.origin:
            self._rebase(np.floor(camera_y / REBASE) * REBASE)
        self._place_buildings(camera_y)
        place, tr, upright, at = self._place, state.traffic, (0.0, 0.0, 0.0, 1.0), self.positions
        at[self.rider] = (state.rider.x, state.distance - self.origin, self.rider_z)
        cars = at[self.cars]  # (max_cars, 3)
        cars[tr.active] = np.stack(
            [self.config.lane_x(tr.lane[tr.active]), tr.y[tr.active] - self.origin, np.zeros(tr.active.sum())], -1
        )
        cars[~tr.active] = PARKED
        at[self.cars] = cars
        if self._gl is not None:  # gl draws from `positions`; pybullet gets the bodies it tests (rider_hits_car)
            return
        place(self.rider, at[self.rider].tolist(), upright)
        for i in np.flatnonzero(tr.active):
            place(self.cars[i], cars[i].tolist(), upright)
        self._car_parked &= ~tr.active
        for i in np.flatnonzero(~tr.active & ~self._car_parked):
            place(self.cars[i], PARKED, upright)
            self._car_parked[i] = True

    # --- queries ----------------------------------------------------------------------------------------

    def render(
        self,
        pose: CameraPose,
        previous: CameraPose | None = None,
        displacement: np.ndarray | None = None,
        flow_limit: float = float("inf"),
    ) -> Frame:
        """The camera image from `pose` (world coordinates); with the `previous` frame's pose and each body's
        `displacement` (num_bodies, 3) over the last frame, its optical flow too, clipped to `flow_limit`.

        TinyRenderer gives a non-linear depth buffer that is linearised here (`Intrinsics.inverse_depth`); gl
        draws inverse depth itself, and the flow too on a GPU (`gl.flow_pass_pays`). Elsewhere the flow is
        `analytic_flow` of the frame's inverse depth and ids, in numpy: the same formula."""
        intr, origin = self.intrinsics, (0.0, self.origin, 0.0)
        if previous is not None and displacement is None:
            raise ValueError("render(previous=...) needs the bodies' displacement too")
        if self._gl is not None:  # depth and ids in one pass, colour only for the cube view, flow on a GPU
            projection = np.asarray(intr.projection_matrix()).reshape(4, 4).T
            drawn = previous is not None and self._gl.flow
            motion = flow_motion(displacement, pose, previous) if drawn else None
            out = self._gl.render(projection @ pose.view(origin), self.positions, motion, flow_limit)
            frame = Frame(out.get("rgba"), out["inverse_depth"], out["ids"], out.get("flow"))
        else:
            _, _, rgba, zbuf, seg = self._camera_image(
                intr.width,
                intr.height,
                viewMatrix=pose.view_matrix(origin),
                projectionMatrix=intr.projection_matrix(),
                renderer=pybullet.ER_TINY_RENDERER,  # pybullet's own name for its image engine
                lightDirection=list(LIGHT_DIRECTION),
                lightAmbientCoeff=AMBIENT,
                lightDiffuseCoeff=DIFFUSE,
                lightSpecularCoeff=0.0,
                shadow=0,
            )
            shape = (intr.height, intr.width)
            ids = np.asarray(seg, np.int32).reshape(shape)
            inverse_depth = intr.inverse_depth(np.asarray(zbuf, np.float32).reshape(shape))
            inverse_depth[ids < 0] = 0.0
            frame = Frame(np.asarray(rgba, np.uint8).reshape(shape + (4,)), inverse_depth, ids, None)
        if previous is not None and frame.flow is None:
            flow = analytic_flow(frame.inverse_depth, frame.ids, displacement, pose, previous, intr)
            frame = frame._replace(flow=np.clip(flow, -flow_limit, flow_limit, out=flow))
        return frame

    def classes(self, seg: np.ndarray) -> np.ndarray:
        """A segmentation mask of `render` (body ids, -1 where nothing is drawn) -> (H, W) uint8 indices
        into `CLASS_NAMES`: sky where nothing is drawn, else the class of the body seen there."""
        return np.where(seg < 0, CLASS_NAMES.index("sky"), self._body_class[np.maximum(seg, 0)]).astype(np.uint8)

    def rider_hits_car(self, state: GameState) -> bool:
        """True if the rider's box touches a car's body or roof (pybullet's closest points)."""
        tr, cfg = state.traffic, self.config
        reach = cfg.car_half_extents[2] + cfg.rider_half_extents[2] + 0.5
        near = np.flatnonzero(tr.active & (np.abs(tr.y - state.distance) < reach))
        if len(near) and self._gl is not None:  # `sync` left pybullet's bodies where they were
            for body in (self.rider, *(self.cars[i] for i in near)):
                self._place(body, self.positions[body].tolist(), (0.0, 0.0, 0.0, 1.0))
        for i in near:
            if self.client.getClosestPoints(self.rider, self.cars[i], distance=0.0):
                return True
        return False

    def close(self) -> None:
        if self._gl is not None:
            self._gl.close()
            self._gl = None
        if self.client is not None:
            try:
                with quiet_stdout():
                    self.client.disconnect()
            except pybullet.error:
                pass
            self.client = None
