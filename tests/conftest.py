"""Fixtures shared by several test folders."""

import os
import subprocess
from pathlib import Path

import pytest

EXTRAS = (
    "torch",
    "einops",
    "safetensors",
    "av",
    "cv2",
    "ai_edge_litert",
    "rich",
    "yaml",
    "stable_baselines3",
    "pygame",
)
"""What the core env does without: every extra's modules (`pip install spokester` without extras)."""

GPU_HOST_LACKS = ("pybullet", "pybullet_utils", "av", "cv2", "moderngl", "ai_edge_litert", "pygame")
"""What a GPU host that trains the renderer from a pack may lack: the game, video decoding, OpenCV, LiteRT."""


def lacking(modules: tuple[str, ...]) -> str:
    """Python code to run first in a subprocess: every one of `modules` then fails to import."""
    return (
        "import importlib.abc, sys\n"
        f"LACKS = {modules!r}\n"
        "class Lacking(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in LACKS:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Lacking())\n"
    )


@pytest.fixture(scope="session")
def lacking_the_extras() -> str:
    """Python code to run first in a subprocess: every module of `EXTRAS` then fails to import."""
    return lacking(EXTRAS)


@pytest.fixture(scope="session")
def lacking_gpu_host_modules() -> str:
    """Python code to run first in a subprocess: every module of `GPU_HOST_LACKS` then fails to import."""
    return lacking(GPU_HOST_LACKS)


@pytest.fixture(scope="session")
def lacking_the_game() -> str:
    """Python code to run first in a subprocess: the game (pybullet), video decoding and OpenCV fail to import,
    as on a GPU host that has been given moderngl to draw with (`spokester_env.gl_replay`)."""
    return lacking(("pybullet", "pybullet_utils", "av", "cv2"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A one-block 32 px renderer with small random weights (so its frames depend on depth and flow)."""
    import torch  # here, not at the top: the env's tests run where only the core env is installed

    from neural_render import build_renderer, save_renderer

    model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    return save_renderer(tmp_path_factory.mktemp("renderer") / "tiny", model, provenance={"test": "tiny"})


@pytest.fixture
def mounted(tmp_path):
    """`mounted(options)`: a fresh tmpfs mounted with `options` ("ro", "size=64k") on a folder, for read-only
    folders and full disks that even root cannot write; skipped where mounting is not allowed."""
    mounts = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"mount{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """The per-user cache (`SPOKESTER_CACHE`) of the whole test run: a temporary folder, never the tester's."""
    folder = tmp_path_factory.mktemp("user_cache")
    saved = os.environ.get("SPOKESTER_CACHE")
    os.environ["SPOKESTER_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("SPOKESTER_CACHE", None)
    else:
        os.environ["SPOKESTER_CACHE"] = saved


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.fixture
def machine_paths():
    """A function listing the strings of a JSON value that name this machine's files: absolute paths, and
    anything under the repository's /work/ folder (what a published checkpoint must not record)."""
    return lambda value: [s for s in _strings(value) if os.path.isabs(s) or "/work/" in s]
