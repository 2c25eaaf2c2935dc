"""The gl backend against TinyRenderer: the same pixels, ids and depth; its context, fallback and lifetime."""

import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import spokester_env.gl as gl
import spokester_env.scene as scene_module
from spokester_env import SpokesterEnv
from spokester_env.camera import CameraPose, analytic_flow

needs_gl = pytest.mark.skipif(gl.context_error() is not None, reason=f"no EGL context here: {gl.context_error()}")


def silhouettes(*segs: np.ndarray) -> np.ndarray:
    """Pixels whose id differs from a horizontal or vertical neighbour's in any of the masks."""
    edge = np.zeros(segs[0].shape, bool)
    for seg in segs:
        dx, dy = seg[:, 1:] != seg[:, :-1], seg[1:] != seg[:-1]
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
        edge[1:] |= dy
        edge[:-1] |= dy
    return edge


def ground_truth_inverse_depth(env) -> np.ndarray:
    """1/z of the ground plane z = 0 at every pixel (0 where the ray never meets it)."""
    rx, ry = env.intrinsics.ray_components
    rays = np.stack(np.broadcast_arrays(rx, ry, np.ones((1, 1), np.float32)), -1) @ env._pose.rotation
    return np.maximum(-rays[..., 2] / env._pose.eye[2], 0.0)


def frames(backend: str, seed: int, size: int, camera: str, car_ahead: float | None = None):
    """(segmentation, inverse depth, cube view, env) after a seeded ride of a few steps, optionally with a car
    parked `car_ahead` metres in front of the camera in the camera's lane."""
    env = SpokesterEnv(width=size, height=size, observations=("depth", "rgb"), backend=backend, camera=camera)
    env.reset(seed=seed)
    for action in (0, 2, 0, 0, 1, 0):
        obs, *_ = env.step(action)
    if car_ahead is not None:
        tr = env.game.state.traffic
        tr.active[0], tr.lane[0], tr.y[0], tr.speed[0] = True, env.game.state.rider.target_lane, 0.0, 0.0
        tr.y[0] = env._pose.eye[1] + car_ahead + env.config.car_half_extents[2]
        obs, *_ = env.step(0)
    return env._seg.copy(), obs["depth"][..., 0].copy(), obs["rgb"].copy(), env


@needs_gl
@pytest.mark.parametrize(
    "seed, size, camera, car_ahead",
    [(0, 96, "follow", None), (1, 64, "first_person", None), (2, 80, "follow", 0.5), (3, 72, "first_person", 0.3)],
)
def test_backends_draw_the_same_ids_and_depth(seed, size, camera, car_ahead):
    """Identical body ids off silhouettes; on them at most a thin seam differs. gl's depth is exact up to float32:
    1e-5 relative on the ground plane, a few 1e-5 on a car's faces half a metre away (its vertices are float32
    positions up to a kilometre from the drawing origin); TinyRenderer's sits within a few % of it (its own
    interpolation error)."""
    seg_t, inv_t, rgb_t, tiny = frames("tiny", seed, size, camera, car_ahead)
    seg_g, inv_g, rgb_g, egl = frames("gl", seed, size, camera, car_ahead)
    try:
        np.testing.assert_array_equal(tiny._pose.eye, egl._pose.eye)
        edge = silhouettes(seg_t, seg_g)
        np.testing.assert_array_equal(seg_t[~edge], seg_g[~edge])
        assert (seg_t != seg_g).mean() <= 0.08, "ids may differ on silhouettes only"
        assert len(np.unique(seg_g)) >= 5 and (seg_g == -1).any() and (seg_g == egl.scene.ground).any()
        if car_ahead is not None:
            car = egl.scene.cars[0]
            assert (seg_g == car).mean() > 0.3 and (seg_t == car).mean() > 0.3, "the car fills the near view"
            # The rear faces of its body and roof, planes y = y_car - half length: gl's depth exact there
            # (TinyRenderer's interpolation is tens of % off this close).
            rx, ry = egl.intrinsics.ray_components
            rays = np.stack(np.broadcast_arrays(rx, ry, np.ones((1, 1), np.float32)), -1) @ egl._pose.rotation
            seen = 0
            for half in (egl.config.car_half_extents, egl.config.roof_half_extents):
                face = egl.game.state.traffic.y[0] - half[2]
                truth = rays[..., 1] / (face - egl._pose.eye[1])
                near = (seg_g == car) & ~edge & (np.abs(inv_g - truth) < 2e-3 * truth)  # this face's pixels
                if near.any():  # a face may be hidden (the roof, from a low camera)
                    rel = np.abs(inv_g[near] / truth[near] - 1)  # (a few pixels of the face beside it slip in)
                    assert np.median(rel) < 3e-5 and np.quantile(rel, 0.99) < 1e-4, rel
                seen += near.sum()
            assert seen > 0.2 * seg_g.size, "within 0.2 % of the true faces over a fifth of the picture"
        ground = (seg_g == egl.scene.ground) & ~edge
        truth = ground_truth_inverse_depth(egl)
        np.testing.assert_allclose(inv_g[ground], truth[ground], rtol=1e-5)
        same = (seg_t == seg_g) & (seg_g >= 0) & ~edge
        rel = np.abs(inv_t[same] - inv_g[same]) / inv_g[same]
        assert np.median(rel) < 0.04, np.median(rel)
        np.testing.assert_array_equal(inv_g[seg_g < 0], 0.0)
        # The cube view: the same colours, the rider and cars shaded alike (but for TinyRenderer's odd pixel).
        boxes = np.isin(seg_g, [egl.scene.rider, *egl.scene.cars]) & same
        assert (rgb_g[boxes] == rgb_t[boxes]).all(-1).mean() >= 0.98
        assert {tuple(c) for c in rgb_g[same].reshape(-1, 3)} <= {tuple(c) for c in rgb_t.reshape(-1, 3)} | {
            tuple(c) for c in rgb_g[boxes]
        }
    finally:
        tiny.close()
        egl.close()


