"""Seeded evaluation of an agent: `spokester eval-agent`.

Episode i is played with the env seeded `seed + i` (and the random agent's own generator seeded the same),
so two runs with the same arguments give the same numbers, and two agents meet the same traffic. Length is
counted in game frames (a neural-view step advances a framelet of several frames). The built-in agents
ignore observations, so they play an env observing depth alone at 32 px: the game, its contacts and so the
scores do not depend on the image size.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spokester_agents.envs import ENV_ID, ObservationSettings, make_env, read_sidecar
from spokester_agents.heuristic import AGENT_NAMES, HeuristicAgent, RandomAgent

__all__ = ["Agent", "evaluate", "load_agent", "print_table", "run_episode"]

BLIND_SIZE = 32
"""Image side of the env that the observation-free built-in agents play in, px."""


class Agent:
    """An agent together with the env it plays: what `load_agent` returns."""

    def __init__(self, name: str, env: gym.Env, policy, settings: ObservationSettings | None, reseed=None):
        self.name, self.env, self.policy, self.settings = name, env, policy, settings
        self._reseed = reseed
        self.deterministic = True
        """False: a PPO policy samples its actions (from torch's generator, seeded per episode)."""

    def start_episode(self, seed: int) -> None:
        """Called before each episode: seeds the random agent, and the sampling of a stochastic policy."""
        if self._reseed is not None:
            self._reseed(seed)
        if not self.deterministic and self.settings is not None:
            import torch

            torch.manual_seed(seed)

    def act(self, obs) -> int:
        action, _ = self.policy.predict(obs, deterministic=self.deterministic)
        return int(np.asarray(action).reshape(()))


def _blind_env(max_episode_steps: int | None) -> gym.Env:
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return gym.make(ENV_ID, width=BLIND_SIZE, height=BLIND_SIZE, observations=("depth",), **kwargs)


def load_agent(
    spec: str, *, checkpoint: str | None = None, max_episode_steps: int | None = None, env: gym.Env | None = None
) -> Agent:
    """`"heuristic"`, `"random"` or the path of a PPO zip (with its sidecar), with an env to play in.

    `env` (built-in agents only) replaces the default observation-free env, e.g. to record the cube view.
    `checkpoint` replaces the renderer checkpoint saved with a neural-view PPO agent.
    """
    if spec in AGENT_NAMES:
        env = env if env is not None else _blind_env(max_episode_steps)
        if spec == "heuristic":
            return Agent(spec, env, HeuristicAgent(env), None)
        policy = RandomAgent(env.action_space)
        return Agent(spec, env, policy, None, reseed=lambda seed: setattr(policy, "rng", np.random.default_rng(seed)))
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--agent {spec}: neither {' nor '.join(AGENT_NAMES)} nor an existing model file")
    settings, _ = read_sidecar(path)
    if checkpoint is not None:
        settings = ObservationSettings(**{**settings.to_dict(), "checkpoint": checkpoint})
    from stable_baselines3 import PPO

    try:
        model = PPO.load(path, device="cpu")
    except Exception as error:  # SB3 raises many types for a file that is not its zip
        raise ValueError(f"{path}: not a stable-baselines3 PPO zip ({type(error).__name__}: {error})") from None
    agent_env = make_env(settings, max_episode_steps=max_episode_steps)
    shape = agent_env.observation_space.shape
    if model.observation_space.shape not in (shape, (shape[-1], *shape[:-1])):  # SB3 trains on channel-first
        raise ValueError(f"{path}: the model observes {model.observation_space.shape} but its sidecar builds {shape}")
    return Agent(str(path), agent_env, model, settings)


def run_episode(agent: Agent, seed: int, max_steps: int | None = None) -> dict:
    """One seeded episode; returns distance (m), length (game frames), crashed and the step count. `max_steps`
    cuts the episode at the first step that reaches that many frames (a step may be several frames)."""
    agent.start_episode(seed)
    obs, info = agent.env.reset(seed=seed)
    frames, steps, done = 0, 0, False
    while not done:
        obs, _, terminated, truncated, info = agent.env.step(agent.act(obs))
        frames += int(info.get("frames", 1))
        steps += 1
        done = terminated or truncated or (max_steps is not None and frames >= max_steps)
    return {"distance": float(info["distance"]), "length": frames, "crashed": bool(info["crashed"]), "steps": steps}


def evaluate(
    agent: str | Agent,
    *,
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    stochastic: bool = False,
    progress: bool = False,
) -> dict:
    """Play `episodes` seeded episodes; returns the summary (means, stds) and the per-episode lists.
    `stochastic`: a PPO agent samples its actions instead of taking the most probable one."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: must be >= 1")
    if isinstance(agent, str):
        agent = load_agent(agent, checkpoint=None if checkpoint is None else str(checkpoint))
    agent.deterministic = not stochastic
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task(f"evaluating {agent.name}", total=episodes)
        for i in range(episodes):
            results.append(run_episode(agent, seed + i, max_steps))
            bar.advance(task)
    agent.env.close()
    distance = np.array([r["distance"] for r in results])
    length = np.array([r["length"] for r in results])
    return {
        "agent": agent.name,
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "stochastic": stochastic,
        "mean_distance": float(distance.mean()),
        "std_distance": float(distance.std()),
        "mean_length": float(length.mean()),
        "std_length": float(length.std()),
        "crash_rate": float(np.mean([r["crashed"] for r in results])),
        "distances": distance.tolist(),
        "lengths": length.astype(int).tolist(),
        "crashed": [r["crashed"] for r in results],
        "seeds": [seed + i for i in range(episodes)],
    }


def print_table(result: dict, console: Console | None = None) -> None:
    """The summary of `evaluate` as a rich table."""
    console = console or Console()
    table = Table(
        title=f"{result['agent']}: {result['episodes']} episodes, seeds {result['seed']}.."
        f"{result['seed'] + result['episodes'] - 1}"
    )
    for column in ("", "mean", "std", "min", "max"):
        table.add_column(column, justify="right")
    for label, key, unit in (("distance", "distances", "m"), ("length", "lengths", "frames")):
        values = np.array(result[key], float)
        table.add_row(f"{label} ({unit})", *(f"{f(values):.1f}" for f in (np.mean, np.std, np.min, np.max)))
    table.add_row("crashed", f"{100 * result['crash_rate']:.0f} %", "", "", "")
    console.print(table)
