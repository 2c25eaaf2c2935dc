import gymnasium as gym
import pytest

import spokester_env  # noqa: F401  (registers Spokester-v0)
import spokester_env.gl as gl
from spokester_env import BACKENDS
from spokester_env.gl import context_error


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn; "gl" is skipped where no EGL context can be made."""
    if request.param == "gl" and context_error() is not None:
        pytest.skip(context_error())
    return request.param


@pytest.fixture
def make_env(backend):
    """Build small unwrapped envs of each backend and close them after the test."""
    envs = []

    def make(**kwargs):
        kwargs.setdefault("width", 64)
        kwargs.setdefault("height", 64)
        kwargs.setdefault("backend", backend)
        env = gym.make("Spokester-v0", **kwargs)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture
def no_egl(monkeypatch):
    """A host where moderngl makes no EGL context: its driver's error is "eglGetDisplay failed\n(no device)"."""
    moderngl = pytest.importorskip("moderngl")

    def no_context(*args, **kwargs):
        raise Exception("eglGetDisplay failed\n(no device)")

    monkeypatch.setattr(moderngl, "create_standalone_context", no_context)
    gl.context_error.cache_clear()
    gl.egl_devices.cache_clear()
    yield
    gl.context_error.cache_clear()
    gl.egl_devices.cache_clear()
