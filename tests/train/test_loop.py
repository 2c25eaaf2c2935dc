"""The training loop: overfitting, exact resume, atomic checkpoints, non-finite losses, iREPA, the CLI."""

import copy
import dataclasses
import json

import pytest
import torch

from neural_render import ConditionStats, FlowMatching, load_renderer
from neural_render.diffusion import DiffusionLoss
from train import state as train_state
from train.batches import ClipBatches, parse_video, prepare_caches
from train.config import Augment, Stage, TrainConfig, make_config
from train.loop import NonFiniteLoss, learning_rate, train
from train.state import CHECKPOINT, TrainingStateError, load_state, save_state
from train.train import main as train_main

SIZE = 32
TINY_NET = {"patch_size": 8, "width": 64, "depth": 2, "heads": 2}


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory, road_clip):
    """Caches of the first 12 and 9 frames of the road clip at 32 px, extracted once for every test."""
    root = tmp_path_factory.mktemp("cache")
    extractors = {"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}
    prepare_caches([f"{road_clip}@0:12", f"{road_clip}@0:9"], SIZE, cache_root=root, extractors=extractors, skips=(1,))
    return root


@pytest.fixture
def tiny_config(cache_root, road_clip, tmp_path):
    """A 2-block 32 px training run of a few steps on 12 road frames."""

    def make(**overrides) -> TrainConfig:
        base = TrainConfig(
            videos=(f"{road_clip}@0:12",),
            out=str(tmp_path / "run"),
            cache_root=str(cache_root),
            renderer_overrides=TINY_NET,
            stages=(Stage(steps=4, image_size=SIZE, clip_frames=4, batch_size=2),),
            skips=(1,),
            warmup_steps=2,
            log_every=1,
            checkpoint_every=2,
            eval_every=0,
            eval_frames=4,
            sample_steps=2,
            eval_cache_steps=(None,),
            game_stats_frames=8,
            progress=False,
            threads=1,
        )
        return dataclasses.replace(base, **overrides)

    return make


def _fixed_loss(model, stats, cache_dir, video) -> float:
    """Velocity loss of a model on every clip of a cache at fixed times and noise (no sampling noise)."""
    batches = ClipBatches([cache_dir], [video], stats, clip_frames=4, skips=(1,), seed=0, teacher=False)
    batch = batches.next(len(batches.datasets[0]), "cpu")
    generator = torch.Generator().manual_seed(0)
    b, n = batch["x"].shape[0], 2
    t = torch.linspace(0.1, 0.8, b * n).reshape(b, n)
    noise = torch.randn(batch["x"].shape, generator=generator)
    with torch.no_grad():
        return (
            FlowMatching.for_config(model.config).loss(model, batch["x"], batch["cond"], t=t, noise=noise).loss.item()
        )


def test_few_step_overfit_halves_the_loss_on_a_tiny_clip(tiny_config, cache_root, road_clip):
    """80 steps on 9 frames bring the fixed-time velocity loss of the EMA below half its initial value."""
    video = f"{road_clip}@0:9"
    config = tiny_config(
        videos=(video,),
        stages=(Stage(steps=80, image_size=SIZE, clip_frames=4, batch_size=4),),
        lr=3e-3,
        warmup_steps=5,
        ema_decay=0.9,
        uncond_prob=0.0,
        augment=Augment(prob=0.0),
        checkpoint_every=80,
    )
    result = train(config)
    loaded = load_renderer(result.renderer)
    cache_dir = prepare_caches([video], SIZE, cache_root=cache_root, extractors=config.extractors, skips=(1,))[0]
    untrained = copy.deepcopy(loaded.model)
    after = _fixed_loss(loaded.model, loaded.stats, cache_dir, video)
    with torch.no_grad():
        for param in untrained.final_layer.linear.parameters():  # the initial network predicts exactly 0
            param.zero_()
    before = _fixed_loss(untrained, loaded.stats, cache_dir, video)
    assert after < 0.5 * before, (before, after)
    assert loaded.provenance["steps"] == 80 and loaded.provenance["data"][0]["frames"] == 9
    assert set(loaded.stats.sources) == {"game", "video", "video/road_clip"}


def _losses(history):
    return [(h["step"], h["loss"]) for h in history]


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch):
    whole = train(tiny_config(out=str(tmp_path / "whole")))

    calls = {"n": 0}
    real_loss = FlowMatching.loss

    def killed_at_step_3(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill after the step-2 checkpoint
        return real_loss(self, *args, **kwargs)

    config = tiny_config(out=str(tmp_path / "split"))
    with monkeypatch.context() as patch:
        patch.setattr(FlowMatching, "loss", killed_at_step_3)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    assert load_state(tmp_path / "split" / CHECKPOINT)["step"] == 2
    resumed = train(config, resume=True)
    assert _losses(resumed.history) == _losses(whole.history)[2:]  # bit-for-bit the same floats
    lines = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    logged = [record["step"] for record in map(json.loads, lines) if "loss" in record]
    assert logged == [1, 2, 3, 4]  # the killed run's lines after its checkpoint are dropped on resume


def test_resume_refuses_a_changed_recipe(tiny_config):
    train(tiny_config(stages=(Stage(steps=2, image_size=SIZE, clip_frames=4, batch_size=2),)))
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(lr=1e-2), resume=True)
    with pytest.raises(ValueError, match="already holds a training checkpoint"):
        train(tiny_config())


