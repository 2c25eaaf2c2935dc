"""The "gl" backend: the scene's boxes drawn with moderngl through a headless EGL context, instanced.

One `GLDrawing` per `Scene`, one EGL context per drawing. Each kind of body (rider, car, building, ground) is
one mesh and one instance buffer of (x, y, z, body id) rows; a frame writes every kind's rows in one upload
and draws each kind with one instanced call, in one pass into up to three attachments:
- the depth-buffer value gl_FragCoord.z, float32, pybullet's non-linear convention (`Intrinsics.inverse_depth`
  linearises it, as for TinyRenderer);
- the body id of the pixel, int32, -1 where nothing is drawn (pybullet's segmentation mask);
- the cube view's colour (only when it is asked for): TinyRenderer's lighting and the same checker cells,
  computed in the fragment shader from the mesh's UVs.
The projection is pybullet's matrix with its y axis negated, so that the framebuffer's first row is the
picture's top row, as pybullet returns it (no flip on read-back).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from .camera import Intrinsics

CONTEXT_ERROR = "backend='gl': no OpenGL 3.3 context through EGL here ({reason}); use backend='tiny'"
"""The one-line error where no EGL context can be made; `{reason}` is the driver's or importer's word."""

LIGHT_DIRECTION = (0.4, -0.6, 1.0)
"""Direction towards the light, world axes (TinyRenderer's `lightDirection`); both backends read it here."""
AMBIENT, DIFFUSE = 0.65, 0.45
"""Lighting coefficients of the cube view (TinyRenderer's `lightAmbientCoeff`, `lightDiffuseCoeff`)."""

_VERTEX = """
#version 330
uniform mat4 view_projection;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec4 in_instance;  // (x, y, z, body id)
out vec3 normal;
out vec2 uv;
flat out int body;
void main() {
    gl_Position = view_projection * vec4(in_position + in_instance.xyz, 1.0);
    normal = in_normal;
    uv = in_uv;
    body = int(in_instance.w);
}
"""

_FRAGMENT = """
#version 330
uniform vec3 light;      // unit vector towards the light
uniform vec3 albedo;     // flat colour (untextured kinds)
uniform vec3 dark;       // checker colours, 0..255 (textured kinds)
uniform vec3 bright;
uniform bool textured;
in vec3 normal;
in vec2 uv;
flat in int body;
layout(location = 0) out vec2 geometry;  // (depth buffer, body id)
#ifdef COLOUR
layout(location = 1) out vec4 colour;
#endif
void main() {
    geometry = vec2(gl_FragCoord.z, float(body));
#ifdef COLOUR
    vec3 base;
    if (textured) {
        // The 2x2-cell checker texture repeating once per unit of UV; pybullet reads the texture rows
        // upside down, so the cell at the UV origin is the light one.
        vec2 cell = floor(fract(uv) * 2.0);
        base = mod(cell.x + cell.y, 2.0) > 0.5 ? dark : bright;
    } else {
        base = floor(albedo * 255.0);
    }
    float shade = AMBIENT + DIFFUSE * max(dot(normal, light), 0.0);
    colour = vec4(min(floor(base * shade), 255.0) / 255.0, 1.0);
#endif
}
"""


def create_context():
    """A standalone moderngl context through EGL, or RuntimeError in one line naming backend='tiny'."""
    try:
        import moderngl
    except ImportError as e:
        raise RuntimeError(CONTEXT_ERROR.format(reason=f"moderngl is not installed: {e}")) from None
    # Mesa's llvmpipe rasterises in worker threads, which a fork() (AsyncVectorEnv's workers) does not copy:
    # a child's first draw would wait for them forever. Drawing in the calling thread is fork-safe and, with
    # an env per core, no slower. Read once, when the process's first context is made; LP_NUM_THREADS set
    # by the user wins. GPU drivers ignore it.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as e:  # moderngl raises plain Exceptions for every driver failure
        reason = " ".join(str(e).split()) or type(e).__name__
        raise RuntimeError(CONTEXT_ERROR.format(reason=reason)) from None
    return ctx


_FLIP_Y = np.diag([1.0, -1.0, 1.0, 1.0])
"""Negates clip-space y, so that the framebuffer's first row is the picture's top row (pybullet's order)."""


@functools.cache
def context_error() -> str | None:
    """None if `create_context()` works here, else its one-line error (tried once per process)."""
    try:
        create_context().release()
    except RuntimeError as e:
        return str(e)
    return None


class GLKind:
    """One kind of body: its mesh (local vertices, normals, UVs, triangle indices) and its look."""

    def __init__(self, name, verts, idx, normals, uvs, bodies, albedo=(1.0, 1.0, 1.0), checker=None) -> None:
        self.name = name
        self.vertices = np.hstack([verts, normals, uvs]).astype(np.float32)  # (v, 8)
        self.indices = np.asarray(idx, np.int32)
        self.bodies = np.asarray(bodies, np.int64)
        self.albedo = tuple(float(c) for c in albedo[:3])
        self.checker = checker  # (dark, bright) uint8 RGB, or None for a flat colour


class GLDrawing:
    """Draws the kinds of bodies at given positions: `render(view_projection, positions)`."""

    def __init__(self, ctx, intrinsics: Intrinsics, kinds: list[GLKind], colour: bool) -> None:
        """`ctx` from `create_context()`, owned from here on (`close` releases it)."""
        self.ctx = ctx
        self.intrinsics = intrinsics
        self.colour = colour
        self.kinds = kinds
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        ctx, intr = self.ctx, self.intrinsics
        with ctx:
            head = f"#version 330\n#define AMBIENT {AMBIENT!r}\n#define DIFFUSE {DIFFUSE!r}\n"
            if self.colour:
                head += "#define COLOUR\n"
            self.program = ctx.program(
                vertex_shader=_VERTEX, fragment_shader=_FRAGMENT.replace("#version 330\n", head, 1)
            )
            if self.colour:
                light = np.asarray(LIGHT_DIRECTION, np.float64)
                self.program["light"].value = tuple(light / np.linalg.norm(light))
            size = (intr.width, intr.height)
            targets = [ctx.renderbuffer(size, components=2, dtype="f4")]  # (depth buffer, body id)
            if self.colour:
                targets.append(ctx.renderbuffer(size, components=4, dtype="f1"))
            self.fbo = ctx.framebuffer(color_attachments=targets, depth_attachment=ctx.depth_renderbuffer(size))
            self._draws = []
            for kind in self.kinds:
                rows = np.zeros((len(kind.bodies), 4), np.float32)  # (x, y, z, body id) per instance
                rows[:, 3] = kind.bodies
                instances = ctx.buffer(reserve=rows.nbytes, dynamic=True)
                layout = [
                    (ctx.buffer(kind.vertices.tobytes()), "3f 3f 2f", "in_position", "in_normal", "in_uv"),
                    (instances, "4f/i", "in_instance"),
                ]
                vao = ctx.vertex_array(
                    self.program, layout, index_buffer=ctx.buffer(kind.indices.tobytes()), skip_errors=True
                )
                self._draws.append((kind, rows, instances, vao))

    def render(self, view_projection: np.ndarray, positions: np.ndarray):
        """Draw every body at `positions` (num_bodies, 3), pybullet axes relative to the drawing origin, seen
        through `view_projection` (4, 4), pybullet's projection times its view matrix (row-major).

        Returns (rgba uint8 (H, W, 4) or None without colour, depth buffer float32 (H, W), body ids int32
        (H, W), -1 where nothing is drawn), rows top-down.
        """
        intr, ctx, fbo = self.intrinsics, self.ctx, self.fbo
        matrix = (_FLIP_Y @ view_projection).astype(np.float32)
        with ctx:
            fbo.use()
            ctx.enable_only(ctx.DEPTH_TEST)
            fbo.clear(1.0, -1.0, 0.0, 0.0, depth=1.0)  # nothing drawn: depth buffer 1 (far), body id -1
            self.program["view_projection"].write(matrix.T.tobytes())  # GLSL reads matrices column-major
            for kind, rows, instances, vao in self._draws:
                rows[:, :3] = positions[kind.bodies]
                instances.write(rows)
                if self.colour:
                    self.program["textured"].value = kind.checker is not None
                    if kind.checker is None:
                        self.program["albedo"].value = kind.albedo
                    else:
                        self.program["dark"].value = tuple(float(c) for c in kind.checker[0])
                        self.program["bright"].value = tuple(float(c) for c in kind.checker[1])
                vao.render(instances=len(rows))
            h, w = intr.height, intr.width
            geometry = np.frombuffer(fbo.read(components=2, attachment=0, dtype="f4"), np.float32)
            geometry = geometry.reshape(h, w, 2)
            rgba = None
            if self.colour:
                rgba = np.frombuffer(fbo.read(components=4, attachment=1), np.uint8).reshape(h, w, 4)
        return rgba, geometry[..., 0], geometry[..., 1].astype(np.int32)

    def close(self) -> None:
        if getattr(self, "ctx", None) is not None:
            self.ctx.release()
            self.ctx = None
