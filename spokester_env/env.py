"""`SpokesterEnv`: the Spokester game as a Gymnasium environment."""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .camera import CameraPose, FollowCamera, Intrinsics
from .config import ACTION_MEANINGS, DEFAULT_IMAGE_SIZE, CameraConfig, GameConfig, camera_config, with_scene
from .game import Game
from .gl import context_error
from .scene import BACKENDS, CLASS_NAMES, SKY_RGB, Scene

OBSERVATION_KEYS = ("depth", "flow", "rgb", "cars")
RENDER_MODES = ("human", "rgb_array")


def _backend(backend: str | None, renderer: str | None, egl_device: int | None = None) -> str:
    """The backend asked for, from `backend=` or its deprecated old name `renderer=`; by default "gl" where
    an EGL context can be made (on `egl_device`), else "tiny" with a one-line warning."""
    if egl_device is not None:
        if not isinstance(egl_device, numbers.Integral) or isinstance(egl_device, bool):
            raise TypeError(f"egl_device={egl_device!r}: must be an EGL device index, an integer >= 0, or None")
        if egl_device < 0:
            raise ValueError(f"egl_device={egl_device!r}: must be an EGL device index, an integer >= 0, or None")
    if renderer is not None:
        if backend is not None:
            raise ValueError(
                f"backend={backend!r} and renderer={renderer!r}: pass backend= alone (renderer= is its old name)"
            )
        warnings.warn(
            "SpokesterEnv(renderer=...) is deprecated: pass backend= ('gl' or 'tiny')", DeprecationWarning, stacklevel=3
        )
        backend = renderer
    if backend == "egl":
        warnings.warn(
            "backend='egl' (pybullet's EGL plugin) is retired: it now means backend='gl', the same EGL drawn faster",
            DeprecationWarning,
            stacklevel=3,
        )
        backend = "gl"
    if backend is None:
        error = context_error(egl_device or 0)
        if error is None:
            return "gl"
        warnings.warn(f"{error}: falling back to backend='tiny'", RuntimeWarning, stacklevel=3)
        return "tiny"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if backend == "tiny" and egl_device is not None:
        raise ValueError(f"egl_device={egl_device!r}: only backend='gl' draws through EGL (this is backend='tiny')")
    return backend


def _observation_keys(observations) -> tuple[str, ...]:
    """The observation keys asked for: one key or several distinct ones from OBSERVATION_KEYS."""
    if isinstance(observations, str):
        observations = (observations,)
    try:
        keys = tuple(observations)
    except TypeError:
        keys = None
    if keys is None or not all(isinstance(key, str) for key in keys):
        raise TypeError(f"observations={observations!r}: must be a key or a tuple of keys from {OBSERVATION_KEYS}")
    if not keys or len(set(keys)) != len(keys) or any(key not in OBSERVATION_KEYS for key in keys):
        raise ValueError(f"observations={keys!r}: choose one or more distinct keys from {OBSERVATION_KEYS}")
    return keys


