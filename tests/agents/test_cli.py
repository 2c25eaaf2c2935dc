"""Every `spokester` subcommand in a subprocess, on tiny settings, with assertions on what it wrote."""

from __future__ import annotations

import json
import re

import av
import numpy as np
import pytest

from spokester_agents.cli import FORWARDED

from .conftest import run_cli


def _frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _one_line_error(result, *words: str) -> None:
    """A failed command said one thing on stderr: one line (no usage block, no traceback) with all `words`."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("pybullet build time")]
    assert len(lines) == 1 and "error" in lines[0], result.stderr
    for word in words:
        assert word in lines[0], result.stderr


def test_help_everywhere():
    for command in ("", "play", "record", "train-agent", "eval-agent", "bench"):
        result = run_cli(*([command] if command else []), "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: spokester" in result.stdout


def test_eval_agent_json_is_seeded_and_complete():
    args = ("eval-agent", "--agent", "random", "--episodes", 3, "--seed", 5, "--max-steps", 120, "--json")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result == json.loads(second.stdout)  # same seeds, same numbers
    assert result["seeds"] == [5, 6, 7] and len(result["distances"]) == len(result["lengths"]) == 3
    assert result["mean_distance"] == pytest.approx(np.mean(result["distances"]))
    assert result["std_distance"] == pytest.approx(np.std(result["distances"]))
    assert result["mean_length"] == pytest.approx(np.mean(result["lengths"]))
    assert max(result["lengths"]) <= 120 and min(result["distances"]) > 0


def test_eval_agent_table():
    result = run_cli("eval-agent", "--agent", "heuristic", "--episodes", 1, "--max-steps", 48)
    assert result.returncode == 0, result.stderr
    assert "distance (m)" in result.stdout and "length (frames)" in result.stdout
    assert "48.0" in result.stdout  # the one episode's length, cut at 48 frames


def test_train_agent_then_eval_and_record_it(tiny_ppo, tmp_path):
    sidecar = json.loads(tiny_ppo.with_suffix(".json").read_text())
    assert sidecar["observation"]["size"] == 40 and sidecar["observation"]["view"] == "packed"
    assert sidecar["timesteps"] == 32 and sidecar["stopped_by"] == "timesteps" and sidecar["seed"] == 3
    assert not list(tiny_ppo.parent.glob(".*"))  # no temporary file left
    assert "| trained | 32 decisions" in tiny_ppo.with_name("agent.card.md").read_text()  # its model card beside
    result = run_cli("eval-agent", "--agent", tiny_ppo, "--episodes", 2, "--max-steps", 30, "--json")
    assert result.returncode == 0, result.stderr
    lengths = json.loads(result.stdout)["lengths"]
    assert len(lengths) == 2 and max(lengths) <= 30
    out = tmp_path / "rec"
    result = run_cli("record", "--agent", tiny_ppo, "--max-steps", 12, "--size", 32, "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "ep000.json").read_text())
    data = np.load(out / "ep000.npz")
    assert summary["agent"] == str(tiny_ppo) and summary["steps"] == len(data["actions"]) <= 12
    assert data["rgb"].shape[1:] == (32, 32, 3)
    assert _frames(out / "ep000.mp4") == summary["steps"] + 1


def test_train_agent_keeps_the_best_evaluated_policy_and_repeats_actions(tmp_path):
    """--eval-every picks the policy with the best most-likely-action distance; --action-repeat travels with it."""
    out = tmp_path / "best.zip"
    result = run_cli("train-agent", "--timesteps", 64, "--n-envs", 2, "--size", 40, "--seed", 1, "--action-repeat", 2,
                     "--eval-every", 32, "--eval-episodes", 2, "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["observation"]["action_repeat"] == 2 and sidecar["selected"] == "best"
    evaluations = sidecar["evaluations"]
    assert [e["timesteps"] for e in evaluations] == [32, 64]
    best = max(evaluations, key=lambda e: e["mean_distance"])
    assert sidecar["selected_timesteps"] == best["timesteps"]
    # The saved policy is the selected one: replaying its evaluation episodes (seeds 10000, 10001) agrees.
    result = run_cli("eval-agent", "--agent", out, "--episodes", 2, "--seed", 10000, "--json")
    assert result.returncode == 0, result.stderr
    replay = json.loads(result.stdout)
    assert replay["mean_distance"] == pytest.approx(best["mean_distance"], abs=0.6)
    assert all(length % 2 == 0 or crashed for length, crashed in zip(replay["lengths"], replay["crashed"], strict=True))
    # Recording plays the agent in lockstep: each decision on its first frame, "keep lane" on the second.
    record = run_cli("record", "--agent", out, "--max-steps", 20, "--size", 32, "--out", tmp_path / "rec")
    assert record.returncode == 0, record.stderr
    actions = np.load(tmp_path / "rec" / "ep000.npz")["actions"]
    assert len(actions) == 20 and not actions[1::2].any()


def test_stochastic_evaluation_is_seeded(tiny_ppo):
    args = ("eval-agent", "--agent", tiny_ppo, "--episodes", 2, "--seed", 9, "--stochastic", "--json")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["stochastic"] is True and result == json.loads(second.stdout)


def test_train_agent_stops_on_the_clock(tmp_path):
    out = tmp_path / "clock.zip"
    result = run_cli("train-agent", "--timesteps", 100000, "--minutes", 0.0005, "--n-envs", 1, "--size", 40,
                     "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["stopped_by"] == "clock" and sidecar["timesteps"] < 1000
    assert sidecar["observation"]["action_repeat"] == 8  # the YAML's, when --action-repeat is not given


def test_record_neural_both(tiny_checkpoint, tmp_path):
    out = tmp_path / "rec"
    result = run_cli("record", "--agent", "heuristic", "--view", "both", "--episodes", 2, "--max-steps", 7,
                     "--seed", 4, "--checkpoint", tiny_checkpoint, "--render-steps", 2, "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"ep00{i}.{e}" for i in (0, 1) for e in ("json", "mp4", "npz")]
    for i in (0, 1):
        summary = json.loads((out / f"ep00{i}.json").read_text())
        data = np.load(out / f"ep00{i}.npz")
        assert summary["seed"] == 4 + i and summary["steps"] == 7 == len(data["actions"]) == len(data["rewards"])
        assert summary["checkpoint"] == str(tiny_checkpoint) and len(summary["checkpoint_id"]) == 32
        assert data["neural"].shape == data["rgb"].shape == (8, 32, 32, 3)
        assert summary["distance"] == pytest.approx(data["distance"][-1])
        with av.open(str(out / f"ep00{i}.mp4")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 64, 3)  # cube | neural


@pytest.mark.parametrize(
    "args, words, status",
    [
        (("eval-agent", "--agent", "nosuch.zip"), ("spokester eval-agent: error:", "nosuch.zip"), 1),
        (("eval-agent", "--episodes", "0"), ("spokester eval-agent: error:", "--episodes", ">= 1"), 2),
        (("record", "--view", "neural", "--checkpoint", "missing.safetensors", "--out", "x"), ("missing",), 1),
        (("record", "--agent", "random", "--view", "sideways", "--out", "x"), ("--view",), 2),
        (("record", "--agent", "random"), ("spokester record: error:", "--out"), 2),
        (("train-agent", "--out", "model.pt", "--timesteps", "8"), (".zip",), 1),
        (("train-agent", "--minutes", "0"), ("--minutes", "> 0"), 2),
        (("train-agent", "--eval-every", "-1"), ("--eval-every", ">= 0"), 2),
        (("bench", "all", "--sizes", "32"), ("one benchmark",), 1),
        (("bench", "env", "--sizes", "0"), ("python -m spokester_env.bench: error:", "--sizes"), 2),
        (("record", "--view", "neural", "--device", "gpu", "--out", "x"), ("--device", "cuda:N"), 2),
        (("play", "--device", "cpu:1"), ("--device",), 2),
        (("fly",), ("spokester: error:", "invalid choice"), 2),
        (("bench", "render", "--device", "tpu"), ("python -m neural_render.bench: error:", "--device", "cuda:N"), 2),
        (("play", "--checkpoint", "/nonexistent.safetensors", "--max-frames", "2"), ("/nonexistent",), 1),
        (("train-agent", "--out", "README.md/ta.zip"), ("--out README.md/ta.zip", "is a file, not a folder"), 1),
        (("record", "--out", "README.md"), ("--out README.md: is a file, not a folder",), 1),
    ],
)
def test_bad_arguments_give_one_line_errors(args, words, status, tmp_path):
    """Errors of options (2) and errors found while working (1): one line each, from the command that saw them."""
    result = run_cli(*args)
    _one_line_error(result, *words)
    assert result.returncode == status, result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_device_cuda_without_cuda_is_a_one_line_error(tiny_checkpoint, tmp_path):
    result = run_cli("record", "--view", "neural", "--checkpoint", tiny_checkpoint, "--device", "cuda",
                     "--out", tmp_path / "rec", "--max-steps", 2)  # fmt: skip
    _one_line_error(result, "no CUDA device", "use cpu")
    assert result.returncode == 2  # refused while reading the options, before any work
    assert not (tmp_path / "rec").exists()  # nothing half-written


def test_play_headless_subprocess(tiny_checkpoint):
    result = run_cli("play", "--view", "both", "--size", 32, "--checkpoint", tiny_checkpoint, "--render-steps", 1,
                     "--max-frames", 10, "--seed", 1)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("10 frames at")


def test_bench_env_forwards_options():
    result = run_cli("bench", "env", "--sizes", 32, "--seconds", 0.05, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["size"] for row in rows} == {32} and all(row["env_steps_per_s"] > 0 for row in rows)
    assert "tiny" in [row["backend"] for row in rows]  # every backend that works here, each on its own row


@pytest.mark.slow
def test_bench_render_forwards_options():
    result = run_cli("bench", "render", "--size", 32, "--steps", 1, "--window", 1, "--framelets", 2,
                     "--baseline-framelets", 1, "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "32x32" in result.stdout and "ms/framelet" in result.stdout


def test_bench_train_forwards_options():
    result = run_cli("bench", "train", "--steps", 1, "--warmup", 0, "--size", 32, "--clip-frames", 2, "--batch", 1,
                     "--no-irepa")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "irepa False" in result.stdout
    assert re.search(r"32\^2 x 2 frames x batch 1, sdpa: +[\d.]+ ms/step", result.stdout)


@pytest.mark.parametrize(
    "command, usage",
    [
        ("train-renderer", "usage: python -m spokester_train "),
        ("eval-renderer", "usage: python -m spokester_train.evaluation.evaluate "),
    ],
)
def test_renderer_commands_delegate_to_train(command, usage):
    """The forwarded command line is the training package's own: its usage line, and its one-line errors."""
    assert FORWARDED[command] in ("spokester_train.__main__", "spokester_train.evaluation.evaluate")
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage), result.stdout
    result = run_cli(command, "--no-such-option")
    _one_line_error(result, usage.removeprefix("usage: ").strip() + ": error:")
    assert result.returncode == 2


