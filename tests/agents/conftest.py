"""Fixtures for the agents tests: a tiny random renderer checkpoint, a tiny PPO model, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`python -m spokester_agents.cli ARGS` in a subprocess from the repository root, headless, text output."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "spokester_agents.cli", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_ppo(tmp_path_factory) -> Path:
    """A PPO model trained by `spokester train-agent` for 32 steps on 40 px depth+flow (2 envs)."""
    out = tmp_path_factory.mktemp("ppo") / "agent.zip"
    result = run_cli("train-agent", "--timesteps", 32, "--n-envs", 2, "--size", 40, "--seed", 3, "--action-repeat", 2,
                     "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out