@needs_gl
@pytest.mark.parametrize("flow_pass", [True, False], ids=["flow pass", "numpy"])
@pytest.mark.parametrize(
    "camera, seed, car_ahead", [("follow", 0, None), ("first_person", 1, None), ("follow", 2, 0.5)]
)
def test_gl_gives_the_analytic_flow(camera, seed, car_ahead, flow_pass, monkeypatch):
    """gl's flow, drawn by its flow pass (a GPU's way, forced here) or computed in numpy (llvmpipe's), is
    `analytic_flow` of its own depth and ids (a thousandth of a pixel, sky included), and TinyRenderer's flow
    but for TinyRenderer's depth error (a tenth of a pixel off silhouettes)."""
    monkeypatch.setattr(scene_module, "flow_pass_pays", lambda ctx: flow_pass)
    flows = {}
    for backend in ("tiny", "gl"):
        env = SpokesterEnv(width=96, height=80, observations=("depth", "flow", "rgb"), backend=backend, camera=camera)
        env.reset(seed=seed)
        for action in (0, 2, 0, 0, 1, 0, 0, 0):
            if car_ahead is not None and action == 1:  # a car pulls in just ahead, slower than the rider
                tr = env.game.state.traffic
                tr.active[0], tr.lane[0], tr.speed[0] = True, env.game.state.rider.target_lane, 2.0
                tr.y[0] = env._pose.eye[1] + car_ahead + env.config.car_half_extents[2] + 3.0
            previous = env._pose
            obs, *_ = env.step(action)
        if backend == "gl":
            assert env.scene._gl.flow is flow_pass
        seg, depth, flow = env._seg, obs["depth"][..., 0], obs["flow"]
        own = analytic_flow(depth, seg, env._displacement, env._pose, previous, env.intrinsics)
        np.testing.assert_allclose(flow, np.clip(own, -96, 96), rtol=0, atol=1e-3)
        flows[backend] = (seg.copy(), flow.copy())
        car = env.scene.cars[0]
        env.close()
    (seg_t, flow_t), (seg_g, flow_g) = flows["tiny"], flows["gl"]
    if car_ahead is not None:
        assert (seg_g == car).mean() > 0.05, "the car fills part of the view"
    same = (seg_t == seg_g) & ~silhouettes(seg_t, seg_g)
    error = np.abs(flow_t - flow_g).max(-1)
    assert np.median(error[same]) < 0.05 and np.quantile(error[same], 0.99) < 0.15
    assert np.median(np.abs(flow_g[same])) > 0.1, "the frames move"
    sky = (seg_t < 0) & (seg_g < 0)
    assert sky.any() and error[sky].max() < 1e-3