@pytest.mark.slow
def test_train_and_eval_an_agent_on_neural_frames(tmp_path):
    from neural_render import build_renderer, save_renderer

    checkpoint = save_renderer(tmp_path / "r64", build_renderer("tiny", image_size=64, width=64, num_blocks=1, heads=1))
    out = tmp_path / "neural.zip"
    result = run_cli("train-agent", "--view", "neural", "--checkpoint", checkpoint, "--render-steps", 1,
                     "--n-envs", 2, "--timesteps", 32, "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["observation"]["view"] == "neural" and sidecar["observation"]["size"] == 64
    result = run_cli("eval-agent", "--agent", out, "--episodes", 1, "--max-steps", 10, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lengths"] == [10]  # 5 framelets of 2 frames
    result = run_cli("record", "--agent", out, "--max-steps", 10, "--size", 48, "--out", tmp_path / "rec")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "rec" / "ep000.json").read_text())["steps"] == 10


def test_bench_all_is_a_quick_look_on_one_thread_unless_told(monkeypatch):
    """`spokester bench` (all) runs the env and render benchmarks with short options, on the command's one
    thread; a single benchmark gets the options given, and its own --threads wins."""
    import torch

    from spokester_agents import cli

    calls = []
    monkeypatch.setattr(cli, "_forward", lambda module, argv: calls.append((module, argv, torch.get_num_threads())))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(["bench"]) == 0
        assert calls == [("spokester_env.bench", ["--seconds", "2"], 1),
                         ("neural_render.bench", ["--framelets", "40", "--baseline-framelets", "6"], 1)]  # fmt: skip
        calls.clear()
        cli.main(["bench", "render", "--threads", "2", "--framelets", "3"])
        assert calls == [("neural_render.bench", ["--threads", "2", "--framelets", "3"], 1)]
    finally:
        torch.set_num_threads(threads)


