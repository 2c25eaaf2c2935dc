"""The "gl" backend: the scene's boxes drawn with moderngl through a headless EGL context, instanced.

One `GLDrawing` per `Scene`, one EGL context per drawing. Each kind of body (rider, car, building, ground) is
one mesh and one instance buffer of (x, y, z, body id) rows; a frame writes every kind's rows in one upload
and draws each kind with one instanced call, in one pass into two or three attachments:
- inverse depth 1/z, float32: gl_FragCoord.w, which is 1/w of the clip position, and w is the camera-frame
  depth z for a perspective projection (exact to float32, where TinyRenderer's depth buffer is linearised by
  `Intrinsics.inverse_depth` and loses digits far away); 0 where nothing is drawn;
- the body id of the pixel, int32, -1 where nothing is drawn (pybullet's segmentation mask), drawn as id + 1
  so that the clear's 0 means nothing drawn (a clear sets every attachment's first component alike);
- the cube view's colour (only when it is asked for): TinyRenderer's lighting and the same checker cells,
  computed in the fragment shader from the mesh's UVs.
The optical flow, when it is asked for on a GPU (`flow_pass_pays`), is a second, full-screen pass over those two
pictures that evaluates `camera.analytic_flow`'s formula at each pixel once (the bodies' offsets from
`camera.flow_motion`), the sky included. Every picture is read back straight into its own new array.
The projection is pybullet's matrix with its y axis negated, so that the framebuffer's first row is the
picture's top row, as pybullet returns it (no flip on read-back), and gl_FragCoord.xy is the pixel centre
(column + 0.5, row + 0.5), `camera`'s convention.
"""

from __future__ import annotations

import functools
import os
import re
import warnings

import numpy as np

from .camera import Intrinsics

CONTEXT_ERROR = "backend='gl': no OpenGL 3.3 context through EGL here ({reason}); use backend='tiny'"
"""The one-line error where no EGL context can be made; `{reason}` is the driver's or importer's word."""


