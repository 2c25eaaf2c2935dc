"""Recording episodes of an agent: `spokester record`.

Per episode `i` (seed `seed + i`), three files in the output folder:

- `epIII.mp4` (H.264 at the env's fps, `spokester_env.output.VideoWriter`): the chosen view — the cube view,
  the neural frame, or both side by side (cube | neural) — one video frame per game frame, the reset frame
  included: `steps + 1` frames.
- `epIII.npz`: the trajectory, deflate-compressed (`numpy.savez_compressed`; `numpy.load` reads it as any
  npz) and exact: every array is the env's own values. Per observation (`steps + 1`, the reset one first):
  `depth` float32 (T+1, S, S, 1), `flow` float32 (T+1, S, S, 2), `rgb` uint8 (T+1, S, S, 3), `neural` uint8
  (T+1, S, S, 3) when rendered, and the info after each of them: `distance`, `speed`, `x` float64, `lane` int8,
  `crashed` bool (T+1). Per step: `actions` int8 (T,), `rewards` float64 (T,). At 128 px about 60 KB per
  frame (flow is most of it; depth and the cube view compress 15-20x), against 245 KB uncompressed.
- `epIII.json`: the summary: steps, distance, crashed, seed, agent, view, size, fps, the renderer checkpoint
  path and id (null without a neural view), with a neural view the ride's seam ratio and framelet-boundary
  ratio (`spokester_train.evaluation.metrics`: about 1 when no tiles show and the picture does not jump as a
  framelet starts; also printed), and the file names.

The output folder is checked before anything is played (`spokester_env.output.check_output`). Every file is
written under a temporary name and moved into place (`os.replace`) only when the episode is complete, the
JSON last; an interrupted episode (Ctrl-C, SIGTERM, a full disk) leaves nothing behind under an episode's
name, and what a kill -9 leaves is removed by the next recording into the same folder.

The recording env renders at `size` (for a neural view: the renderer's size). A built-in agent plays that env
directly; a PPO agent plays its own env (the observations it was trained on) in lockstep: both envs get the
same seed and the same actions (a decision of an agent that decides every few frames is played as its env
plays it, `spokester_env.frame_actions`), and the game does not depend on the image size, so they ride the
same ride.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spokester_agents.envs import ENV_ID, PICTURE_SIZE
from spokester_agents.evaluate import Agent, load_agent
from spokester_agents.heuristic import AGENT_NAMES
from spokester_agents.painter import FrameletPainter, game_setting
from spokester_env import KEEP_LANE, frame_actions
from spokester_env.output import VideoWriter, check_output, naming_errors, publish, temporary_path

__all__ = ["RecordConfig", "VIEWS", "record", "record_episode"]

VIEWS = ("cube", "neural", "both")
INFO_KEYS = ("distance", "speed", "lane", "x", "crashed")
INFO_DTYPES = {"distance": np.float64, "speed": np.float64, "lane": np.int8, "x": np.float64, "crashed": bool}


@dataclass(frozen=True)
class RecordConfig:
    """One recording session."""

    out: str
    """Output folder (created)."""
    agent: str = "heuristic"
    """`heuristic`, `random` or the path of a PPO zip from `train-agent`."""
    view: str = "cube"
    """What the mp4 shows: `cube`, `neural` or `both` (side by side)."""
    episodes: int = 1
    max_steps: int | None = None
    """Cut each episode after this many game frames (None = until the crash or the 3000-frame limit)."""
    seed: int = 0
    size: int | None = None
    """Image side; None = `PICTURE_SIZE`, or the renderer's size with a neural view (another size is an error)."""
    checkpoint: str | None = None
    """Renderer checkpoint for neural views (None = the shipped default)."""
    render_steps: int | None = None
    """Renderer Euler steps per framelet (None = the checkpoint's, `load_renderer(...).num_steps`)."""
    look: str | None = None
    """The footage's look the renderer paints (None = the checkpoint's, `load_renderer(...).look`)."""
    device: str = "cpu"
    """Where the renderer runs: "cpu", or "cuda" (bf16, CUDA-graph replay)."""
    camera: str | None = None
    """Game camera preset; None = the renderer's (`load_renderer(...).game`) with a neural view, else "follow"."""
    scene: str | None = None
    """Game scene preset; None = the renderer's with a neural view, else "city"."""
    stochastic: bool = False
    """A PPO agent samples its actions (seeded per episode) instead of taking the likeliest."""


