"""Training under torchrun (DistributedDataParallel, gloo, 2 CPU processes) against one process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neural_render import load_renderer
from spokester_train.data.batches import batch_share
from spokester_train.recipe.checkpoint import CHECKPOINT, load_state
from spokester_train.recipe.config import Stage

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(config, processes: int, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node PROCESSES ddp_worker.py CONFIG [extra]` (one plain process for 1)."""
    path = Path(config.out).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict()))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), str(WORKER), str(path), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def _losses(out: str | Path) -> dict[int, float]:
    lines = map(json.loads, (Path(out) / "log.jsonl").read_text().splitlines())
    return {record["step"]: record["loss"] for record in lines if "loss" in record}


def _files(out: str | Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*") if p.is_file())


@pytest.fixture
def config(tiny_config, tmp_path):
    """4 steps of batch 4 (2 clips per process under 2 processes), a checkpoint every 2 steps."""
    stages = (Stage(steps=4, image_size=tiny_config.size, clip_frames=4, batch_size=4),)
    return lambda name: tiny_config(out=str(tmp_path / name), stages=stages)


def test_batch_shares_cover_the_batch_once():
    assert [batch_share(4, r, 2) for r in range(2)] == [range(0, 2), range(2, 4)]
    assert [batch_share(5, r, 2) for r in range(2)] == [range(0, 3), range(3, 5)]  # the first gets the extra
    assert [len(batch_share(7, r, 3)) for r in range(3)] == [3, 2, 2]


def test_two_processes_train_as_one_with_their_batch_and_only_process_0_writes(config):
    one, two = config("one"), config("two")
    _run(one, 1)
    done = _run(two, 2)
    assert done.stdout == ""  # neither process prints (the run is quiet without a progress bar)
    steps_one, steps_two = _losses(one.out), _losses(two.out)
    assert sorted(steps_two) == [1, 2, 3, 4]
    for step in steps_one:  # the same clips, the same random draws: the same loss up to float rounding
        assert steps_two[step] == pytest.approx(steps_one[step], rel=1e-4), step
    assert len({round(v, 6) for v in steps_one.values()}) == 4  # the losses do change from step to step
    assert _files(two.out) == _files(one.out)  # process 1 wrote nothing of its own
    a, b = load_renderer(Path(one.out) / "renderer"), load_renderer(Path(two.out) / "renderer")
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5, msg=name)
    assert load_state(Path(two.out) / CHECKPOINT)["world_size"] == 2


def test_a_killed_two_process_run_resumes_with_two_or_with_one(config):
    """kill -9 of process 0 at step 3 (after the step-2 checkpoint) ends both; resumed with 2 processes it
    gives the uninterrupted run's losses exactly, and with 1 process (the stated rule: any number resumes)
    the same within float rounding."""
    whole = config("whole")
    _run(whole, 2)
    expected = _losses(whole.out)
    for processes in (2, 1):
        killed = config(f"killed{processes}")
        done = _run(killed, 2, "--kill-at-step", "3", check=False)
        assert done.returncode != 0
        assert load_state(Path(killed.out) / CHECKPOINT)["step"] == 2
        _run(killed, processes, "--resume")
        resumed = _losses(killed.out)
        assert sorted(resumed) == [1, 2, 3, 4]
        for step in (3, 4):
            if processes == 2:
                assert resumed[step] == expected[step]
            else:
                assert resumed[step] == pytest.approx(expected[step], rel=1e-4)


def test_a_bad_video_stops_both_processes_with_its_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launcher, "-m", "spokester_train", "--video", str(bad), "--out", str(tmp_path / "run"),
               "--labels", str(tmp_path / "labels"), "--no-progress"]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("python -m spokester_train: error:")]
    assert len(errors) == 1 and str(bad) in errors[0], done.stderr[-3000:]
    assert not any(line.startswith("[rank") for line in done.stderr.splitlines())  # no traceback of the other
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_the_step_benchmark_under_torchrun_reports_each_process_the_total_and_the_efficiency():
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launcher, "-m", "spokester_train.recipe.bench", "--steps", "2", "--warmup", "0", "--size", "32",
               "--clip-frames", "2", "--batch", "3", "--no-irepa", "--threads", "1"]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[1].endswith("[one process]")  # printed once, by process 0
    assert re.fullmatch(
        r"  torchrun, 2 processes: +[\d.]+ ms/step, steps/s per process \[[\d.]+ [\d.]+\], total [\d.]+ steps/s = "
        r"[\d.]+ clips/s; scaling efficiency \d+%",
        lines[2],
    ), lines[2]


def test_a_stage_whose_batch_is_smaller_than_the_processes_is_refused_after_a_checkpoint(tiny_config, tmp_path):
    """Stage 0 (batch 4) trains on 2 processes; stage 1 (batch 1) is refused in one line as the run enters it,
    after the checkpoint that ends stage 0, and one process resumes it."""
    stages = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=4),
              Stage(steps=1, image_size=tiny_config.size, clip_frames=4, batch_size=1))  # fmt: skip
    config = tiny_config(out=str(tmp_path / "run"), stages=stages, checkpoint_every=100)
    done = _run(config, 2, check=False)
    errors = [line for line in done.stderr.splitlines() if "smaller than" in line]
    assert done.returncode != 0 and len(errors) == 1, done.stderr[-3000:]
    assert "stage 1's batch of 1 clips is smaller than the 2 processes; resume with --nproc_per_node 1" in errors[0]
    assert load_state(Path(config.out) / CHECKPOINT)["step"] == 2
    _run(config, 1, "--resume")
    assert sorted(_losses(config.out)) == [1, 2, 3]