class NoGLContext(RuntimeError):
    """No OpenGL 3.3 context through EGL here: the gl backend cannot draw (CONTEXT_ERROR's line)."""


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
layout(location = 0) out float inverse_depth;
layout(location = 1) out int body_id;  // body id + 1: the clear's 0 is "nothing drawn"
#ifdef COLOUR
layout(location = 2) out vec4 colour;
#endif
void main() {
    inverse_depth = gl_FragCoord.w;
    body_id = body + 1;
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

_FULL_SCREEN = """
#version 330
void main() {  // one triangle covering the picture
    gl_Position = vec4(vec2((gl_VertexID << 1) & 2, gl_VertexID & 2) * 2.0 - 1.0, 0.0, 1.0);
}
"""

_FLOW = """
#version 330
uniform sampler2D depth_map;  // inverse depth, 0 for the sky
uniform isampler2D id_map;    // body id + 1, 0 for the sky
uniform mat3 turn;            // camera.flow_motion's M: now-camera axes -> previous-camera axes
uniform vec3 offsets[BODIES]; // camera.flow_motion's offset of each body
uniform vec2 centre;          // principal point, pixels
uniform float focal;          // pixels
uniform float limit;          // the flow is clipped to [-limit, limit]
out vec2 flow;
void main() {
    // camera.analytic_flow: the point seen now at ray r = (rx, ry, 1) and depth z lies at
    // z (M r + (1/z) offset) in the previous camera; the sky (1/z = 0) turns with the camera only.
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    float inverse_depth = texelFetch(depth_map, pixel, 0).r;
    int body = max(texelFetch(id_map, pixel, 0).r - 1, 0);
    vec3 before = turn * vec3((gl_FragCoord.xy - centre) / focal, 1.0) + inverse_depth * offsets[body];
    flow = clamp(gl_FragCoord.xy - (centre + focal * before.xy / max(before.z, 1e-6)), -limit, limit);
}
"""


def _standalone(device: int):
    """moderngl's standalone EGL context on `device`, as the driver gives it (its plain Exceptions, ImportError)."""
    import moderngl

    # Mesa's llvmpipe rasterises in worker threads, which a fork() (AsyncVectorEnv's workers) does not copy:
    # a child's first draw would wait for them forever. Drawing in the calling thread is fork-safe and, with
    # an env per core, no slower. Read once, when the process's first context is made (whoever makes it:
    # hence here, under every context of this module); LP_NUM_THREADS set by the user wins. GPU drivers ignore it.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    return moderngl.create_standalone_context(backend="egl", require=330, device_index=device)


def _reason(error: Exception) -> str:
    """A driver's error on one line (moderngl's messages may span several), or its type's name."""
    return " ".join(str(error).split()) or type(error).__name__


def create_context(device: int = 0):
    """A standalone moderngl context on EGL device `device` (an index into `egl_devices()`; 0, EGL's first, is
    a GPU where its driver is installed), or NoGLContext in one line naming backend='tiny'; ValueError naming
    `egl_device` for a device this host does not have."""
    try:
        ctx = _standalone(device)
    except ImportError as e:
        raise NoGLContext(CONTEXT_ERROR.format(reason=f"moderngl is not installed: {e}")) from None
    except Exception as e:  # moderngl raises plain Exceptions for every driver failure
        devices = egl_devices() if device > 0 else ()
        if 0 < len(devices) <= device:
            raise ValueError(f"egl_device={device}: {_devices_line(devices)}") from None
        raise NoGLContext(CONTEXT_ERROR.format(reason=_reason(e))) from None
    _warn_if_gpu_idle(ctx)
    return ctx


UNUSABLE = "unusable: "
"""How `egl_devices()` names a device that makes no context, before the driver's reason."""


@functools.cache
def egl_devices() -> tuple[str, ...]:
    """The GL_RENDERER of each EGL device of this host, in `create_context(device)`'s order (empty without EGL),
    or UNUSABLE and the driver's reason for a device that makes no OpenGL 3.3 context. A context is made on each,
    once per process. The count is EGL's (moderngl names it when asked for a device past the last); where it does
    not say, devices are tried in order up to the first that fails."""
    said = None
    try:
        _standalone(1 << 16).release()
    except Exception as e:  # ImportError too: no moderngl, no devices
        said = re.search(r"found (\d+) devices?", str(e))
    count = int(said[1]) if said else None
    names = []
    while count is None or len(names) < count:
        try:
            ctx = _standalone(len(names))
        except Exception as e:
            if count is None:
                break
            names.append(UNUSABLE + _reason(e))
            continue
        names.append(driver(ctx))
        ctx.release()
    return tuple(names)


def egl_gpus() -> list[int]:
    """The `egl_devices()` indices of the GPUs: the usable devices that are not a software rasteriser."""
    return [i for i, name in enumerate(egl_devices()) if not (name.startswith(UNUSABLE) or is_software(name))]


def _devices_line(devices: tuple[str, ...]) -> str:
    listed = "; ".join(f"egl_device={i} is {name}" for i, name in enumerate(devices))
    return f"this host has {len(devices)} EGL device{'s' * (len(devices) > 1)}: {listed}"


SOFTWARE_RASTERISERS = ("llvmpipe", "softpipe", "swrast")
"""GL_RENDERER names of Mesa's CPU drivers."""

NVIDIA_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/nvidia0")
"""Files that say an NVIDIA GPU and its kernel driver are here (either will do)."""

GPU_IDLE_WARNING = (
    "backend='gl' draws on the CPU ({driver}) though this host has an NVIDIA GPU ({file}): EGL found no NVIDIA "
    "driver (libEGL_nvidia.so.0 and its vendor file 10_nvidia.json in /usr/share/glvnd/egl_vendor.d); in a "
    "container, give it the driver's graphics part (NVIDIA_DRIVER_CAPABILITIES=all or graphics,compute,utility)"
)
"""The warning, once per process, where an NVIDIA GPU is here but EGL draws on a software rasteriser and has no
GPU device to offer (a software device chosen among GPUs, `egl_device=`, is the user's choice: no warning)."""


def driver(ctx) -> str:
    """The GL_RENDERER of `ctx`: the GPU or CPU driver that draws, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"."""
    with ctx:  # a context answers for its driver only while it is current (else its info reads empty)
        return ctx.info["GL_RENDERER"]


def is_software(renderer: str) -> bool:
    """Whether a GL_RENDERER names one of Mesa's CPU drivers."""
    return any(name in renderer.lower() for name in SOFTWARE_RASTERISERS)


def flow_pass_pays(ctx) -> bool:
    """Whether the flow is drawn by the flow pass here: yes on a GPU, where the pass is nearly free; no on a
    software rasteriser, where the pass costs as much as numpy's `analytic_flow` of the same pictures and
    sampling just-drawn textures costs more (llvmpipe, one thread, 320 px: about 1.4 ms + 1 ms against
    1.5 ms), so the flow is computed from the read-back depth and ids instead (the same formula)."""
    return not is_software(driver(ctx))


_gpu_idle_warned = False


def _warn_if_gpu_idle(ctx) -> None:
    """Warn once per process if `ctx` draws on a software rasteriser while an NVIDIA GPU is here and EGL has no
    GPU device (`egl_gpus()`, asked only then)."""
    global _gpu_idle_warned
    if _gpu_idle_warned:
        return
    file = next((f for f in NVIDIA_DEVICE_FILES if os.path.exists(f)), None)
    if file is not None and is_software(name := driver(ctx)) and not egl_gpus():
        _gpu_idle_warned = True
        warnings.warn(GPU_IDLE_WARNING.format(driver=name, file=file), RuntimeWarning, stacklevel=3)


_FLIP_Y = np.diag([1.0, -1.0, 1.0, 1.0])
"""Negates clip-space y, so that the framebuffer's first row is the picture's top row (pybullet's order)."""


@functools.cache
def context_error(device: int = 0) -> str | None:
    """None if `create_context(device)` works here, else its one-line error (tried once per process and device;
    a device this host does not have is create_context's ValueError)."""
    try:
        create_context(device).release()
    except NoGLContext as e:
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
    """Draws the kinds of bodies at given positions: `render(view_projection, positions, ...)`."""

    def __init__(
        self, ctx, intrinsics: Intrinsics, kinds: list[GLKind], colour: bool, flow: bool = False, bodies: int = 0
    ) -> None:
        """`ctx` from `create_context()`, owned from here on (`close` releases it). `colour` draws the cube
        view, `flow` the optical flow of `bodies` bodies (ids 0 .. bodies - 1), beside inverse depth and ids."""
        self.ctx = ctx
        self.intrinsics = intrinsics
        self.colour = colour
        self.flow = flow
        self.bodies = bodies
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
            head += f"#define BODIES {max(self.bodies, 1)}\n" + "#define COLOUR\n" * self.colour

            def program(vertex, fragment):
                return ctx.program(vertex_shader=vertex, fragment_shader=fragment.replace("#version 330\n", head, 1))

            self.program = program(_VERTEX, _FRAGMENT)
            if self.colour:
                light = np.asarray(LIGHT_DIRECTION, np.float64)
                self.program["light"].value = tuple(light / np.linalg.norm(light))
            size = (intr.width, intr.height)
            # The drawing's pictures: (name, components, dtype, attachment), as render() returns them
            self.depth_map = ctx.texture(size, 1, dtype="f4")
            self.id_map = ctx.texture(size, 1, dtype="i4")
            for texture in (self.depth_map, self.id_map):  # an integer texture must not filter to be complete
                texture.filter = (ctx.NEAREST, ctx.NEAREST)
            targets = [self.depth_map, self.id_map]
            self.pictures = [("inverse_depth", 1, "f4", 0), ("ids", 1, "i4", 1)]
            if self.colour:
                targets.append(ctx.renderbuffer(size, components=4, dtype="f1"))
                self.pictures.append(("rgba", 4, "f1", 2))
            self.fbo = ctx.framebuffer(color_attachments=targets, depth_attachment=ctx.depth_renderbuffer(size))
            self.flow_fbo = None
            if self.flow:
                self.flow_program = program(_FULL_SCREEN, _FLOW)
                self.flow_program["depth_map"].value = 0
                self.flow_program["id_map"].value = 1
                self.flow_program["centre"].value = intr.center
                self.flow_program["focal"].value = intr.focal
                self.flow_vao = ctx.vertex_array(self.flow_program, [])
                self.flow_fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, components=2, dtype="f4")])
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

    def render(
        self,
        view_projection: np.ndarray,
        positions: np.ndarray,
        motion: tuple[np.ndarray, np.ndarray] | None = None,
        flow_limit: float = float("inf"),
    ) -> dict[str, np.ndarray]:
        """Draw every body at `positions` (num_bodies, 3), pybullet axes relative to the drawing origin, seen
        through `view_projection` (4, 4), pybullet's projection times its view matrix (row-major); with
        `motion`, `camera.flow_motion`'s (turn, offsets), its flow too (a drawing made with `flow=True`),
        clipped to `flow_limit`.

        Returns new arrays, rows top-down: "inverse_depth" float32 (H, W), 0 where nothing is drawn; "ids"
        int32 (H, W), -1 where nothing is drawn; "rgba" uint8 (H, W, 4) with `colour=True` (undefined where
        nothing is drawn); "flow" float32 (H, W, 2) with `motion`.
        """
        if motion is not None and not self.flow:
            raise ValueError("this drawing was made with flow=False: it draws no flow")
        intr, ctx, fbo = self.intrinsics, self.ctx, self.fbo
        shape = (intr.height, intr.width)
        matrix = (_FLIP_Y @ view_projection).astype(np.float32)
        out = {}
        with ctx:
            fbo.use()
            ctx.enable_only(ctx.DEPTH_TEST)
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)  # every attachment's first component 0: nothing drawn
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
            for name, components, dtype, attachment in self.pictures:
                array = np.empty(shape + (components,), np.uint8 if dtype == "f1" else dtype)
                fbo.read_into(array, components=components, attachment=attachment, dtype=dtype)
                out[name] = array if components > 1 else array[..., 0]
            out["ids"] -= 1  # -1 where nothing is drawn
            if motion is not None:
                turn, offsets = motion
                self.flow_fbo.use()
                ctx.enable_only(ctx.NOTHING)
                self.depth_map.use(0)
                self.id_map.use(1)
                program = self.flow_program
                program["turn"].write(np.asarray(turn, np.float32).T.tobytes())
                program["offsets"].write(np.asarray(offsets, np.float32).tobytes())
                program["limit"].value = flow_limit
                self.flow_vao.render(vertices=3)
                out["flow"] = np.empty(shape + (2,), np.float32)
                self.flow_fbo.read_into(out["flow"], components=2, dtype="f4")
        return out

    def close(self) -> None:
        if getattr(self, "ctx", None) is not None:
            self.ctx.release()
            self.ctx = None