def test_interrupted_checkpoint_write_leaves_the_previous_checkpoint(tiny_config, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = torch.save

    def crash_during_second_write(obj, file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            file.write(b"half a checkpoint")
            raise OSError("disk full (simulated)")
        return real_save(obj, file, *args, **kwargs)

    config = tiny_config()
    with monkeypatch.context() as patch:
        patch.setattr(train_state.torch, "save", crash_during_second_write)
        with pytest.raises(OSError, match="simulated"):
            train(config)
    run = tmp_path / "run"
    assert load_state(run / CHECKPOINT)["step"] == 2
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    assert train(config, resume=True).step == 4


def test_a_damaged_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingStateError, match=str(path)) as error:
        load_state(path)
    assert "\n" not in str(error.value)
    save_state(path, {"step": 7, "config": {}})
    assert load_state(path)["step"] == 7


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_config, monkeypatch):
    calls = {"n": 0}
    real_loss = FlowMatching.loss

    def nan_at_step_3(self, *args, **kwargs):
        calls["n"] += 1
        out = real_loss(self, *args, **kwargs)
        return DiffusionLoss(out.loss * float("nan"), out.t, out.hidden) if calls["n"] == 3 else out

    monkeypatch.setattr(FlowMatching, "loss", nan_at_step_3)
    with pytest.raises(NonFiniteLoss, match=r"at step 3 .*last checkpoint: step 2"):
        train(tiny_config())


def test_irepa_flag_changes_the_loss_composition(tiny_config, tmp_path):
    stages = (Stage(steps=1, image_size=SIZE, clip_frames=4, batch_size=2),)
    on = train(tiny_config(out=str(tmp_path / "on"), stages=stages, irepa_weight=0.5)).history[0]
    off = train(tiny_config(out=str(tmp_path / "off"), stages=stages, irepa=False)).history[0]
    assert 0.0 < on["irepa"] <= 2.0
    assert on["loss"] == pytest.approx(on["diffusion"] + 0.5 * on["irepa"], rel=1e-6)
    assert "irepa" not in off and off["loss"] == off["diffusion"]
    # the diffusion term does not depend on the flag: same weights, clips, times and noise
    assert on["diffusion"] == off["diffusion"]