@needs_gl
def test_both_backends_crash_at_the_same_step_on_the_same_rides():
    """gl draws the bodies from `Scene.positions` and moves only the rider and the near cars in pybullet, just
    before testing their contact; TinyRenderer's scene moves every body every step. The crashes are the same."""
    crashes = {}
    for backend in ("tiny", "gl"):
        env = SpokesterEnv(width=8, height=8, observations=("depth",), backend=backend)
        rng, steps = np.random.default_rng(0), []
        for seed in range(6):
            env.reset(seed=seed)
            step = next((k for k in range(600) if env.step(int(rng.choice(3, p=(0.8, 0.1, 0.1))))[2]), None)
            steps.append((step, round(env.game.state.distance, 6)))
        env.close()
        crashes[backend] = steps
    assert crashes["gl"] == crashes["tiny"]
    assert sum(step is not None for step, _ in crashes["tiny"]) >= 4  # most rides end in a crash


@needs_gl
def test_a_box_at_a_known_position_lands_on_the_same_pixels_in_both_backends():
    """A car placed in view is drawn over the pixels its corners project to, by both backends alike."""
    drawn = {}
    for backend in ("tiny", "gl"):
        env = SpokesterEnv(width=80, height=60, observations=("depth",), backend=backend)
        env.reset(seed=0)
        scene = env.scene
        pose = CameraPose.look_at((0.3, -6.0, 1.6), (1.0, 10.0, 0.5))
        for car in scene.cars:
            scene.positions[car] = (0.0, -5000.0, -100.0)
        world = np.array([1.2, 2.0, 0.0])
        at = world - (0.0, scene.origin, 0.0)  # bodies stand relative to the drawing origin
        scene.positions[scene.cars[3]] = at
        scene._place(scene.cars[3], at.tolist(), (0, 0, 0, 1))
        for car in scene.cars[:3] + scene.cars[4:]:
            scene._place(car, (0.0, -5000.0, -100.0), (0, 0, 0, 1))
        seg = scene.render(pose).ids  # a pose in world coordinates
        drawn[backend] = seg == scene.cars[3]
        car_half, cfg = np.array(env.config.car_half_extents), env.config
        env.close()
    mask = drawn["gl"]
    assert 100 < mask.sum() < 0.5 * mask.size
    assert (drawn["tiny"] != mask).sum() <= 0.1 * mask.sum(), "the same pixels but for a seam"
    # The car body's corners (across, along, up) project to the drawn extent, within a pixel.
    w, length, h = car_half[0], car_half[2], 2 * car_half[1]
    corners = np.array([[sx * w, sy * length, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0, h)]) + world
    intr = type(env.intrinsics)(80, 60, cfg.camera.fov, cfg.camera.near, cfg.camera.far)
    uv = intr.project((corners - pose.eye) @ pose.rotation.T)
    rows, cols = np.nonzero(mask)
    assert abs(cols.min() - uv[:, 0].min()) <= 1.0 and abs(rows.max() + 1 - uv[:, 1].max()) <= 1.0


def test_gl_without_egl_is_a_one_line_error_and_the_default_falls_back_to_tiny(no_egl):
    with pytest.raises(gl.NoGLContext) as error:
        SpokesterEnv(width=16, height=16, backend="gl")
    message = str(error.value)
    assert "backend='gl'" in message and "backend='tiny'" in message and "eglGetDisplay failed (no device)" in message
    assert isinstance(error.value, RuntimeError) and gl.egl_devices() == ()
    with pytest.warns(RuntimeWarning, match="falling back to backend='tiny'"):
        env = SpokesterEnv(width=16, height=16, egl_device=1)  # no device at all: the fallback, not a device error
    assert env.scene.backend == "tiny" and env._kwargs["backend"] == "tiny" and env._kwargs["egl_device"] is None
    env.close()


@needs_gl
def test_the_default_is_gl_where_egl_works_and_egl_is_a_deprecated_name_for_it():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = SpokesterEnv(width=16, height=16)
    assert env.scene.backend == "gl"
    env.close()
    with pytest.warns(DeprecationWarning, match="backend='egl' .* is retired: it now means backend='gl'"):
        old = SpokesterEnv(width=16, height=16, backend="egl")
    assert old.scene.backend == "gl" and old._kwargs["backend"] == "gl"
    obs, _ = old.reset(seed=0)
    assert obs["depth"].max() > 0
    old.close()


@needs_gl
def test_the_flow_pass_is_for_gpus_and_llvmpipe_computes_the_flow_in_numpy():
    ctx = gl.create_context()
    try:
        with ctx:  # leaving a `with` leaves no context current: an idle context's info, read first then, is empty
            pass
        pays = gl.flow_pass_pays(ctx)  # the first read of its info: it makes the context current to ask
        software = any(name in ctx.info["GL_RENDERER"].lower() for name in ("llvmpipe", "softpipe", "swrast"))
        assert ctx.info["GL_RENDERER"] and pays is not software
    finally:
        ctx.release()
    env = SpokesterEnv(width=16, height=16, observations=("depth", "flow"), backend="gl")
    assert env.scene._gl.flow is not software
    env.close()


