"""`SpokesterEnv`: the Spokester game as a Gymnasium environment."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .camera import CameraPose, FollowCamera, Intrinsics, analytic_flow
from .config import ACTION_MEANINGS, DEFAULT_IMAGE_SIZE, CameraConfig, GameConfig, camera_config, with_scene
from .game import Game
from .scene import BACKENDS, SKY_RGB, Scene

OBSERVATION_KEYS = ("depth", "flow", "rgb")
RENDER_MODES = ("human", "rgb_array")


def _backend(backend: str | None, renderer: str | None) -> str:
    """The geometry backend asked for, from `backend=` or its deprecated old name `renderer=`."""
    if renderer is not None:
        if backend is not None:
            raise ValueError(
                f"backend={backend!r} and renderer={renderer!r}: pass backend= alone (renderer= is its old name)"
            )
        warnings.warn(
            "SpokesterEnv(renderer=...) is deprecated: pass backend= (pybullet's 'tiny' or 'egl')",
            DeprecationWarning,
            stacklevel=3,
        )
        backend = renderer
    backend = "tiny" if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    return backend


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

    Flow at a pixel is the position now minus the position one frame earlier of the surface point seen
    there now; sky pixels carry the flow of points at infinity. It is computed analytically from the
    depth, pybullet's segmentation mask, each body's motion and the camera's motion. For pixel-based RL
    with stable-baselines3, wrap the env in `spokester_env.PackedObservation` (uint8, channel-first) and
    use `CnnPolicy`; the `Dict` itself trains with `MultiInputPolicy` (an MLP on the flattened arrays).

    ## Rewards
    The metres travelled during the step (speed x dt, growing as the ride speeds up).

    ## Starting State
    The rider in the middle lane (lane 1 of 0-2; of an even number of lanes, the left middle one,
    `GameConfig.start_lane`) at the start speed (5 m/s), the camera settled behind it, the road
    ahead filled with cars from 30 m to 100 m according to the seed.

    ## Episode End
    Terminated when the rider's box touches a car (pybullet closest points), at that very step. The
    registered `Spokester-v0` is truncated after 3000 steps (125 s at 24 fps); pass
    `max_episode_steps` to `gym.make` to change it.

    `info`: `distance` (m since reset), `speed` (m/s), `lane` (the lane the rider is in or heading to, 0 to
    `num_lanes - 1` from left to right: 0-2 by default), `x` (m, lateral position), `crashed` (bool), all
    Python scalars.

    Not an observation, for evaluation tools: `class_map()` gives the game's own class of every pixel of
    the latest frame, (H, W) uint8 indices into `spokester_env.CLASS_NAMES` (sky, ground, buildings, cars,
    rider; sky exactly where inverse depth is 0), from the segmentation mask that flow is made with.

    ## Arguments
    - `width`, `height` (int > 0, default 320, `spokester_env.DEFAULT_IMAGE_SIZE`): image size in pixels.
    - `observations` (tuple of `"depth"`, `"flow"`, `"rgb"`, default `("depth", "flow")`).
    - `render_mode` (`None`, `"rgb_array"`, `"human"`): the cube view, or a pygame window showing it.
    - `fps` (float > 0, default 24): frames per second; one step advances `dt = 1 / fps` seconds.
    - `backend` (`"tiny"` default, pybullet's CPU TinyRenderer; `"egl"`, pybullet's EGL plugin on a GPU): the
      geometry backend that takes the camera images. (The neural renderer is something else: it paints the
      observations, see `neural_render`.) `renderer=` is its deprecated old name.
    - `config` (`GameConfig`): every rule and the camera rig; defaults are the seed's play settings.
    - `camera` (keyword; `"follow"`, `"first_person"` or a `CameraConfig`; default: the config's, the seed's
      `"follow"`): the camera rig, `spokester_env.CAMERA_PRESETS`. `"follow"` looks over the rider's
      shoulder; `"first_person"` looks down the road from the rider's head, as dashcam and helmet footage
      does (the rider's box out of view).
    - `scene` (keyword; `"city"` or `"open"`; default: the config's, the seed's `"city"`): the roadside,
      `spokester_env.SCENE_PRESETS`. `"city"` has rows of 60 m walls; `"open"` low boxes with sky between
      them, closer to the shipped footage's roadsides.

    ## Version History
    - v0: initial release.
    - v0 (rides unchanged): the argument `renderer` is renamed `backend` (`renderer=` still works, with a
      `DeprecationWarning`); `GameConfig.num_lanes` takes any number of lanes from 2; `camera=` picks a
      camera preset (`"follow"`, the default and the seed's, or `"first_person"`) and `scene=` a roadside
      (`"city"`, the default, or `"open"`).
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
        renderer: str | None = None,
    ) -> None:
        backend = _backend(backend, renderer)
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if isinstance(observations, str):
            observations = (observations,)
        observations = tuple(observations)
        unknown = [k for k in observations if k not in OBSERVATION_KEYS]
        if unknown or not observations or len(set(observations)) != len(observations):
            raise ValueError(f"observations={observations!r}: choose one or more distinct keys from {OBSERVATION_KEYS}")
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode={render_mode!r} is not one of {(None,) + RENDER_MODES}")
        if not fps > 0:
            raise ValueError(f"fps={fps!r}: must be > 0")
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
        }
        self.observation_space = spaces.Dict({k: boxes[k] for k in observations})

        self.game = Game(self.config, self.dt)
        self.camera = FollowCamera(cam, self.dt)
        # The cube view's textures are drawn only when someone can see the cube view.
        textured = "rgb" in observations or render_mode is not None
        self.scene = Scene(self.config, self.intrinsics, backend, textured=textured)
        self._displacement = np.zeros((self.scene.num_bodies, 3))
        self._car_ids = np.array(self.scene.cars)
        self._pose: CameraPose | None = None
        self._rgba: np.ndarray | None = None
        self._sky: np.ndarray | None = None
        self._seg: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self._window = None
        self._clock = None

    # --- the MDP ----------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
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
        if self._pose is None:
            raise gym.error.ResetNeeded("Call reset() before step()")
        if not self.action_space.contains(action):
            allowed = ", ".join(f"{i} ({m})" for i, m in enumerate(ACTION_MEANINGS))
            raise ValueError(f"action={action!r} is not one of {allowed}")
        x_before = self.game.state.rider.x
        travelled = self.game.step(int(action))
        st = self.game.state
        self.camera.update(st.rider.x)
        obs = self._advance(self.camera.pose(st.distance), self._pose, st.rider.x - x_before, travelled)
        crashed = self.scene.rider_hits_car(st)
        if self.render_mode == "human":
            self.render()
        return obs, float(travelled), crashed, False, self._info(crashed)

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
        rgba, zbuf, seg = self.scene.render(pose)
        sky = seg < 0
        obs = {}
        inv_depth = self.intrinsics.inverse_depth(zbuf)
        inv_depth[sky] = 0.0
        self._last_inv_depth = inv_depth
        if "depth" in self.observation_keys:
            obs["depth"] = inv_depth[..., None]
        if "flow" in self.observation_keys:
            disp = self._displacement
            disp[:] = 0.0
            tr = st.traffic
            disp[self._car_ids[tr.active], 1] = tr.speed[tr.active] * self.dt
            disp[self.scene.rider] = (rider_dx, travelled, 0.0)
            flow = analytic_flow(inv_depth, seg, disp, pose, prev, self.intrinsics)
            obs["flow"] = np.clip(flow, -self.flow_limit, self.flow_limit, out=flow)
        self._rgba, self._sky, self._seg = rgba, sky, seg
        self._rgb = None  # the cube view is composed on demand (render() or the "rgb" observation)
        if "rgb" in self.observation_keys:
            obs["rgb"] = self._cube_view()
        self._pose = pose
        return obs

    def class_map(self) -> np.ndarray:
        """The game's class of every pixel of the latest frame: (H, W) uint8, indices into
        `spokester_env.CLASS_NAMES` (see the class docstring)."""
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
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["kwargs"])
        self._np_random = state["np_random"]
        self.game.state = state["game_state"]
        if self._np_random is not None:
            self.game.rng = self._np_random
        self.camera.eye_x, self.camera.target_x = state["camera"]
        self._pose = state["pose"]
        if self._pose is not None:
            self.scene.sync(self.game.state, self._pose.eye[1])
            rgba, _, seg = self.scene.render(self._pose)
            self._rgba, self._sky, self._seg, self._rgb = rgba, seg < 0, seg, None
