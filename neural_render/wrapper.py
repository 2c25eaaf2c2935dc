"""Gymnasium wrappers that paint Spokester's cube world with the neural renderer.

Framelets and steps: the renderer makes `patch_frames` (F = 2) frames at a time, from the depth and flow
of F consecutive game frames. So one wrapper step advances the game by one framelet, as
`spokester_env.play_decision` plays a decision: the action on its first frame and "keep lane" on the
others (a move is one lane, however many frames a decision lasts), the rewards summed; `info["frames"]`
says how many game frames were advanced (F, or fewer when the episode ended inside the framelet; then the
missing frames' depth and flow repeat the last frame's, `spokester_env.pad_frames`, so a whole framelet
can still be rendered). The observation's depth and flow are those of the last advanced game frame and
`"neural"` is the rendered frame of that same game frame: the agent sees no lag. `info["neural_frames"]`
holds the rendered frames of all advanced game frames, for full-rate video. `reset()` clears the stream
and renders the reset frame as a framelet of F copies of it; a seed given to reset also seeds the
renderer's noise, so a seeded episode is reproducible.

Importing this module needs gymnasium (and a Spokester env to wrap); `import neural_render` loads it
lazily.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from neural_render.checkpoint import load_renderer
from neural_render.model import RendererConfig
from neural_render.sampler import StreamingRenderer
from spokester_env import camera_name, pad_frames, play_decision, scene_name

__all__ = ["PAINTED_FROM", "NeuralRenderObservation", "NeuralRenderVectorEnv", "painted_from"]

PAINTED_FROM = ("depth", "flow", "cars")
"""The observations any renderer paints from (the car mask only if it wants one): what an env made only to be
painted should observe."""


def _streaming_renderer(
    checkpoint, env: gym.Env, *, batch_size: int, num_steps: int | None, look: str | None, **options
) -> StreamingRenderer:
    """The renderer of a checkpoint for `env`'s game: normalised with the statistics of the env's camera
    where the checkpoint has them, sampled with `num_steps` and `look` (None = the checkpoint's), with a warning
    (once) when the env's game is not the renderer's."""
    loaded = load_renderer(checkpoint, device=options.get("device", "cpu"))
    config = getattr(env.unwrapped, "config", None)
    camera = camera_name(config.camera) if config is not None else None
    scene = scene_name(config) if config is not None else None
    if config is not None and (camera, scene) != (loaded.game["camera"], loaded.game["scene"]):
        warnings.warn(
            f"the renderer {loaded.path} was made for the {loaded.game['camera']} camera in the "
            f"{loaded.game['scene']} scene, the env has the {camera or 'custom'} camera in the {scene or 'custom'} "
            f"scene: expect worse pictures (make the env with camera={loaded.game['camera']!r}, "
            f"scene={loaded.game['scene']!r})",
            UserWarning,
            stacklevel=3,
        )
    source = loaded.game_source(camera)
    return StreamingRenderer(
        loaded.model,
        stats=loaded.stats,
        batch_size=batch_size,
        source=source,
        num_steps=loaded.steps(num_steps),
        look=loaded.look_for(look),
        **options,
    )


def painted_from(config: RendererConfig) -> dict[str, tuple[int, int, int]]:
    """The observations a renderer paints from, each with its shape (S, S, k): depth and flow, and the car mask if it
    wants one (`RendererConfig.wants_cars`)."""
    side = config.image_size
    channels = {"depth": 1, "flow": 2, "cars": 1}
    keys = PAINTED_FROM if config.wants_cars else PAINTED_FROM[:2]
    return {key: (side, side, channels[key]) for key in keys}


def _check_space(space: gym.Space, expected: dict[str, tuple[int, int, int]]) -> None:
    """The wrapped env must give what the renderer paints from (`painted_from`) at the renderer's size."""
    if not isinstance(space, spaces.Dict) or any(
        key not in space.spaces or space.spaces[key].shape != shape for key, shape in expected.items()
    ):
        wanted = " and ".join(f"{key!r} {shape}" for key, shape in expected.items())
        listed = ", ".join(repr(key) for key in expected)
        side = next(iter(expected.values()))[0]
        raise ValueError(
            f"the env must observe {wanted} (make it with width=height={side}, observations including "
            f"{listed}); got {space}"
        )


def _observation_space(space: spaces.Dict, image_size: int, pixels_only: bool) -> gym.Space:
    frame = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    return frame if pixels_only else spaces.Dict({**space.spaces, "neural": frame})


class _Framelets:
    """Advances one env a framelet at a time and gathers what the renderer paints from of its frames (`keys`):
    {key: (F, S, S, k)}, the renderer's `step` arguments."""

    def __init__(self, env: gym.Env, frames: int, keys: tuple[str, ...]):
        self.env, self.frames, self.keys = env, frames, keys

    def _stack(self, observations: list[dict]) -> dict[str, np.ndarray]:
        padded = pad_frames(observations, self.frames)
        return {key: np.stack([o[key] for o in padded]) for key in self.keys}

    def reset(self, **kwargs) -> tuple[dict, dict, dict[str, np.ndarray]]:
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "frames": 0}, self._stack([observation])

    def step(self, action) -> tuple:
        played = play_decision(self.env, action, self.frames)
        info = {**played.info, "frames": played.frames}
        inputs = self._stack(played.observations)
        return played.observations[-1], played.reward, played.terminated, played.truncated, info, inputs


