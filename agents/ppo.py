"""PPO (stable-baselines3) on Spokester's depth+flow or neural observations: `spokester train-agent`.

Observations (see `spokester_agents.envs`): by default the game's inverse depth and flow at
`spokester_agents.envs.PACKED_SIZE` px, packed into a 3-channel uint8 image for `CnnPolicy` (NatureCNN); at that
size an env step costs about half of an 84 x 84 one, and the network a little over half, which is what a 2-core
CPU can afford.

Hyperparameters come from `agents/hyperparams/ppo.yaml`, keyed by env id in the rl-baselines3-zoo format
(`lin_<value>` = a linear schedule to 0), plus `action_repeat`: game frames per decision of the packed view
(`spokester_env.ActionRepeat`). Training stops at `timesteps` or after `minutes` of wall-clock time,
whichever comes first. Every `eval_every` steps SB3's `EvalCallback` plays the most likely action on seeded
episodes; the best policy so evaluated is what is saved (rl-zoo's `best_model`), atomically, as `OUT` (a
`.zip`) with a JSON sidecar holding the observation settings (so that evaluation rebuilds the same env),
every evaluation, and what the run did.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor, VecNormalize

from spokester_agents.card import write_card
from spokester_agents.envs import ENV_ID, ObservationSettings, make_env, write_sidecar
from spokester_env.output import atomic_path, check_output

__all__ = ["TrainAgentConfig", "load_hyperparams", "train_agent"]

PPO_ARGUMENTS = (
    "policy", "n_steps", "batch_size", "n_epochs", "learning_rate", "clip_range", "clip_range_vf", "ent_coef",
    "vf_coef", "gamma", "gae_lambda", "max_grad_norm", "normalize_advantage", "target_kl", "policy_kwargs",
    "use_sde", "sde_sample_freq",
)  # fmt: skip
"""Keys of a zoo entry that go to `PPO(...)`; `n_envs`, `n_timesteps`, `normalize` and `action_repeat` (ours:
game frames per decision of the packed view, `spokester_env.ActionRepeat`) are read here."""

MIN_CNN_SIZE = 36
"""NatureCNN's smallest input side (8x8 stride 4, 4x4 stride 2, 3x3 stride 1), px."""