class SpokesterEnv(gym.Env):
    """
    ## Description
    An endless cycling game. The rider (a green box) rides along a city road of three lanes (by default;
    `GameConfig.num_lanes`) at a speed that starts slow and grows without bound; red cars drive the same
    way, more slowly, and must be dodged by changing lanes. One touch of a car ends the episode. At every
    moment one lane is kept free of new cars (the *open lane*, which moves to a neighbouring lane from time
    to time with an overlap long enough to change lanes), so perfect play always survives. The
    observations are what the neural renderer is conditioned on: inverse depth and optical flow of the
    cube world, seen by a camera that follows over the rider's shoulder with a little lag.

    ## Action Space
    `Discrete(3)`: 0 keep lane, 1 move one lane left, 2 move one lane right. A move towards a road edge
    from the outer lane does nothing. The rider is pulled to the target lane by a spring-damper whose
    stiffness grows with speed, after a short counter-steer kick away from it; at the start speed the
    rider is within 0.1 m of the new lane's centre 0.75 s after the action.

    ## Observation Space
    A `Dict` holding the keys chosen by `observations` (default `("depth", "flow")`), each H x W:

    | key     | dtype   | shape     | units and range                                                   |
    |---------|---------|-----------|-------------------------------------------------------------------|
    | `depth` | float32 | (H, W, 1) | inverse depth 1/z along the optical axis, 1/m, in [0, 1/near];     |
    |         |         |           | [0, 10] by default; 0 is sky                                      |
    | `flow`  | float32 | (H, W, 2) | optical flow, pixels per frame, x right, y down, clipped to       |
    |         |         |           | +-max(H, W)                                                       |
    | `rgb`   | uint8   | (H, W, 3) | the cube view, [0, 255]                                           |
    | `cars`  | uint8   | (H, W, 1) | 1 where a car is seen, else 0 (for a renderer told where the cars |
    |         |         |           | are, `neural_render.RendererConfig.wants_cars`)                    |

    Flow at a pixel is the position now minus the position one frame earlier of the surface point seen
    there now; sky pixels carry the flow of points at infinity. It is computed analytically from the
    depth, pybullet's segmentation mask, each body's motion and the camera's motion. For pixel-based RL
    with stable-baselines3, wrap the env in `spokester_env.PackedObservation` (uint8, channel-first) and
    use `CnnPolicy`; the `Dict` itself trains with `MultiInputPolicy` (an MLP on the flattened arrays).

    ## Rewards
    The metres travelled during the step (speed x dt, growing as the ride speeds up); 0 on steps after a
    crash (see Episode End).

    ## Starting State
    The rider in the middle lane (lane 1 of 0-2; of an even number of lanes, the left middle one,
    `GameConfig.start_lane`) at the start speed (5 m/s), the camera settled behind it, the road
    ahead filled with cars from 30 m to 100 m according to the seed.

    ## Episode End
    Terminated when the rider's box touches a car (pybullet closest points), at that very step. The
    registered `Spokester-v0` is truncated after 3000 steps (125 s at 24 fps); pass
    `max_episode_steps` to `gym.make` to change it.

    The crash persists until `reset()`: every further `step` returns the crash step's observation and
    info again, reward 0 and `terminated=True`; the world does not move (the action is still checked, then
    ignored), and the first such step of an episode warns (`UserWarning`) to call `reset()`. After
    `close()`, `reset`, `step`, `render` and `class_map` raise `gymnasium.error.ClosedEnvironmentError`
    (make a new env); `close()` itself may be called again.

    `info`: `distance` (m since reset), `speed` (m/s), `lane` (the lane the rider is in or heading to, 0 to
    `num_lanes - 1` from left to right: 0-2 by default), `x` (m, lateral position), `crashed` (bool), all
    Python scalars.

    Not an observation, for evaluation tools: `class_map()` gives the game's own class of every pixel of
    the latest frame, (H, W) uint8 indices into `spokester_env.CLASS_NAMES` (sky, ground, buildings, cars,
    rider; sky exactly where inverse depth is 0), from the segmentation mask that flow is made with.

    ## Arguments
    A bad argument is one line: a `TypeError` for the wrong kind of value, a `ValueError` for a value out
    of range, each naming the argument and what it may be.
    - `width`, `height` (int > 0, default 320, `spokester_env.DEFAULT_IMAGE_SIZE`): image size in pixels.
    - `observations` (tuple of `"depth"`, `"flow"`, `"rgb"`, `"cars"`, default `("depth", "flow")`).
    - `render_mode` (`None`, `"rgb_array"`, `"human"`): the cube view, or a pygame window showing it.
    - `fps` (finite number > 0, default 24): frames per second; one step advances `dt = 1 / fps` seconds.
    - `backend` (`"gl"` or `"tiny"`): who draws the camera images; pybullet keeps the geometry and contacts
      either way. `"gl"` (the default where an EGL context can be made) draws the boxes instanced with
      moderngl through EGL, on a GPU or on Mesa's llvmpipe: 3-8x faster than `"tiny"` on a CPU, with exact
      depth (inverse depth within 2e-4 relative of the true surface). `"tiny"` is pybullet's TinyRenderer,
      the default where EGL is missing (with a one-line warning); its depth interpolation is off by about
      1 % (up to tens of % on far grazing surfaces), so its depth, ids on silhouettes and checker cells
      differ a little from `"gl"`'s. Each backend is bit-exact for a seed. `"egl"` (pybullet's EGL plugin)
      is retired and means `"gl"`, with a `DeprecationWarning`; `renderer=` is the deprecated old name of
      `backend=`. (The neural renderer is something else: it paints the observations, see `neural_render`.)
    - `config` (`GameConfig` or `None`): every rule and the camera rig; defaults are the seed's play settings.
    - `camera` (keyword; `"follow"`, `"first_person"` or a `CameraConfig`; default: the config's, the seed's
      `"follow"`): the camera rig, `spokester_env.CAMERA_PRESETS`. `"follow"` looks over the rider's
      shoulder; `"first_person"` looks down the road from the rider's head, as dashcam and helmet footage
      does (the rider's box out of view).
    - `scene` (keyword; `"city"` or `"open"`; default: the config's, the seed's `"city"`): the roadside,
      `spokester_env.SCENE_PRESETS`. `"city"` has rows of 60 m walls; `"open"` low boxes with sky between
      them, closer to the shipped footage's roadsides.
    - `egl_device` (keyword; integer >= 0 or `None`, default `None`, which is 0): the EGL device the `"gl"`
      backend draws on, an index into `spokester_env.gl.egl_devices()` (EGL usually lists GPUs before
      Mesa's llvmpipe). On a host of several GPUs, give each env of a vector env its own. Not with `backend="tiny"`.
      `env.unwrapped.driver` names who draws: `"TinyRenderer"` or the device's GL_RENDERER; where an NVIDIA
      GPU is present but EGL offers only llvmpipe, the first env of a process warns (`RuntimeWarning`) and says
      what the container lacks.

    ## Version History
    - v0: initial release.
    - v0 (rides unchanged): the argument `renderer` is renamed `backend` (`renderer=` still works, with a
      `DeprecationWarning`); `GameConfig.num_lanes` takes any number of lanes from 2; `camera=` picks a
      camera preset (`"follow"`, the default and the seed's, or `"first_person"`) and `scene=` a roadside
      (`"city"`, the default, or `"open"`).
    - v0 (the same rides, drawn by another backend): `backend="gl"` (moderngl through EGL) is new and the
      default where EGL works; `backend="egl"` (pybullet's EGL plugin, slower than both) is retired and means
      `"gl"`. Seeded rides are unchanged; the observations differ from `"tiny"`'s by its depth error.
    - v0 (rides unchanged up to the crash): stepping after a crash without `reset()` no longer moves the world
      and pays reward (it did, with `terminated` true only on steps that touched a car): the crash persists
      (terminated, reward 0, the same observation) with a warning; a closed env raises
      `ClosedEnvironmentError` instead of an `AttributeError`; arguments of the wrong type or out of range
      (`fps=inf`, `fps="24"`, `config="x"`) are one-line `TypeError`s or `ValueError`s.
    - v0 (rides and observations unchanged): `egl_device=` picks the EGL device of `"gl"`; `driver` says who
      draws.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 24}

    def __init__(
        self,
        width: int = DEFAULT_IMAGE_SIZE,
        height: int = DEFAULT_IMAGE_SIZE,
        observations: tuple[str, ...] | list[str] = ("depth", "flow"),
        render_mode: str | None = None,
        fps: float = 24.0,
        backend: str | None = None,
        config: GameConfig | None = None,
        *,
        camera: str | CameraConfig | None = None,
        scene: str | None = None,
        egl_device: int | None = None,
        renderer: str | None = None,
    ) -> None:
        backend = _backend(backend, renderer, egl_device)
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name}={value!r}: must be a positive integer (pixels)")
            if value <= 0:
                raise ValueError(f"{name}={value!r}: must be a positive integer (pixels)")
        observations = _observation_keys(observations)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode={render_mode!r} is not one of {(None,) + RENDER_MODES}")
        if not isinstance(fps, numbers.Real) or isinstance(fps, bool):
            raise TypeError(f"fps={fps!r}: must be a number of frames per second, finite and > 0")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps={fps!r}: must be finite and > 0 (frames per second)")
        if config is not None and not isinstance(config, GameConfig):
            raise TypeError(f"config={config!r}: must be a spokester_env.GameConfig or None")
        self._kwargs = dict(
            width=int(width),
            height=int(height),
            observations=observations,
            render_mode=render_mode,
            fps=float(fps),
            backend=backend,
            config=config,
            camera=camera,
            scene=scene,
            egl_device=egl_device if backend == "gl" else None,
        )
        self.config = config if config is not None else GameConfig()
        if camera is not None:  # a preset name or a rig: it replaces the config's camera
            self.config = dataclasses.replace(self.config, camera=camera_config(camera))
        if scene is not None:  # a preset name: it replaces the config's roadside fields
            self.config = with_scene(self.config, scene)
        self.render_mode = render_mode
        self.observation_keys = observations
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        if self.fps != type(self).metadata["render_fps"]:
            self.metadata = {
                **type(self).metadata,
                "render_fps": self.fps,
            }  # an instance copy; the class's stays

        cam = self.config.camera
        self.intrinsics = Intrinsics(int(width), int(height), cam.fov, cam.near, cam.far)
        self.flow_limit = float(max(width, height))
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        boxes = {
            "depth": spaces.Box(0.0, 1.0 / cam.near, (height, width, 1), np.float32),
            "flow": spaces.Box(-self.flow_limit, self.flow_limit, (height, width, 2), np.float32),
            "rgb": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "cars": spaces.Box(0, 1, (height, width, 1), np.uint8),
        }
        self.observation_space = spaces.Dict({k: boxes[k] for k in observations})

        self.game = Game(self.config, self.dt)
        self.camera = FollowCamera(cam, self.dt)
        # The cube view's textures are drawn only when someone can see the cube view.
        textured = "rgb" in observations or render_mode is not None
        self.scene = Scene(
            self.config,
            self.intrinsics,
            backend,
            textured=textured,
            flow="flow" in observations,
            egl_device=egl_device or 0,
        )
        self.driver = self.scene.driver
        """Who draws the camera images: "TinyRenderer", or the gl backend's GL_RENDERER (its GPU or llvmpipe)."""
        self._displacement = np.zeros((self.scene.num_bodies, 3))
        self._car_ids = np.array(self.scene.cars)
        self._pose: CameraPose | None = None
        self._rgba: np.ndarray | None = None
        self._sky: np.ndarray | None = None
        self._seg: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self._window = None
        self._clock = None
        self._crash: dict | None = None  # the crash step's observation, while the episode stays crashed
        self._told_to_reset = False

    # --- the MDP ----------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._check_open()
        super().reset(seed=seed)
        self._crash, self._told_to_reset = None, False
        self.game.reset(self.np_random)
        st = self.game.state
        self.camera.reset(st.rider.x)
        pose = self.camera.pose(st.distance)
        # The ride is already under way at reset: flow shows one frame of motion at the start speed.
        travelled = self.game.speed * self.dt
        prev = CameraPose(pose.eye - np.array([0.0, travelled, 0.0]), pose.rotation)
        obs = self._advance(pose, prev, rider_dx=0.0, travelled=travelled)
        if self.render_mode == "human":
            self.render()
        return obs, self._info(crashed=False)

    def step(self, action):
        self._check_open()
        if self._pose is None:
            raise gym.error.ResetNeeded("Call reset() before step()")
        if not self.action_space.contains(action):
            allowed = ", ".join(f"{i} ({m})" for i, m in enumerate(ACTION_MEANINGS))
            raise ValueError(f"action={action!r} is not one of {allowed}")
        if self._crash is not None:
            return self._crashed_step()
        x_before = self.game.state.rider.x
        travelled = self.game.step(int(action))
        st = self.game.state
        self.camera.update(st.rider.x)
        obs = self._advance(self.camera.pose(st.distance), self._pose, st.rider.x - x_before, travelled)
        crashed = self.scene.rider_hits_car(st)
        if crashed:
            self._crash = {key: value.copy() for key, value in obs.items()}
        if self.render_mode == "human":
            self.render()
        return obs, float(travelled), crashed, False, self._info(crashed)

    def _crashed_step(self):
        """A step after a crash: the crash again, reward 0, nothing moves (see Episode End)."""
        if not self._told_to_reset:
            self._told_to_reset = True
            warnings.warn(
                "SpokesterEnv.step() after a crash: the ride stays crashed (terminated, reward 0, the world "
                "frozen); call reset() to ride again",
                UserWarning,
                stacklevel=3,
            )
        if self.render_mode == "human":
            self.render()
        return {key: value.copy() for key, value in self._crash.items()}, 0.0, True, False, self._info(True)

    def _check_open(self) -> None:
        if self.scene is None:
            raise gym.error.ClosedEnvironmentError("SpokesterEnv is closed; make a new one")

    def _info(self, crashed: bool) -> dict[str, Any]:
        st = self.game.state
        return {
            "distance": float(st.distance),
            "speed": float(self.game.speed),
            "lane": int(st.rider.target_lane),
            "x": float(st.rider.x),
            "crashed": bool(crashed),
        }

    # --- observations -----------------------------------------------------------------------------------

    def _advance(self, pose: CameraPose, prev: CameraPose, rider_dx: float, travelled: float) -> dict:
        """Move the bodies, take the camera image and turn it into the observation dict."""
        st = self.game.state
        self.scene.sync(st, pose.eye[1])
        motion = {}
        if "flow" in self.observation_keys:
            disp = self._displacement
            disp[:] = 0.0
            tr = st.traffic
            disp[self._car_ids[tr.active], 1] = tr.speed[tr.active] * self.dt
            disp[self.scene.rider] = (rider_dx, travelled, 0.0)
            motion = {"previous": prev, "displacement": disp, "flow_limit": self.flow_limit}
        rgba, inv_depth, seg, flow = self.scene.render(pose, **motion)
        sky = seg < 0
        obs = {}
        self._last_inv_depth = inv_depth
        if "depth" in self.observation_keys:
            obs["depth"] = inv_depth[..., None]
        if flow is not None:
            obs["flow"] = flow
        self._rgba, self._sky, self._seg = rgba, sky, seg
        self._rgb = None  # the cube view is composed on demand (render() or the "rgb" observation)
        if "rgb" in self.observation_keys:
            obs["rgb"] = self._cube_view()
        if "cars" in self.observation_keys:
            obs["cars"] = (self.scene.classes(seg) == CLASS_NAMES.index("cars")).astype(np.uint8)[..., None]
        self._pose = pose
        return obs

    def class_map(self) -> np.ndarray:
        """The game's class of every pixel of the latest frame: (H, W) uint8, indices into
        `spokester_env.CLASS_NAMES` (see the class docstring)."""
        self._check_open()
        if self._seg is None:
            raise gym.error.ResetNeeded("Call reset() before class_map()")
        return self.scene.classes(self._seg)

    def _cube_view(self) -> np.ndarray:
        if self._rgb is None:
            rgb = self._rgba[..., :3].copy()
            rgb[self._sky] = SKY_RGB
            self._rgb = rgb
        return self._rgb

    # --- rendering for people ---------------------------------------------------------------------------

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        self._check_open()
        if self._pose is None:
            raise gym.error.ResetNeeded("Call reset() before render()")
        if self.render_mode == "rgb_array":
            return self._cube_view().copy()
        self._show(self._cube_view())
        return None

    def _show(self, frame: np.ndarray) -> None:
        try:
            import pygame
        except ImportError as e:
            raise gym.error.DependencyNotInstalled(
                'render_mode="human" needs pygame: pip install "spokester[window]"'
            ) from e
        if self._window is None:
            pygame.init()
            pygame.display.set_caption("Spokester")
            self._window = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
            self._clock = pygame.time.Clock()
        pygame.event.pump()
        self._window.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """Keys for `gymnasium.utils.play.play`: left/right arrows or A/D change lanes; no key is `noop=0`."""
        import pygame

        return {(pygame.K_LEFT,): 1, (pygame.K_a,): 1, (pygame.K_RIGHT,): 2, (pygame.K_d,): 2}

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            pygame.quit()
            self._window = None
        if getattr(self, "scene", None) is not None:
            self.scene.close()
            self.scene = None

    # --- pickling: the pybullet client is rebuilt, the game continues where it was ----------------------

    def __getstate__(self) -> dict:
        return {
            "kwargs": self._kwargs,
            "game_state": self.game.state,
            "np_random": self._np_random,  # the game draws from the same generator
            "camera": (self.camera.eye_x, self.camera.target_x),
            "pose": self._pose,
            "crash": (self._crash, self._told_to_reset),
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["kwargs"])
        self._np_random = state["np_random"]
        self.game.state = state["game_state"]
        if self._np_random is not None:
            self.game.rng = self._np_random
        self.camera.eye_x, self.camera.target_x = state["camera"]
        self._pose = state["pose"]
        self._crash, self._told_to_reset = state.get("crash", (None, False))
        if self._pose is not None:
            self.scene.sync(self.game.state, self._pose.eye[1])
            rgba, _, seg, _ = self.scene.render(self._pose)
            self._rgba, self._sky, self._seg, self._rgb = rgba, seg < 0, seg, None
