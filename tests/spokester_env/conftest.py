import gymnasium as gym
import pytest

import spokester_env  # noqa: F401  (registers Spokester-v0)


@pytest.fixture
def make_env():
    """Build small unwrapped envs and close them after the test."""
    envs = []

    def make(**kwargs):
        kwargs.setdefault("width", 64)
        kwargs.setdefault("height", 64)
        env = gym.make("Spokester-v0", **kwargs)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