@dataclass(frozen=True)
class TrainAgentConfig:
    """One PPO run."""

    out: str = "runs/agents/ppo.zip"
    """Where the model goes (`.zip`); its sidecar is the same name with `.json`."""
    timesteps: int | None = None
    """Env steps in total, over all envs (None = the YAML's `n_timesteps`)."""
    minutes: float | None = None
    """Wall-clock budget; training stops at the first rollout boundary past it (None = no budget)."""
    seed: int = 0
    """Seeds PPO, the policy's initialisation and env j with seed + j."""
    observation: ObservationSettings = field(default_factory=ObservationSettings)
    """What the agent sees."""
    n_envs: int | None = None
    """Parallel envs (None = the YAML's `n_envs`)."""
    action_repeat: int | None = None
    """Packed view: game frames per decision (None = the YAML's `action_repeat`, else 1); it is saved in the
    sidecar's observation settings. The neural view always decides once per framelet."""
    vec_env: str = "dummy"
    """`"dummy"` (all envs in this process) or `"subproc"` (one process each); packed view only."""
    hyperparams: str | None = None
    """A zoo-format YAML file (None = the package's `agents/hyperparams/ppo.yaml`)."""
    device: str = "cpu"
    """Where the policy trains."""
    torch_threads: int | None = 1
    """torch's CPU threads (None = torch's default). One is fastest here: the envs step between small
    network calls, and a second OpenMP thread spinning against them made training 4x slower on 2 cores."""
    log_every_s: float = 30.0
    """Seconds between progress lines."""
    eval_every: int | None = 25_000
    """Env steps (over all envs) between evaluations of the most likely action (None = never); the model saved
    is then the best one so evaluated, not the last (rl-zoo's `best_model`)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_seed: int = 10_000
    """Evaluation episodes are seeded from here (away from eval-agent's usual seeds, so that choosing the best
    snapshot does not peek at the episodes used to report it)."""


def load_hyperparams(path: str | os.PathLike | None = None, env_id: str = ENV_ID) -> dict:
    """The zoo-format hyperparameters of `env_id` from `path` (None = the package's file)."""
    if path is None:
        text = resources.files("spokester_agents").joinpath("hyperparams/ppo.yaml").read_text()
    else:
        text = Path(path).read_text()
    table = yaml.safe_load(text) or {}
    if env_id not in table:
        raise ValueError(f"{path or 'agents/hyperparams/ppo.yaml'}: no entry for {env_id!r}")
    entry = dict(table[env_id])
    unknown = set(entry) - set(PPO_ARGUMENTS) - {"n_envs", "n_timesteps", "normalize", "action_repeat"}
    if unknown:
        raise ValueError(f"{path or 'ppo.yaml'}: unknown keys {sorted(unknown)} for {env_id!r}")
    return entry


def _schedule(value):
    """The zoo's `lin_<x>`: a linear decay from x to 0 over training; numbers stay constants."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def _normalize(value) -> dict | None:
    """The zoo's `normalize` entry as VecNormalize arguments; only reward normalisation is allowed."""
    if not value:
        return None
    options = {"norm_obs": False, "norm_reward": True} if value is True else dict(value)
    if options.get("norm_obs", True):
        raise ValueError("normalize: norm_obs must be false (the observations are uint8 images)")
    return options


def make_vec_env(settings: ObservationSettings, n_envs: int, seed: int, vec_env: str = "dummy") -> VecEnv:
    """`n_envs` envs of the agent's view as an SB3 VecEnv, env j seeded with seed + j, with episode stats."""
    if settings.view == "neural":
        from spokester_agents.neural_vec import NeuralSB3VecEnv

        venv = NeuralSB3VecEnv(settings, n_envs)
    else:
        if vec_env not in ("dummy", "subproc"):
            raise ValueError(f"vec_env={vec_env!r} is not one of ('dummy', 'subproc')")
        fns = [lambda: make_env(settings) for _ in range(n_envs)]
        venv = SubprocVecEnv(fns) if vec_env == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return VecMonitor(venv, info_keywords=("distance",))


class Progress(BaseCallback):
    """Stops at the wall-clock budget; prints a progress line every `every_s` seconds."""

    def __init__(self, budget_s: float | None, total: int, every_s: float, console: Console):
        super().__init__()
        self.budget_s, self.total, self.every_s, self.console = budget_s, total, every_s, console
        self.start = self.last = time.monotonic()
        self.stopped_by_clock = False

    def _on_training_start(self) -> None:
        self.start = self.last = time.monotonic()

    def _on_step(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.report(now)
        if self.budget_s is not None and now - self.start >= self.budget_s:
            self.stopped_by_clock = True
            return False
        return True

    def report(self, now: float) -> None:
        episodes = list(self.model.ep_info_buffer)
        distance = np.mean([e["distance"] for e in episodes]) if episodes else float("nan")
        length = np.mean([e["l"] for e in episodes]) if episodes else float("nan")
        elapsed = now - self.start
        self.console.print(
            f"{self.num_timesteps:>9,d}/{self.total:,d} steps  {elapsed / 60:5.1f} min  "
            f"{self.num_timesteps / max(elapsed, 1e-9):6.0f} steps/s  last {len(episodes)} episodes: "
            f"distance {distance:7.1f} m, length {length:6.0f}",
            highlight=False,
        )


class LogEvaluation(BaseCallback):
    """Called by `EvalCallback` after each evaluation: remembers (env steps, mean distance)."""

    def __init__(self, console: Console):
        super().__init__()
        self.history: list[dict] = []
        self.console = console

    def _on_step(self) -> bool:
        distance = round(float(self.parent.last_mean_reward), 1)
        entry = {"timesteps": int(self.model.num_timesteps), "mean_distance": distance}
        self.history.append(entry)
        best = max(e["mean_distance"] for e in self.history)
        self.console.print(
            f"evaluation at {entry['timesteps']:,d} steps: {entry['mean_distance']:.1f} m mean "
            f"(most likely action; best so far {best:.1f} m)",
            highlight=False,
        )
        return True


class KeepBest(BaseCallback):
    """Called by `EvalCallback` on a new best mean reward: keeps a copy of the policy's parameters in memory."""

    def __init__(self):
        super().__init__()
        self.state: dict | None = None
        self.timesteps = 0
        self.mean_reward = float("nan")

    def _on_step(self) -> bool:
        self.state = {key: value.detach().clone() for key, value in self.model.policy.state_dict().items()}
        self.timesteps = int(self.model.num_timesteps)
        self.mean_reward = float(self.parent.best_mean_reward)
        return True


def _evaluator(
    config: TrainAgentConfig, settings: ObservationSettings, n_envs: int, training_env: VecEnv, console: Console
) -> tuple[EvalCallback, KeepBest, LogEvaluation]:
    """SB3's `EvalCallback` playing the most likely action on seeded episodes, keeping the best policy.

    The reward is metres per frame, so an episode's return is the distance ridden (VecMonitor reports it raw).
    """
    envs = min(config.eval_episodes, 5)
    eval_env = make_vec_env(settings, envs, config.eval_seed, "dummy")
    if isinstance(training_env, VecNormalize):  # EvalCallback syncs the normalisation wrappers pairwise
        eval_env = VecNormalize(eval_env, training=False, norm_obs=False, norm_reward=False)
    keep, log = KeepBest(), LogEvaluation(console)
    callback = EvalCallback(
        eval_env, callback_on_new_best=keep, callback_after_eval=log, n_eval_episodes=config.eval_episodes,
        eval_freq=max(config.eval_every // n_envs, 1), deterministic=True, verbose=0, warn=False,
    )  # fmt: skip
    return callback, keep, log


def save_model(model: PPO, out: str | os.PathLike) -> Path:
    """Save a model zip atomically (SB3 writes a temporary zip, which is then moved into place)."""
    out = Path(out)
    with atomic_path(out) as temporary:
        model.save(temporary)
    return out


def train_agent(config: TrainAgentConfig, console: Console | None = None) -> Path:
    """Train PPO as configured; returns the path of the saved model zip."""
    console = console or Console(stderr=True, soft_wrap=True)
    if not str(config.out).endswith(".zip"):
        raise ValueError(f"--out {config.out}: the model file must end in .zip")
    check_output(config.out)
    hp = load_hyperparams(config.hyperparams)
    total = int(config.timesteps if config.timesteps is not None else hp.pop("n_timesteps", 1_000_000))
    hp.pop("n_timesteps", None)
    n_envs = int(config.n_envs if config.n_envs is not None else hp.pop("n_envs", 8))
    hp.pop("n_envs", None)
    if total < 1 or n_envs < 1:
        raise ValueError(f"timesteps ({total}) and n_envs ({n_envs}) must be positive")
    normalize = _normalize(hp.pop("normalize", None))
    repeat = hp.pop("action_repeat", 1)
    repeat = repeat if config.action_repeat is None else config.action_repeat
    settings = config.observation
    if settings.view == "packed":
        settings = dataclasses.replace(settings, action_repeat=int(repeat))
    kwargs = {key: _schedule(value) for key, value in hp.items()}
    kwargs["n_steps"] = min(int(kwargs.get("n_steps", 128)), max(total // n_envs, 2))
    kwargs["batch_size"] = min(int(kwargs.get("batch_size", 64)), kwargs["n_steps"] * n_envs)

    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    if kwargs.get("policy") == "CnnPolicy" and settings.size < MIN_CNN_SIZE:
        raise ValueError(f"size {settings.size}: CnnPolicy (NatureCNN) needs at least {MIN_CNN_SIZE} px")
    set_random_seed(config.seed)
    venv = make_vec_env(settings, n_envs, config.seed, config.vec_env)
    if normalize:
        venv = VecNormalize(venv, gamma=float(hp.get("gamma", 0.99)), **normalize)
    model = PPO(env=venv, seed=config.seed, device=config.device, verbose=0, **kwargs)
    budget = None if config.minutes is None else 60.0 * config.minutes
    progress = Progress(budget, total, config.log_every_s, console)
    callbacks, evaluator, keep, log = [progress], None, None, None
    if config.eval_every:
        evaluator, keep, log = _evaluator(config, settings, n_envs, venv, console)
        callbacks.append(evaluator)
    console.print(
        f"PPO on {ENV_ID}, {settings.view} view at {settings.size} px, one decision per "
        f"{settings.action_repeat if settings.view == 'packed' else 'framelet'} frame(s), "
        f"{n_envs} envs, up to {total:,d} steps" + (f" or {config.minutes:g} min" if budget else "")
    )
    start = time.monotonic()
    interrupted = False
    try:
        model.learn(total_timesteps=total, callback=CallbackList(callbacks))
    except KeyboardInterrupt:  # keep what was learnt
        interrupted = True
    finally:
        venv.close()
        if evaluator is not None:
            evaluator.eval_env.close()
    wall_s = time.monotonic() - start
    progress.report(time.monotonic())
    selection = {"selected": "last"}
    if keep is not None and keep.state is not None:
        model.policy.load_state_dict(keep.state)
        selection = {"selected": "best", "selected_timesteps": keep.timesteps, "evaluations": log.history}
        console.print(
            f"keeping the policy of step {keep.timesteps:,d}: {keep.mean_reward:.1f} m mean over "
            f"{config.eval_episodes} episodes (most likely action, seeds from {config.eval_seed})"
        )
    out = save_model(model, config.out)
    write_sidecar(
        out,
        settings,
        algorithm="PPO",
        seed=config.seed,
        n_envs=n_envs,
        timesteps=int(model.num_timesteps),
        wall_s=round(wall_s, 1),
        stopped_by=("interrupt" if interrupted else "clock" if progress.stopped_by_clock else "timesteps"),
        hyperparams={key: value for key, value in load_hyperparams(config.hyperparams).items()},
        **selection,
    )
    write_card(out)
    console.print(f"saved {out} ({model.num_timesteps:,d} steps in {wall_s / 60:.1f} min) and its model card")
    return out