def _batched(inputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several envs' renderer inputs as one batch: {key: (N, F, S, S, k)}."""
    return {key: np.stack([one[key] for one in inputs]) for key in inputs[0]}


class NeuralRenderObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Adds the neural frame `"neural"` (uint8 (S, S, 3)) to a Spokester env's observations.

    One step advances the game by one framelet (see the module docstring); `render()` returns the latest
    neural frame, so RecordVideo, HumanRendering and gymnasium.utils.play show neural frames (at the
    env's fps / F, or use `info["neural_frames"]` for full rate).

    Arguments:
        env: a Spokester env observing depth and flow at the renderer's size (width = height = S), and the car
            mask ("cars") for a renderer that paints from one (`RendererConfig.wants_cars`).
        checkpoint: a renderer checkpoint path; None = the project's shipped default.
        device: where the renderer runs.
        window, num_steps, cache_at_step: streaming options, see `StreamingRenderer`; num_steps None = the
            checkpoint's (`load_renderer(...).num_steps`).
        look: which footage's look to paint, one of the renderer's (`RendererConfig.looks`) or `ANY_LOOK`;
            None = the checkpoint's (`load_renderer(...).look`).
        pixels_only: observe the neural frame alone, as a Box image, instead of the dict.
        compile, cuda_graph: GPU speed options, see `StreamingRenderer` (cuda_graph needs a CUDA device).

    The game's depth and flow are normalised with the checkpoint's statistics of the env's camera (it fits
    them per camera preset), and a warning says (once) when the env's camera or scene is not the one the
    renderer was made for (`load_renderer(...).game`): make the env with that camera and scene.
    """

    def __init__(
        self,
        env: gym.Env,
        checkpoint: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        window: int = 3,
        num_steps: int | None = None,
        cache_at_step: int | None = None,
        pixels_only: bool = False,
        compile: bool | str = False,
        cuda_graph: bool = False,
        look: str | None = None,
    ):
        options = dict(
            device=device,
            window=window,
            num_steps=num_steps,
            look=look,
            cache_at_step=cache_at_step,
            compile=compile,
            cuda_graph=cuda_graph,
        )
        checkpoint_arg = None if checkpoint is None else str(checkpoint)
        gym.utils.RecordConstructorArgs.__init__(self, checkpoint=checkpoint_arg, pixels_only=pixels_only, **options)
        gym.ObservationWrapper.__init__(self, env)
        self.renderer = _streaming_renderer(checkpoint, env, batch_size=1, **options)
        size = self.renderer.config.image_size
        inputs = painted_from(self.renderer.config)
        _check_space(env.observation_space, inputs)
        self.pixels_only = pixels_only
        self.frames_per_step = self.renderer.config.patch_frames
        self.observation_space = _observation_space(env.observation_space, size, pixels_only)
        fps = env.metadata.get("render_fps", 24) / self.frames_per_step
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"], "render_fps": fps}
        self._framelets = _Framelets(env, self.frames_per_step, tuple(inputs))
        self._frame: np.ndarray | None = None

    @property
    def render_mode(self) -> str:
        return "rgb_array"

    def observation(self, observation: dict):
        """The env's observation with the latest neural frame added (or that frame alone)."""
        return self._frame if self.pixels_only else {**observation, "neural": self._frame}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info, inputs = self._framelets.reset(seed=seed, options=options)
        self.renderer.reset(seed)
        frames = self.renderer.step(**inputs)  # (F, S, S, 3)
        self._frame = frames[-1]
        return self.observation(observation), {**info, "neural_frames": frames[-1:]}

    def step(self, action):
        observation, reward, terminated, truncated, info, inputs = self._framelets.step(action)
        frames = self.renderer.step(**inputs)
        advanced = info["frames"]
        self._frame = frames[advanced - 1]
        info["neural_frames"] = frames[:advanced]
        return self.observation(observation), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        return self._frame


class NeuralRenderVectorEnv(gym.vector.VectorEnv):
    """N Spokester envs whose neural frames come from one batched renderer pass per step.

    Each sub-env advances one framelet per step, as in `NeuralRenderObservation`. Autoreset is
    NEXT_STEP (gymnasium's default): the step after an episode ends resets that env, ignoring its action,
    and clears its slot of the KV cache, so the other envs' streams go on untouched. `reset(seed=s)`
    seeds env j and its renderer noise with s + j. The arguments are `NeuralRenderObservation`'s.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        checkpoint: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        window: int = 3,
        num_steps: int | None = None,
        cache_at_step: int | None = None,
        pixels_only: bool = False,
        compile: bool | str = False,
        cuda_graph: bool = False,
        look: str | None = None,
    ):
        self.envs = [make() for make in env_fns]
        self.num_envs = len(self.envs)
        if self.num_envs < 1:
            raise ValueError("NeuralRenderVectorEnv needs at least one env")
        self.renderer = _streaming_renderer(
            checkpoint,
            self.envs[0],
            batch_size=self.num_envs,
            device=device,
            window=window,
            num_steps=num_steps,
            cache_at_step=cache_at_step,
            compile=compile,
            cuda_graph=cuda_graph,
            look=look,
        )
        size = self.renderer.config.image_size
        inputs = painted_from(self.renderer.config)
        for env in self.envs:
            _check_space(env.observation_space, inputs)
        self.pixels_only = pixels_only
        self.frames_per_step = self.renderer.config.patch_frames
        self.single_observation_space = _observation_space(self.envs[0].observation_space, size, pixels_only)
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        fps = self.envs[0].metadata.get("render_fps", 24) / self.frames_per_step
        self.metadata = {**type(self).metadata, "render_fps": fps}
        self.render_mode = "rgb_array"
        self._framelets = [_Framelets(env, self.frames_per_step, tuple(inputs)) for env in self.envs]
        self._ended = np.zeros(self.num_envs, dtype=bool)
        self._frames: np.ndarray | None = None

    def _batch(self, observations: list[dict]):
        if self.pixels_only:
            return self._frames.copy()
        keys = observations[0].keys()
        batch = {key: np.stack([o[key] for o in observations]) for key in keys}
        return {**batch, "neural": self._frames.copy()}

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + j for j in range(self.num_envs)]
        else:
            seeds = list(seed)
        results = [f.reset(seed=s, options=options) for f, s in zip(self._framelets, seeds, strict=True)]
        self.renderer.reset()
        for j, s in enumerate(seeds):
            if s is not None:
                self.renderer.reset(s, slots=[j])
        frames = self.renderer.step(**_batched([r[2] for r in results]))
        self._frames = frames[:, -1]
        self._ended[:] = False
        infos: dict = {}
        for j, result in enumerate(results):
            infos = self._add_info(infos, result[1], j)
        return self._batch([r[0] for r in results]), infos

    def step(self, actions):
        observations, inputs, infos, advanced = [], [], {}, []
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        for j, (framelets, action) in enumerate(zip(self._framelets, actions, strict=True)):
            if self._ended[j]:  # NEXT_STEP autoreset: this step only resets env j and its cache slot
                observation, info, painted = framelets.reset()
                self.renderer.reset(None, slots=[j])
            else:
                observation, rewards[j], terminations[j], truncations[j], info, painted = framelets.step(action)
            observations.append(observation)
            inputs.append(painted)
            advanced.append(info["frames"])
            infos = self._add_info(infos, info, j)
        frames = self.renderer.step(**_batched(inputs))  # (N, F, S, S, 3)
        self._frames = np.stack([frames[j, max(a, 1) - 1] for j, a in enumerate(advanced)])
        self._ended = terminations | truncations
        return self._batch(observations), rewards, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """The latest neural frame of every env, (N, S, S, 3)."""
        return None if self._frames is None else self._frames.copy()

    def close_extras(self, **kwargs) -> None:
        for env in self.envs:
            env.close()