def test_sigterm_during_record_exits_cleanly_and_leaves_nothing(tmp_path):
    """A `kill` (SIGTERM) is treated as Ctrl-C: one line, exit status 143, no `.ep000.mp4.*` temporaries."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "rec"
    child = subprocess.Popen(
        [sys.executable, "-m", "spokester_agents.cli", "record", "--out", str(out), "--size", "64", "--episodes", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists() and all(p.name.startswith(".ep000.") for p in out.iterdir())  # mid-episode
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143 and err.strip().splitlines()[-1] == "spokester record: terminated", err
    assert list(out.iterdir()) == []


def test_record_and_play_paint_the_look_asked_for_and_refuse_one_the_renderer_lacks(tiny_checkpoint, tmp_path):
    """(The untrained checkpoint's warning that it has no statistics aside, the refusal is one line.)"""
    options = ["--view", "neural", "--checkpoint", tiny_checkpoint, "--render-steps", 1]
    result = run_cli("record", *options, "--look", "any", "--out", tmp_path / "rec", "--max-steps", 2)
    assert result.returncode == 0, result.stderr
    for command in (["record", "--out", tmp_path / "bad", "--max-steps", 2], ["play", "--max-frames", 2]):
        result = run_cli(*command, *options, "--look", "highway")
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert result.returncode == 1 and "Traceback" not in result.stderr and len(errors) == 1
        assert errors[0].endswith("error: look 'highway': this renderer paints only 'any' (it has no looks)")
    assert not (tmp_path / "bad").exists()
