"""scripts/train_from_pack.py: training a renderer from a pack where there is no game, video decoding or
OpenCV, and handing its weights back in parts."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neural_render import load_renderer
from spokester_train.data.pack import make_pack

pytest.importorskip("PIL")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_from_pack.py"


def _not_installed_env() -> dict[str, str]:
    """An environment for `python -S`: the interpreter's packages on PYTHONPATH, but not the project, whose
    editable install is a .pth file that only `site` reads: as on a host that runs a copy of the repository."""
    packages = [p for p in sys.path if p.endswith("site-packages")]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(packages)}


@pytest.fixture
def run_as_gpu_host(lacking_gpu_host_modules):
    """`run_as_gpu_host(args)`: run the script in a process where the project is not installed and every module
    a GPU host may lack fails to import."""

    def run(args: list[str]) -> subprocess.CompletedProcess:
        code = lacking_gpu_host_modules + (
            f"sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]\n"
            f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        )
        return subprocess.run(
            [sys.executable, "-S", "-c", code, *args], capture_output=True, text=True, env=_not_installed_env(),
            cwd=REPO.parent, timeout=600,
        )  # fmt: skip

    return run


@pytest.mark.parametrize("how", ["python", "bash"])
def test_the_checkout_is_importable_under_the_installed_names_without_installing(how, tmp_path):
    """The GPU scripts run from a copy of the repository: train/ must import as spokester_train there."""
    probe = (
        "import os, spokester_train as t, spokester_agents as a; print(*(os.path.realpath(m.__file__) for m in (t, a)))"
    )
    if how == "python":  # train_from_pack.py's own start
        code = f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='probe'); {probe}"
        result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                                env=_not_installed_env(), cwd=tmp_path)  # fmt: skip
    else:  # what the bash GPU scripts source
        command = f". scripts/checkout_names.sh && cd {tmp_path} && {sys.executable} -S -c '{probe}'"
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=_not_installed_env(),
                                cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    train_init, agents_init = result.stdout.split()
    assert (Path(train_init), Path(agents_init)) == (REPO / "train" / "__init__.py", REPO / "agents" / "__init__.py")
    bare = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                          env=_not_installed_env(), cwd=tmp_path)  # fmt: skip
    assert "No module named 'spokester_train'" in bare.stderr  # the test's premise: not installed there


def test_a_renderer_trained_from_a_pack_without_the_game_comes_back_in_parts_that_join(
    road_stores, tmp_path, run_as_gpu_host
):
    pack = tmp_path / "road.zip"
    make_pack(road_stores[:1], pack, scene="open", game_frames=8)
    out = tmp_path / "back"
    result = run_as_gpu_host([str(pack), "--out", str(out), "--steps", "3", "--batch", "2", "--device", "cpu"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["steps"] == report["planned_steps"] == 3
    parts = sorted(out.glob("renderer.safetensors.part*"))
    assert len(parts) == report["parts"] >= 2 and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    assert not (out / "renderer.safetensors").exists()

    joined = run_as_gpu_host(["--join", str(out)])
    assert joined.returncode == 0, joined.stderr
    weights = out / "renderer.safetensors"
    assert json.loads(joined.stdout) == {"renderer": str(weights)}
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == report["sha256"]
    renderer = load_renderer(weights)
    assert renderer.game == {"camera": "first_person", "scene": "open"}
    assert renderer.provenance["steps"] == 3
    assert [d["video"] for d in renderer.provenance["data"]] == ["road_clip.mp4"]  # the video's, not the folder's
    assert set(renderer.stats.sources) == {"game", "game/follow", "game/first_person", "video", "video/road_clip"}
    config = renderer.provenance["train_config"]
    assert config["evaluate"] is False and "game_stats" not in config and config["preset"] == "gpu-tiny"
    assert renderer.provenance["evaluation"] is None


def test_parts_that_do_not_add_up_are_refused(tmp_path, run_as_gpu_host):
    out = tmp_path / "back"
    out.mkdir()
    (out / "renderer.safetensors.part00").write_bytes(b"abc")
    record = {"file": "renderer.safetensors", "bytes": 3, "sha256": hashlib.sha256(b"abd").hexdigest(), "parts": 1}
    (out / "renderer.parts.json").write_text(json.dumps(record))
    result = run_as_gpu_host(["--join", str(out)])
    assert result.returncode == 1
    assert result.stderr.strip().endswith("do not add up to the file that was split (SHA-256)")
    assert not (out / "renderer.safetensors").exists()


def test_the_steps_fill_the_time_left_after_the_export_at_the_timed_rate_with_a_margin_for_reading(monkeypatch):
    import importlib.util

    from spokester_train.recipe import bench
    from spokester_train.recipe.config import make_config

    spec = importlib.util.spec_from_file_location("train_from_pack", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    timing = type("Timing", (), {"seconds": 0.5})
    monkeypatch.setattr(bench, "time_stage", lambda config, stage, steps, warmup: timing)
    config = make_config("gpu-tiny", device="cpu")
    assert script.plan_steps(config, 130.0) == (int((130 - 30) * 0.85 / 0.5), 0.5) == (170, 0.5)
    assert script.plan_steps(config, 10.0)[0] == 1  # never none
    assert script.plan_steps(config, 130.0, margin=0.7) == (140, 0.5)  # --margin


def test_a_label_store_folder_given_as_a_video_is_used_as_it_is_and_must_fit_the_run(road_stores):
    from spokester_train.recipe.config import TrainConfig
    from spokester_train.recipe.setup import prepare_stores, video_file_name

    folder = str(road_stores[0].dir)
    config = TrainConfig(videos=(folder,), irepa=True, label_root="/nonexistent")  # nothing is extracted
    [store] = prepare_stores([folder], 32, config)
    assert store.dir == road_stores[0].dir and video_file_name(folder, store) == "road_clip.mp4"
    with pytest.raises(ValueError, match=f"{folder}: a 32 px label store; this stage trains at 64 px"):
        prepare_stores([folder], 64, config)
    with pytest.raises(ValueError, match="takes no @START"):
        prepare_stores([f"{folder}@3"], 32, config)


def test_a_pack_fine_tunes_a_renderer_given_with_init_from(road_stores, tmp_path, run_as_gpu_host):
    """--init-from: the GPU host trains that renderer's network from its weights, with its camera and steps; --looks,
    --sky-at-clip, --car-slabs, --car-masks and --lr change the recipe as they do for `python -m spokester_train`
    (the slabs and car masks come from the pack: the host has no OpenCV)."""
    from neural_render import build_renderer, save_renderer

    start = save_renderer(
        tmp_path / "start.safetensors",
        build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2),
        game={"camera": "follow", "scene": "city"},
        num_steps=4,
    )
    pack = tmp_path / "road.zip"
    make_pack(road_stores[:1], pack, scene="open", game_frames=8)
    out = tmp_path / "back"
    args = [str(pack), "--out", str(out), "--steps", "2", "--batch", "2", "--device", "cpu", "--init-from", str(start)]
    options = ["--looks", "--sky-at-clip", "--car-slabs", "--car-masks", "--mirror", "--cars-enter", "0.5"]
    options += ["--car-loss-weight", "4", "--lr", "2e-4"]
    result = run_as_gpu_host([*args, *options])
    assert result.returncode == 0, result.stderr
    assert run_as_gpu_host(["--join", str(out)]).returncode == 0
    renderer = load_renderer(out / "renderer.safetensors")
    assert (renderer.model.config.num_blocks, renderer.model.config.width) == (2, 64)
    assert renderer.game == {"camera": "follow", "scene": "open"} and renderer.num_steps == 4
    assert (
        renderer.model.config.looks == (Path(road_stores[0].manifest["video"]["path"]).stem,) and renderer.look == "any"
    )
    assert all(source.sky_at_clip for source in renderer.stats.sources.values())
    assert renderer.stats.source("video").car_slabs and not renderer.stats.source("game").car_slabs
    assert renderer.model.config.wants_cars  # its car channel learnt from the pack's slabs, without OpenCV
    assert renderer.provenance["train_config"]["lr"] == 2e-4 and renderer.provenance["train_config"]["mirror"]
    assert renderer.provenance["train_config"]["cars_enter"] == 0.5
    assert renderer.provenance["train_config"]["car_loss_weight"] == 4.0
    origin = renderer.provenance["init_from"]
    assert origin["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest() and origin["file"] == "start.safetensors"
    refused = run_as_gpu_host([*args, "--renderer", "tiny-head"])
    assert refused.returncode == 2 and "--renderer: a run started from a renderer" in refused.stderr