@needs_gl
def test_two_gl_envs_in_one_process_do_not_share_state():
    """Interleaved steps of two envs (different sizes and seeds) give what each gives alone."""

    def ride(env, seed, other=None):
        obs, _ = env.reset(seed=seed)
        out = [obs["depth"].copy()]
        for i in range(6):
            if other is not None:
                other.step(i % 3)
            out.append(env.step(i % 3)[0]["depth"].copy())
        return out

    a = SpokesterEnv(width=48, height=40, observations=("depth", "rgb"), backend="gl")
    b = SpokesterEnv(width=32, height=32, observations=("depth", "flow"), backend="gl")
    try:
        b.reset(seed=9)
        together = ride(a, 4, other=b)
        alone = ride(a, 4)
        for x, y in zip(together, alone, strict=True):
            np.testing.assert_array_equal(x, y)
        assert b.step(0)[0]["depth"].shape == (32, 32, 1)
    finally:
        a.close()
        b.close()


@needs_gl
def test_gl_close_releases_the_context_and_is_safe_twice():
    env = SpokesterEnv(width=16, height=16, backend="gl")
    env.reset(seed=0)
    drawing = env.scene._gl
    env.close()
    assert drawing.ctx is None
    env.close()
    drawing.close()


@needs_gl
def test_env_driver_names_who_draws():
    tiny = SpokesterEnv(width=16, height=16, backend="tiny")
    drawn = SpokesterEnv(width=16, height=16, backend="gl")
    try:
        assert tiny.driver == "TinyRenderer"
        assert drawn.driver == gl.egl_devices()[0] == gl.driver(drawn.scene._gl.ctx) != "TinyRenderer"
    finally:
        tiny.close()
        drawn.close()


def fake_host(monkeypatch, count: int, unusable: tuple[int, ...] = ()) -> list[int]:
    """A host of `count` EGL devices as moderngl sees it, each this host's device 0 under another index, but those
    in `unusable`, which make no context; returns the list of device indices asked for."""
    moderngl = pytest.importorskip("moderngl")
    real, asked = moderngl.create_standalone_context, []

    def create(*args, device_index=0, **kwargs):
        asked.append(device_index)
        if device_index >= count:
            raise Exception(f"requested device index {device_index}, but found {count} devices")
        if device_index in unusable:
            raise Exception("eglCreateContext failed (0x3003)")
        return real(*args, device_index=0, **kwargs)

    monkeypatch.setattr(moderngl, "create_standalone_context", create)
    gl.egl_devices.cache_clear()
    gl.context_error.cache_clear()
    return asked


@pytest.fixture
def two_device_host(monkeypatch):
    """A host of two EGL devices as moderngl sees it: device 1 is this host's device 0 under another name."""
    yield fake_host(monkeypatch, 2)
    gl.egl_devices.cache_clear()
    gl.context_error.cache_clear()


@needs_gl
def test_egl_devices_lists_every_device_and_says_which_make_no_context(monkeypatch):
    name = gl.egl_devices()
    try:
        fake_host(monkeypatch, 3, unusable=(1,))
        assert gl.egl_devices() == (name[0], "unusable: eglCreateContext failed (0x3003)", name[0])
        with pytest.raises(gl.NoGLContext, match=re.escape("(eglCreateContext failed (0x3003))")):
            SpokesterEnv(width=16, height=16, backend="gl", egl_device=1)
        env = SpokesterEnv(width=16, height=16, backend="gl", egl_device=2)  # past the unusable one
        env.close()
    finally:
        gl.egl_devices.cache_clear()
        gl.context_error.cache_clear()


def test_egl_gpus_are_the_usable_devices_that_are_not_software(monkeypatch):
    devices = ("NVIDIA H200/PCIe/SSE2", "unusable: eglCreateContext failed", "llvmpipe (LLVM 15.0.6, 256 bits)")
    monkeypatch.setattr(gl, "egl_devices", lambda: devices)
    assert gl.egl_gpus() == [0]
    monkeypatch.setattr(gl, "egl_devices", lambda: devices[::-1] + devices[:1])
    assert gl.egl_gpus() == [2, 3]