def test_learning_rate_warms_up_holds_and_cools_down():
    config = TrainConfig(lr=1.0, warmup_steps=10, cooldown_fraction=0.2, final_lr_fraction=0.05).with_total_steps(100)
    rates = [learning_rate(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == 1.0 and rates[50] == 1.0 and rates[79] == 1.0
    assert rates[80] < 1.0 and rates[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))


def test_curriculum_is_cut_and_stretched_to_the_asked_steps():
    config = make_config("gpu-base")
    assert [s.image_size for s in config.stages] == [224, 320]
    assert [(s.clip_frames, s.batch_size) for s in config.stages] == [(16, 64), (256, 4)]
    cut = config.with_total_steps(100)
    assert [s.steps for s in cut.stages] == [100] and cut.total_steps == 100
    stretched = config.with_total_steps(config.stages[0].steps + 5)
    assert [s.steps for s in stretched.stages] == [config.stages[0].steps, 5]


def test_balanced_batches_draw_every_video_equally(cache_root, road_clip):
    """Caches of 12 and 9 frames hold 5 and 4 clips of 2 frames; balanced, each gives 4 (the mean, rounded)."""
    from train.cache import video_source_stats

    videos = [f"{road_clip}@0:12", f"{road_clip}@0:9"]
    kw = dict(cache_root=cache_root, extractors={"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}, skips=(1,))
    caches = prepare_caches(videos, SIZE, progress=False, **kw)
    stats = ConditionStats(sources={"video/road_clip": video_source_stats(caches[0], (1,), sky_to_zero=True)})
    plain = ClipBatches(caches, videos, stats, clip_frames=2, skips=(1,), seed=0, teacher=False)
    assert [len(d) for d in plain.datasets] == [5, 4] and plain.offsets[-1] == 9
    balanced = ClipBatches(caches, videos, stats, 2, (1,), 0, False, sky_to_zero=True, balance=True)
    assert [len(d) for d in balanced.datasets] == [4, 4] and balanced.offsets[-1] == 8
    assert sorted(int(i >= 4) for i in balanced._order) == [0] * 4 + [1] * 4
    batch = balanced.next(8, "cpu")  # one epoch; the sky sits at the depth floor, far below the mean
    assert batch["cond"].shape == (8, 2, SIZE, SIZE, 3) and float(batch["cond"][..., 0].min()) < -1.0


def test_sky_to_zero_needs_the_deeplab_teacher():
    with pytest.raises(ValueError, match="sky_to_zero=True needs the deeplab teacher"):
        TrainConfig(extractors={"flow": "dis", "depth": "pydnet", "teacher": "dinov2"}, irepa=True)
    assert not TrainConfig(extractors={"flow": "dis", "depth": "pydnet"}, irepa=False, sky_to_zero=False).sky_to_zero


def test_parse_video_reads_start_and_end():
    assert parse_video("a/b.mp4") == parse_video("a/b.mp4@0")
    spec = parse_video("a/b.mp4@150:300")
    assert (spec.start, spec.frames, spec.name) == (150, 150, "b")
    with pytest.raises(ValueError, match="PATH@START"):
        parse_video("a/b.mp4@x")


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--preset", "huge", "--out", "x", "--video", "v.mp4"], "cpu-tiny"),
        (["--out", "x", "--video", "v.mp4", "--steps", "0"], "--steps"),
        (["--out", "x"], "--video"),
    ],
)
def test_train_command_bad_arguments_are_one_line(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and err.count("\n") == 1


def test_train_command_missing_video_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--out", str(tmp_path / "run"), "--video", str(tmp_path / "missing.mp4"), "--no-progress"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "missing.mp4" in err and err.count("\n") == 1


def test_train_command_resumes_a_run_with_more_steps(tiny_config, tmp_path, capsys):
    train(tiny_config(stages=(Stage(steps=2, image_size=SIZE, clip_frames=4, batch_size=2),)))
    log = tmp_path / "run" / "log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:  # pretend the first part took 1000 s, and a third step that the checkpoint lacks
        if line.get("step") == 2 and "elapsed_s" in line:
            line["elapsed_s"] = 1000.0
    lines.append({"step": 3, "loss": 1.0, "elapsed_s": 5000.0})
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = train_main(["--out", str(tmp_path / "run"), "--resume", "--steps", "3", "--no-progress"])
    assert result.step == 3 and [h["step"] for h in result.history] == [3]
    assert load_state(tmp_path / "run" / CHECKPOINT)["config"]["stages"][0]["steps"] == 3
    provenance = load_renderer(result.renderer).provenance
    assert provenance["resumed_at_steps"] == [2]  # the run's wall time goes on from its log at step 2
    assert 1000.0 <= provenance["train_wall_s"] < 1500.0


def test_batches_decode_on_the_device_what_the_clips_decode_on_the_host(cache_root, road_clip, tmp_path):
    """A batch gathered as stored and decoded at the end equals each clip decoded by `CachedClips`
    (uint8 frames to [-1, 1], depth and flow normalised with that video's own statistics, teacher codes
    dequantised), across two videos with different statistics."""
    import shutil

    from neural_render.layout import from_uint8
    from train.cache import video_source_stats

    other = tmp_path / "other_road.mp4"
    shutil.copy(road_clip, other)
    videos = [f"{road_clip}@0:12", f"{other}@3:12"]
    kw = dict(cache_root=cache_root, extractors={"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}, skips=(1,))
    caches = prepare_caches(videos, SIZE, progress=False, **kw)
    sources = ["video/road_clip", "video/other_road"]
    parts = [video_source_stats(cache, (1,), sky_to_zero=True) for cache in caches]
    assert parts[0].depth_mean != parts[1].depth_mean  # different frames, different statistics
    stats = ConditionStats(sources=dict(zip(sources, parts, strict=True)))
    batches = ClipBatches(caches, videos, stats, 2, (1,), seed=3, teacher=True, sky_to_zero=True)
    order = [int(i) for i in batches._order[:8]]
    assert {int(i >= batches.offsets[1]) for i in order} == {0, 1}  # both videos in the batch
    batch = batches.next(8, "cpu")
    for row, index in enumerate(order):
        video = int(index >= batches.offsets[1])
        clip = batches.datasets[video][index - int(batches.offsets[video])]
        torch.testing.assert_close(batch["x"][row], from_uint8(clip["frames"]))
        torch.testing.assert_close(batch["cond"][row], stats.normalize(clip["depth"], clip["flow"], sources[video]))
        torch.testing.assert_close(batch["teacher"][row], clip["teacher"])
    assert batch["teacher"].dtype == torch.float32 and float(batch["teacher"].std()) > 0


def test_loader_workers_give_the_same_batches_and_resume_exactly(cache_root, road_clip):
    """With DataLoader workers running ahead, the batches (across an epoch boundary) and the saved state
    are those of the synchronous path, and a resumed loader continues with the same next batch."""
    from train.cache import video_source_stats

    videos = [f"{road_clip}@0:12", f"{road_clip}@0:9"]
    kw = dict(cache_root=cache_root, extractors={"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}, skips=(1,))
    caches = prepare_caches(videos, SIZE, progress=False, **kw)
    stats = ConditionStats(sources={"video/road_clip": video_source_stats(caches[0], (1,), sky_to_zero=True)})

    def make(workers):
        return ClipBatches(caches, videos, stats, 2, (1,), 5, True, sky_to_zero=True, workers=workers)

    plain = make(0)
    assert plain.offsets[-1] == 9  # 3 batches of 4 cross into the second epoch
    with make(2) as ahead:
        for _ in range(3):
            expected, got = plain.next(4, "cpu"), ahead.next(4, "cpu")
            for key in ("x", "cond", "teacher"):
                torch.testing.assert_close(got[key], expected[key])
            assert ahead.state() == plain.state()
        state = ahead.state()
    assert state == {"epoch": 1, "cursor": 3} and ahead._loader is None
    with make(2) as resumed:
        resumed.load_state(state)
        torch.testing.assert_close(resumed.next(4, "cpu")["x"], plain.next(4, "cpu")["x"])
    with pytest.raises(ValueError, match="workers=-1: must be >= 0"):
        make(-1)



def test_loader_workers_reach_the_config_from_the_command_line_and_preset():
    from train.train import build_config, parse_args

    assert make_config("gpu-base").loader_workers == 8 and make_config("cpu-tiny").loader_workers == 0
    args = parse_args(["--preset", "cpu-tiny", "--video", "v.mp4", "--out", "o", "--workers", "3"])
    assert build_config(args).loader_workers == 3
    with pytest.raises(ValueError, match="loader_workers=-2: must be >= 0"):
        make_config("cpu-tiny", loader_workers=-2)


def test_training_with_loader_workers_takes_the_same_steps(tiny_config, tmp_path):
    plain = train(tiny_config(out=str(tmp_path / "plain")))
    ahead = train(tiny_config(out=str(tmp_path / "ahead"), loader_workers=1))
    assert len(plain.history) == 4
    assert [r["loss"] for r in ahead.history] == pytest.approx([r["loss"] for r in plain.history], rel=1e-6)
