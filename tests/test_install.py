"""What gets installed: names that cannot collide with a user's own modules, every package and data file listed,
and nothing but a command's output on stdout."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"spokester_env": "spokester_env", "neural_render": "neural_render", "train": "spokester_train",
                "agents": "spokester_agents"}  # fmt: skip
SUBCOMMANDS = ("play", "record", "train-agent", "eval-agent", "train-renderer", "eval-renderer", "bench")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _run(args, cwd, timeout=180.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def user_project(tmp_path_factory) -> Path:
    """A user's ML project: its own train.py, train/ and agents/, each failing loudly if anything imports it."""
    root = tmp_path_factory.mktemp("user_project")
    boom = "raise RuntimeError('the user project\\'s own {} was imported')\n"
    (root / "train.py").write_text(boom.format("train.py"))
    for name in ("train", "agents"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(boom.format(name + "/"))
        (root / name / "evaluate.py").write_text(boom.format(name + "/evaluate.py"))
    return root


def test_the_repository_folders_install_under_names_no_user_project_has():
    """pyproject lists every package folder (and data folder) of the four packages under its installed name, and
    the two generic folder names are not installed as themselves."""
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {"spokester_train": "train", "spokester_agents": "agents"}
    expected = set()
    for folder, name in INSTALLED_AS.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_dir() and "__pycache__" not in path.parts and any(p.is_file() for p in path.iterdir()):
                expected.add(".".join([name, *path.relative_to(REPO / folder).parts]))
        expected.add(name)
    assert set(tool["packages"]) == expected
    assert not {"train", "agents"} & {p.split(".")[0] for p in tool["packages"]}
    assert _pyproject()["project"]["scripts"]["spokester"] == "spokester_agents.cli:main"


def test_no_module_imports_the_repository_folder_names():
    """Code imports the installed names only: an `import train` anywhere would load a user's train.py."""
    bad = []
    for folder in [*INSTALLED_AS, "tests", "scripts"]:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in {"train",
                        "agents"}]  # fmt: skip
    assert not bad


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_helps_from_inside_a_project_with_its_own_train_and_agents(user_project, command):
    result = _run([sys.executable, "-m", "spokester_agents.cli", command, "--help"], user_project)
    assert result.returncode == 0, result.stderr
    assert "the user project" not in result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert result.stdout.count("--help") == 1


def test_real_runs_from_inside_a_project_with_its_own_train_and_agents(user_project):
    """A short evaluation (agents) and one training step (the training package) from the user's folder, through
    the installed `spokester` script when there is one, else through `python -m`."""
    script = Path(sys.executable).with_name("spokester")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "spokester_agents.cli"]
    result = _run([*command, "eval-agent", "--episodes", "1", "--max-steps", "5", "--json"], user_project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lengths"] == [5]
    result = _run([*command, "bench", "train", "--steps", "1", "--warmup", "0", "--size", "32", "--clip-frames", "2",
                   "--batch", "1", "--no-irepa"], user_project)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ms/step" in result.stdout


def test_the_renderer_and_its_training_import_without_the_game_video_or_opencv(lacking_gpu_host_modules):
    """A GPU host training from a pack has torch, numpy, safetensors, einops, rich and gymnasium; importing
    the renderer and the training command must not need pybullet, PyAV, OpenCV, moderngl or LiteRT (each
    made to fail on import here), and the env says what it needs only when one is made."""
    code = lacking_gpu_host_modules + (
        "import neural_render, spokester_env, spokester_train.__main__, spokester_train.recipe.loop\n"
        "import spokester_train.recipe.bench, neural_render.bench\n"
        "try:\n"
        "    spokester_env.SpokesterEnv(width=16, height=16)\n"
        "except ModuleNotFoundError as e:\n"
        "    print(e)\n"
    )
    result = _run([sys.executable, "-c", code], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No module named 'pybullet'\n"


def test_the_env_and_its_tests_need_only_the_core_dependencies(lacking_the_extras):
    """`pip install spokester` without extras gives gymnasium, numpy, pybullet and moderngl: the env rides, and
    its test folder collects (every extra's modules made to fail on import)."""
    code = lacking_the_extras + (
        "import gymnasium as gym, pytest, spokester_env\n"
        "env = gym.make('Spokester-v0', width=16, height=16)\n"
        "env.reset(seed=0)\n"
        "assert env.step(0)[0]['depth'].shape == (16, 16, 1)\n"
        "assert not any(m.split('.')[0] in LACKS for m in sys.modules), 'an extra was imported'\n"
        "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/spokester_env']))\n"
    )
    result = _run([sys.executable, "-c", code], REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    collected = re.search(r"(\d+) tests? collected", result.stdout)
    assert collected and int(collected[1]) > 100, result.stdout[-500:]


def test_pybullets_chatter_never_reaches_stdout():
    """pybullet prints its build time, 'argv[0]=' on connect and, with the EGL plugin, GL strings on every new
    context: an env made, stepped and closed with each backend that loads here writes nothing to stdout."""
    from spokester_env.scene import _egl_probe

    code = (
        "import gymnasium as gym, spokester_env, sys\n"
        "for backend in sys.argv[1:]:\n"
        "    env = gym.make('Spokester-v0', backend=backend)\n"
        "    env.reset(seed=0)\n"
        "    for _ in range(3): env.step(1)\n"
        "    env.close()\n"
    )
    backends = ["tiny", "egl"] if _egl_probe() else ["tiny"]
    result = _run([sys.executable, "-c", code, *backends], REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_quiet_stdout_silences_c_level_writes_to_file_descriptor_1():
    code = (
        "import ctypes, os\n"
        "from spokester_env.scene import quiet_stdout\n"
        "libc = ctypes.CDLL(None)\n"
        "with quiet_stdout():\n"
        "    os.write(1, b'hidden\\n'); libc.puts(b'hidden too'); libc.fflush(None)\n"
        "os.write(1, b'shown\\n')\n"
    )
    result = _run([sys.executable, "-c", code], REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "shown\n"


@pytest.mark.slow
def test_the_wheel_holds_the_installed_names_and_the_shipped_weights(tmp_path):
    """Build the wheel (pip, build isolation: setuptools comes from the package index) and list it."""
    result = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)], tmp_path,
                  timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("spokester-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names if not n.startswith("spokester-")} == set(INSTALLED_AS.values())
    for shipped in ("neural_render/weights/default.safetensors", "spokester_agents/models/ppo_depthflow64.zip",
                    "spokester_agents/hyperparams/ppo.yaml", "spokester_train/weights/mobile_pydnet_pruned35.tflite",
                    "spokester_train/__main__.py"):  # fmt: skip
        assert shipped in names