@needs_gl
def test_egl_device_picks_the_device_the_env_draws_on(two_device_host):
    assert len(gl.egl_devices()) == 2
    two_device_host.clear()
    env = SpokesterEnv(width=16, height=16, backend="gl", egl_device=1)
    try:
        assert two_device_host == [1] and env._kwargs["egl_device"] == 1
        twin = pickle.loads(pickle.dumps(env))
        assert two_device_host == [1, 1]  # the unpickled env draws on the same device
        twin.close()
    finally:
        env.close()
    two_device_host.clear()
    SpokesterEnv(width=16, height=16, egl_device=1).close()  # the default backend probes the device asked for
    assert two_device_host == [1, 1]


@needs_gl
def test_an_egl_device_the_host_lacks_is_one_line_naming_the_devices_there(two_device_host):
    with pytest.raises(ValueError) as error:
        SpokesterEnv(width=16, height=16, backend="gl", egl_device=2)
    message = str(error.value)
    assert message.startswith("egl_device=2: this host has 2 EGL devices: egl_device=0 is ")
    assert message.count(gl.egl_devices()[0]) == 2 and "\n" not in message


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"egl_device": -1}, ValueError, "egl_device=-1: must be an EGL device index, an integer >= 0, or None"),
        ({"egl_device": True}, TypeError, "egl_device=True: must be an EGL device index"),
        ({"egl_device": "0"}, TypeError, "egl_device='0': must be an EGL device index"),
        ({"egl_device": 0, "backend": "tiny"}, ValueError, "only backend='gl' draws through EGL"),
    ],
)
def test_bad_egl_devices_are_one_line_errors(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        SpokesterEnv(width=16, height=16, **kwargs)


@needs_gl
def test_a_gpu_host_drawing_on_llvmpipe_warns_once(tmp_path, monkeypatch):
    """Where an NVIDIA GPU is present but EGL gives a software rasteriser, the first context says why."""
    nvidia = tmp_path / "nvidia0"
    monkeypatch.setattr(gl, "_gpu_idle_warned", False)
    monkeypatch.setattr(gl, "NVIDIA_DEVICE_FILES", (str(tmp_path / "absent"),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.create_context().release()  # no GPU: no warning
    monkeypatch.setattr(gl, "NVIDIA_DEVICE_FILES", (str(tmp_path / "absent"), str(nvidia)))
    nvidia.write_text("")
    real_driver = gl.driver
    monkeypatch.setattr(gl, "driver", lambda ctx: "NVIDIA H200/PCIe/SSE2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.create_context().release()  # a GPU that EGL draws on: no warning
    monkeypatch.setattr(gl, "driver", lambda ctx: "llvmpipe (LLVM 15.0.6, 256 bits)")
    monkeypatch.setattr(gl, "egl_gpus", lambda: [1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.create_context().release()  # llvmpipe chosen where EGL also offers a GPU: the user's choice
    monkeypatch.setattr(gl, "egl_gpus", lambda: [])
    with pytest.warns(RuntimeWarning) as caught:
        gl.create_context().release()
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith("backend='gl' draws on the CPU (llvmpipe (LLVM 15.0.6, 256 bits)) though this host")
    assert str(nvidia) in message and "NVIDIA_DRIVER_CAPABILITIES" in message and "\n" not in message
    monkeypatch.setattr(gl, "driver", real_driver)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.create_context().release()  # once per process


@pytest.mark.gpu
def test_gl_draws_on_the_gpu_through_egl():
    """On an NVIDIA machine the gl backend's context is the GPU's, and it draws the same ids as TinyRenderer."""
    ctx = gl.create_context()
    try:
        assert not gl.is_software(gl.driver(ctx)), gl.driver(ctx)
        assert gl.flow_pass_pays(ctx), "a GPU draws the flow"
    finally:
        ctx.release()
    seg_t, _, _, tiny = frames("tiny", 0, 96, "follow")
    seg_g, _, _, egl = frames("gl", 0, 96, "follow")
    tiny.close()
    egl.close()
    edge = silhouettes(seg_t, seg_g)
    np.testing.assert_array_equal(seg_t[~edge], seg_g[~edge])


@needs_gl
def test_listing_the_egl_devices_first_leaves_subprocess_vector_envs_drawing():
    """A fresh process that lists its EGL devices before forking its envs' workers: llvmpipe's first context
    must be made single-threaded (gl's own LP_NUM_THREADS=0), else a forked worker's first draw hangs."""
    code = (
        "import gymnasium as gym, spokester_env\n"
        "from spokester_env.gl import egl_devices\n"
        "assert egl_devices()\n"
        "envs = gym.make_vec('Spokester-v0', num_envs=2, vectorization_mode='async', width=24, height=24)\n"
        "obs, _ = envs.reset(seed=[1, 2])\n"
        "envs.close()\n"
        "print(float(obs['depth'].max()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) > 0