class _Temporary:
    """Temporary files beside their final names, moved into place together or deleted together."""

    def __init__(self, folder: Path):
        self.folder, self.files = folder, {}

    def path(self, name: str) -> Path:
        self.files[name] = temporary_path(self.folder / name)
        return self.files[name]

    def commit(self, order: list[str]) -> None:
        for name in order:
            publish(self.files.pop(name), self.folder / name)

    def discard(self) -> None:
        for temporary in self.files.values():
            temporary.unlink(missing_ok=True)
        self.files = {}


def _picture(view: str, rgb: np.ndarray, neural: np.ndarray | None) -> np.ndarray:
    return rgb if view == "cube" else neural if view == "neural" else np.concatenate([rgb, neural], axis=1)


def record_episode(
    agent: Agent,
    env: gym.Env,
    out: Path,
    name: str,
    seed: int,
    *,
    view: str = "cube",
    painter: FrameletPainter | None = None,
    max_steps: int | None = None,
    fps: float = 24.0,
) -> dict:
    """Play and record one episode into `out/name.{mp4,npz,json}`; returns the summary."""
    if view != "cube" and painter is None:
        raise ValueError(f"view={view!r} needs a renderer (painter)")
    temporary = _Temporary(out)
    try:
        with naming_errors(out / f"{name}.mp4"), VideoWriter(temporary.path(f"{name}.mp4"), fps) as video:
            summary, arrays = _play(agent, env, video, seed, view, painter, max_steps)
        with naming_errors(out / f"{name}.npz"), open(temporary.path(f"{name}.npz"), "wb") as file:
            np.savez_compressed(file, **arrays)
        summary.update(
            seed=seed,
            agent=agent.name,
            stochastic=agent.settings is not None and not agent.deterministic,
            view=view,
            size=int(env.unwrapped.intrinsics.width),
            fps=fps,
            checkpoint=None if painter is None else str(painter.path),
            checkpoint_id=None if painter is None else painter.checkpoint_id,
            **(_neural_figures(arrays["neural"], painter) if painter is not None else {}),
            video=f"{name}.mp4",
            trajectory=f"{name}.npz",
        )
        with naming_errors(out / f"{name}.json"):
            temporary.path(f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
            temporary.commit([f"{name}.mp4", f"{name}.npz", f"{name}.json"])
        return summary
    finally:
        temporary.discard()


def _play(agent, env, video, seed, view, painter, max_steps) -> tuple[dict, dict[str, np.ndarray]]:
    """Play one episode, writing its video; returns the summary and the trajectory's arrays."""
    separate = agent.env is not env  # a PPO agent plays its own env in lockstep with the recording env
    repeat = int(getattr(agent.env, "frames_per_step", 1)) if separate else 1
    agent.start_episode(seed)
    obs, info = env.reset(seed=seed)
    agent_obs = agent.env.reset(seed=seed)[0] if separate else obs
    record = {key: [obs[key]] for key in ("depth", "flow", "rgb")}
    infos = {key: [info[key]] for key in INFO_KEYS}
    neural = [painter.reset(obs, seed)] if painter is not None else None
    actions, rewards = [], []
    video.write(_picture(view, obs["rgb"], neural[0] if neural else None))
    pending: list[np.ndarray] = []  # cube frames waiting for their framelet's neural frames
    done, decision = False, [KEEP_LANE]
    while not done:
        t = len(actions)
        if t % repeat == 0:  # the agent decides; its env plays the decision over `repeat` frames
            chosen = agent.act(agent_obs)
            decision = frame_actions(chosen, repeat)
            if separate:
                agent_obs = agent.env.step(chosen)[0]
        action = decision[t % repeat]
        obs, reward, terminated, truncated, info = env.step(action)
        if not separate:
            agent_obs = obs
        elif (t + 1) % repeat == 0 and agent.env.unwrapped.game.state.distance != info["distance"]:
            raise RuntimeError(f"the agent's env and the recording env parted at frame {t + 1} (seed {seed})")
        actions.append(action)
        rewards.append(float(reward))
        for key in record:
            record[key].append(obs[key])
        for key in INFO_KEYS:
            infos[key].append(info[key])
        done = terminated or truncated or (max_steps is not None and len(actions) >= max_steps)
        if painter is None:
            video.write(obs["rgb"])
            continue
        pending.append(obs["rgb"])
        painted = painter.push(obs)
        if done and len(painted) == 0:
            painted = painter.flush()
        for rgb, frame in zip(pending[: len(painted)], painted, strict=True):
            neural.append(frame)
            video.write(_picture(view, rgb, frame))
        pending = pending[len(painted) :]
    arrays = {key: np.stack(values) for key, values in record.items()}
    if neural is not None:
        arrays["neural"] = np.stack(neural)
    arrays.update({key: _exactly(values, INFO_DTYPES[key], key) for key, values in infos.items()})
    arrays["actions"] = _exactly(actions, np.int8, "actions")
    arrays["rewards"] = np.asarray(rewards, np.float64)
    summary = {
        "steps": len(actions),
        "distance": float(info["distance"]),
        "crashed": bool(info["crashed"]),
        "frames": len(actions) + 1,
        "reward": float(np.sum(rewards)),
    }
    return summary, arrays


NEURAL_FIGURES = ("seam_ratio", "boundary_ratio")
"""What a recording with a neural view says of its frames (`_neural_figures`)."""


def _neural_figures(neural: np.ndarray, painter: FrameletPainter) -> dict[str, float | None]:
    """The ride's seam ratio (tiles: ~1 when none show) and framelet-boundary ratio (jumps: ~1 when the
    picture does not jump as a framelet starts), `spokester_train.evaluation.metrics`; the reset frame is left
    out of the boundary ratio, so that framelets start at multiples of the framelet length. None where the
    ride is too short for a figure (fewer than two framelets)."""
    from spokester_train.evaluation.metrics import boundary_ratio, seam_ratio

    boundary = boundary_ratio(neural[1:], painter.frames) if len(neural) > 1 else float("nan")
    figures = {"seam_ratio": seam_ratio(neural, painter.patch), "boundary_ratio": boundary}
    return {name: None if np.isnan(value) else round(value, 4) for name, value in figures.items()}


def _exactly(values, dtype, name: str) -> np.ndarray:
    """`values` as `dtype`, which must hold every one of them exactly."""
    wide = np.asarray(values)
    narrow = wide.astype(dtype)
    if not np.array_equal(narrow, wide):
        raise ValueError(f"{name}: values do not fit {np.dtype(dtype).name}")
    return narrow


def record(config: RecordConfig, console: Console | None = None) -> list[dict]:
    """Record `config.episodes` episodes; returns their summaries."""
    if config.view not in VIEWS:
        raise ValueError(f"view={config.view!r} is not one of {VIEWS}")
    if config.episodes < 1:
        raise ValueError(f"episodes={config.episodes}: must be >= 1")
    check_output(config.out, folder=True)
    console = console or Console(stderr=True)
    painter = None
    size = config.size or PICTURE_SIZE
    if config.view != "cube":
        painter = FrameletPainter(
            config.checkpoint,
            num_steps=config.render_steps,
            device=config.device,
            camera=config.camera,
            look=config.look,
        )
        if config.size is not None and config.size != painter.size:
            raise ValueError(f"--size {config.size}: the renderer {painter.path} paints {painter.size} px frames")
        size = painter.size
    game = game_setting(config.camera, config.scene, painter)
    observations = ("depth", "flow", "rgb") + (("cars",) if painter is not None and "cars" in painter.inputs else ())
    env = gym.make(ENV_ID, width=size, height=size, observations=observations, **game)
    builtin = config.agent in AGENT_NAMES
    agent = load_agent(config.agent, env=env if builtin else None)
    agent.deterministic = not config.stochastic
    out = Path(config.out)
    summaries = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"recording {agent.name} ({config.view})", total=config.episodes)
            for i in range(config.episodes):
                seed = config.seed + i
                summaries.append(
                    record_episode(
                        agent,
                        env,
                        out,
                        f"ep{i:03d}",
                        seed,
                        view=config.view,
                        painter=painter,
                        max_steps=config.max_steps,
                        fps=float(env.metadata["render_fps"]),
                    )
                )
                bar.advance(task)
    finally:
        env.close()
        if agent.env is not env:
            agent.env.close()
    for s in summaries:
        figures = "".join(f", {name.replace('_', ' ')} {s[name]}" for name in NEURAL_FIGURES if s.get(name) is not None)
        console.print(
            f"{out / s['video']}: {s['steps']} steps, {s['distance']:.1f} m"
            + (", crashed" if s["crashed"] else "")
            + figures,
            highlight=False,
        )
    return summaries
