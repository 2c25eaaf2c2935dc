"""Two reference agents with stable-baselines3's `predict` interface: a heuristic that dodges, and random.

Both answer `predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)` like an SB3
model, so the evaluation, recording and play code treats them and a trained PPO model the same way.

The heuristic is *privileged*: it does not look at the observation at all. It reads the game's state through
`env.unwrapped.game` (`Game.clearance()`, the free road ahead per lane in metres, the rider's lane and speed),
which a learning agent never sees. It is a yardstick for what the depth+flow observations make possible, not
an agent that solves the task from pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from spokester_env.config import ACTION_MEANINGS

KEEP, LEFT, RIGHT = (ACTION_MEANINGS.index(m) for m in ("keep lane", "move one lane left", "move one lane right"))

__all__ = ["AGENT_NAMES", "HeuristicAgent", "HeuristicConfig", "RandomAgent", "KEEP", "LEFT", "RIGHT"]

AGENT_NAMES = ("heuristic", "random")
"""The built-in agents; anything else given as `--agent` is the path of a trained PPO model."""


@dataclass(frozen=True)
class HeuristicConfig:
    """When the heuristic dodges, and where to."""

    reaction_time: float = 1.4
    """Dodge when the car ahead in the rider's lane is closer than this many seconds at the riding speed, s."""
    margin: float = 4.0
    """Extra free road kept ahead on top of `reaction_time * speed`, m."""
    safe_time: float = 0.9
    """A neighbouring lane is safe to enter when its free road exceeds this many seconds of riding, s."""


class HeuristicAgent:
    """Dodges the nearest car ahead in its lane by moving to the neighbouring lane with the most free road.

    Privileged: reads `env.unwrapped.game.clearance()`, `game.lane` and `game.speed` and ignores `obs`.
    Pass the single (non-vector) env that the agent plays; wrappers around it are fine.
    """

    def __init__(self, env: gym.Env, config: HeuristicConfig | None = None):
        game = getattr(env.unwrapped, "game", None)
        if game is None or not hasattr(game, "clearance"):
            raise ValueError(f"HeuristicAgent needs a Spokester env (with .unwrapped.game), got {env}")
        self.env = env
        self.config = config if config is not None else HeuristicConfig()

    def choose(self) -> int:
        """The action for the game's current state."""
        game, cfg = self.env.unwrapped.game, self.config
        clearance = game.clearance()  # (lanes,), m; inf = empty
        lane, speed = game.lane, game.speed
        if clearance[lane] > cfg.reaction_time * speed + cfg.margin:
            return KEEP
        # Neighbours only: a two-lane move passes through the middle lane, which is judged on its own.
        options = [(clearance[n], n) for n in (lane - 1, lane + 1) if 0 <= n < len(clearance)]
        safe = [(free, n) for free, n in options if free > max(cfg.safe_time * speed, clearance[lane])]
        if not safe:
            return KEEP
        _, best = max(safe)
        return LEFT if best < lane else RIGHT

    def predict(self, obs=None, state=None, episode_start=None, deterministic: bool = True):
        """SB3-style: `(action, state)`; the observation is not used (see the class docstring)."""
        return np.int64(self.choose()), state


class RandomAgent:
    """Uniformly random actions from its own seeded generator (independent of the env's seed)."""

    def __init__(self, action_space: gym.spaces.Discrete | None = None, seed: int | None = 0):
        self.n = int(action_space.n) if action_space is not None else len(ACTION_MEANINGS)
        self.rng = np.random.default_rng(seed)

    def predict(self, obs=None, state=None, episode_start=None, deterministic: bool = True):
        """SB3-style: `(action, state)`; `deterministic` is ignored — random is random."""
        return np.int64(self.rng.integers(self.n)), state
