"""The training loop: overfitting, exact resume, atomic checkpoints, non-finite losses, iREPA, loader workers."""

import copy
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render import FlowMatching, load_renderer
from neural_render.diffusion import DiffusionLoss
from spokester_train.data.batches import ClipBatches
from spokester_train.data.video_depth import SLABS_FILE
from spokester_train.evaluation.evaluate import video_flags
from spokester_train.recipe import checkpoint as training_checkpoint
from spokester_train.recipe import loop
from spokester_train.recipe.checkpoint import CHECKPOINT, load_state
from spokester_train.recipe.config import Augment, Stage
from spokester_train.recipe.loop import NonFiniteLoss, train
from spokester_train.recipe.setup import Networks, init_from_choices, prepare_stores


def _fixed_loss(model, stats, store) -> float:
    """Velocity loss of a model on every clip of a label store at fixed times and noise (no sampling noise)."""
    batches = ClipBatches([store], ["video/road_clip"], stats, clip_frames=4, skips=(1,), seed=0, teacher=False)
    batch = batches.next(len(batches.datasets[0]), "cpu")
    generator = torch.Generator().manual_seed(0)
    b, n = batch["x"].shape[0], 2
    t = torch.linspace(0.1, 0.8, b * n).reshape(b, n)
    noise = torch.randn(batch["x"].shape, generator=generator)
    with torch.no_grad():
        return (
            FlowMatching.for_config(model.config).loss(model, batch["x"], batch["cond"], t=t, noise=noise).loss.item()
        )


def _losses(history):
    return [(h["step"], h["loss"]) for h in history]


def test_few_step_overfit_halves_the_loss_on_a_tiny_clip(tiny_config, road_clip):
    """80 steps on 9 frames bring the fixed-time velocity loss of the EMA below half its initial value."""
    video = f"{road_clip}@0:9"
    config = tiny_config(
        videos=(video,),
        stages=(Stage(steps=80, image_size=tiny_config.size, clip_frames=4, batch_size=4),),
        lr=3e-3,
        warmup_steps=5,
        ema_decay=0.9,
        uncond_prob=0.0,
        augment=Augment(prob=0.0),
        checkpoint_every=80,
    )
    result = train(config)
    loaded = load_renderer(result.renderer)
    store = prepare_stores([video], tiny_config.size, config)[0]
    untrained = copy.deepcopy(loaded.model)
    after = _fixed_loss(loaded.model, loaded.stats, store)
    with torch.no_grad():
        for param in untrained.final_layer.linear.parameters():  # the initial network predicts exactly 0
            param.zero_()
    before = _fixed_loss(untrained, loaded.stats, store)
    assert after < 0.5 * before, (before, after)
    assert loaded.provenance["steps"] == 80 and loaded.provenance["data"][0]["frames"] == 9
    assert set(loaded.stats.sources) == {"game", "game/follow", "game/first_person", "video", "video/road_clip"}
    assert (
        loaded.game == {"camera": "follow", "scene": "city"}
        and loaded.game_source("first_person") == "game/first_person"
    )
    assert loaded.stats.sources["game"] == loaded.stats.sources["game/follow"]
    assert loaded.stats.sources["game/first_person"] != loaded.stats.sources["game/follow"]  # fitted per camera


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
    train(tiny_config(stages=(Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)))
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
        patch.setattr(training_checkpoint.torch, "save", crash_during_second_write)
        with pytest.raises(OSError, match="simulated"):
            train(config)
    run = tmp_path / "run"
    assert load_state(run / CHECKPOINT)["step"] == 2
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    assert train(config, resume=True).step == 4


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
    stages = (Stage(steps=1, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    on = train(tiny_config(out=str(tmp_path / "on"), stages=stages, irepa_weight=0.5)).history[0]
    off = train(tiny_config(out=str(tmp_path / "off"), stages=stages, irepa=False)).history[0]
    assert 0.0 < on["irepa"] <= 2.0
    assert on["loss"] == pytest.approx(on["diffusion"] + 0.5 * on["irepa"], rel=1e-6)
    assert "irepa" not in off and off["loss"] == off["diffusion"]
    # the diffusion term does not depend on the flag: same weights, clips, times and noise
    assert on["diffusion"] == off["diffusion"]


def test_training_with_loader_workers_takes_the_same_steps(tiny_config, tmp_path):
    plain = train(tiny_config(out=str(tmp_path / "plain")))
    ahead = train(tiny_config(out=str(tmp_path / "ahead"), loader_workers=1))
    assert len(plain.history) == 4
    assert [r["loss"] for r in ahead.history] == pytest.approx([r["loss"] for r in plain.history], rel=1e-6)


def test_a_time_budget_ends_the_run_with_a_checkpoint_and_an_export(tiny_config, tmp_path):
    """Past `max_minutes` the run stops after the step it is on, saved and exported as at its last step;
    a resume with a larger budget goes on from there."""
    result = train(tiny_config(max_minutes=1e-9))
    assert result.step == 1 and [h["step"] for h in result.history] == [1]
    assert load_state(tmp_path / "run" / CHECKPOINT)["step"] == 1
    assert load_renderer(result.renderer).provenance["steps"] == 1
    assert train(tiny_config(max_minutes=60.0), resume=True).step == 4
    with pytest.raises(ValueError, match="max_minutes=0: must be > 0"):
        tiny_config(max_minutes=0)


@pytest.mark.parametrize(
    "where, failure",
    [
        ("save_renderer", KeyboardInterrupt()),
        ("save_renderer", OSError(28, "No space left on device")),
        ("run_evaluation", KeyboardInterrupt()),
    ],  # fmt: skip
    ids=["kill-during-export", "full-disk-during-export", "kill-during-evaluation"],
)
def test_a_resume_finishes_what_the_last_step_did_not(tiny_config, tmp_path, monkeypatch, where, failure):
    """Killed (or out of disk) after the last training checkpoint, during the final export or evaluation: the
    resume has no step left to train, yet exports and evaluates the last step."""
    real = getattr(loop, where)

    def fails_at_the_last_step(*args, **kwargs):
        if load_state(tmp_path / "run" / CHECKPOINT)["step"] == 4:
            raise failure
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loop, where, fails_at_the_last_step)
        with pytest.raises(type(failure)):
            train(tiny_config())
    run = tmp_path / "run"
    assert load_state(run / CHECKPOINT)["step"] == 4
    assert load_renderer(run / "renderer.safetensors").provenance["steps"] == 2  # the step-2 export
    assert (run / "eval" / "step_000004.json").exists() == (where == "save_renderer")  # evaluation comes first
    resumed = train(tiny_config(), resume=True)
    assert resumed.step == 4 and resumed.history == []  # nothing left to train
    assert load_renderer(resumed.renderer).provenance["steps"] == 4
    assert json.loads((run / "eval" / "step_000004.json").read_text())["step"] == 4
    evaluations = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "eval" in r]
    assert evaluations == [4]
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_resuming_weights_of_another_network_is_one_line_naming_both(tiny_config, tmp_path):
    train(tiny_config(stages=(Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)))
    path = tmp_path / "run" / CHECKPOINT
    state = load_state(path)
    state["config"]["renderer_preset"] = "tiny-head"  # e.g. a preset whose definition changed since
    training_checkpoint.save_state(path, state)
    config = tiny_config(stages=(Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),),
                         renderer_preset="tiny-head")  # fmt: skip
    with pytest.raises(ValueError) as error:
        train(config, resume=True)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: its weights (2 blocks of width 64, no pixel head")
    assert "renderer preset 'tiny-head' (2 blocks of width 64, a pixel head" in message


def test_a_run_started_from_a_renderer_holds_its_weights_and_records_where_they_came_from(tiny_config, tmp_path):
    """`init_from`: the network and its EMA start as the renderer's (not as seeded weights); the exported renderer
    records that file as it was when the run began, even after the file changes and the run is resumed."""
    first = train(tiny_config(out=str(tmp_path / "first")))
    start = load_renderer(first.renderer)
    record = {
        "file": "renderer.safetensors",
        "bytes": first.renderer.stat().st_size,
        "sha256": hashlib.sha256(first.renderer.read_bytes()).hexdigest(),
        "checkpoint_id": start.checkpoint_id,
        "steps": 4,
        "train_wall_s": start.provenance["train_wall_s"],
    }
    two = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    config = tiny_config(out=str(tmp_path / "tuned"), init_from=str(first.renderer), stages=two)
    nets, seeded = Networks.build(config, torch.device("cpu")), Networks.build(tiny_config(), torch.device("cpu"))
    for name, tensor in start.model.state_dict().items():
        assert torch.equal(nets.model.state_dict()[name], tensor) and torch.equal(nets.ema.state_dict()[name], tensor)
    assert not torch.equal(seeded.model.x_embedder.weight, start.model.x_embedder.weight)
    assert nets.origin == record and seeded.origin is None

    tuned = train(config)
    provenance = load_renderer(tuned.renderer).provenance
    assert provenance["init_from"] == record and "init_from" not in provenance["train_config"]
    card = (tmp_path / "tuned" / "renderer.card.md").read_text()
    assert (
        f"starting from the weights of `renderer.safetensors` (checkpoint id `{start.checkpoint_id}`, 4 steps" in card
    )
    assert "--init-from renderer.safetensors" in card

    five = (Stage(steps=5, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    train(tiny_config(out=str(tmp_path / "first"), stages=five), resume=True)  # another renderer in that file...
    assert load_renderer(first.renderer).checkpoint_id != start.checkpoint_id
    three = (Stage(steps=3, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    resumed = train(tiny_config(out=str(tmp_path / "tuned"), init_from=str(first.renderer), stages=three), resume=True)
    assert resumed.step == 3 and load_renderer(resumed.renderer).provenance["init_from"] == record  # ...not this one's


def test_starting_from_a_renderer_of_another_network_is_one_line_naming_both(tiny_config, tmp_path):
    first = train(tiny_config(out=str(tmp_path / "first")))
    wider = tiny_config(out=str(tmp_path / "wider"), init_from=str(first.renderer),
                        renderer_overrides={**tiny_config.base.renderer_overrides, "width": 32})  # fmt: skip
    with pytest.raises(ValueError) as error:
        train(wider)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{first.renderer}: its weights (2 blocks of width 64")
    assert "(2 blocks of width 32, no pixel head" in message
    assert not (tmp_path / "wider" / CHECKPOINT).exists()


def test_a_run_that_reads_the_sky_at_clip_says_so_in_every_source_and_its_evaluation_follows(tiny_config, tmp_path):
    """sky_at_clip flags every fitted source (the game's and each video's): the exported renderer reads the
    sky so in the game, and evaluation fits a held-out clip with the same flag."""
    two = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    run = train(tiny_config(out=str(tmp_path / "sky"), stages=two, sky_at_clip=True, evaluate=False))
    stats = load_renderer(run.renderer).stats
    assert len(stats.sources) >= 3 and all(source.sky_at_clip for source in stats.sources.values())
    assert video_flags(stats)["sky_at_clip"]
    plain = train(tiny_config(out=str(tmp_path / "plain"), stages=two, evaluate=False))
    plain_stats = load_renderer(plain.renderer).stats
    assert not any(source.sky_at_clip for source in plain_stats.sources.values())
    for name, source in plain_stats.sources.items():  # the same statistics: only the flag differs
        assert dataclasses.replace(source, sky_at_clip=True) == stats.source(name)


def test_a_run_with_car_slabs_reads_every_videos_cars_as_slabs_and_its_evaluation_follows(tiny_config, tmp_path):
    """car_slabs flags each video's source (fitted on the slabbed depth), not the game's (its cars are boxes), and
    evaluation reads a held-out clip's cars so too."""
    two = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    run = train(tiny_config(out=str(tmp_path / "slabs"), stages=two, car_slabs=True, evaluate=False))
    stats = load_renderer(run.renderer).stats
    videos = {name: source for name, source in stats.sources.items() if name.startswith("video")}
    assert videos and all(source.car_slabs for source in videos.values()) and not stats.source("game").car_slabs
    assert video_flags(stats)["car_slabs"] and not video_flags(stats)["sky_at_clip"]
    assert load_state(f"{run.out}/{CHECKPOINT}")["config"]["car_slabs"] is True


def test_a_run_with_car_masks_starts_from_a_renderer_without_one_as_it_and_feeds_the_masks(tiny_config, tmp_path):
    """car_masks: the network gets a fourth condition channel whose weights start at zero on top of the renderer it
    starts from (channels innermost in a token), every clip's condition ends with its car mask, and the export
    wants cars when it paints; the car weights learn where the clips have cars."""
    first = train(tiny_config(out=str(tmp_path / "first"), evaluate=False))
    start = load_renderer(first.renderer).model
    labels = shutil.copytree(tiny_config().label_root, tmp_path / "labels")  # the road clip has no car: give it one
    [store] = prepare_stores(tiny_config().videos[:1], tiny_config.size, tiny_config(label_root=str(labels)))
    slabs = np.zeros((store.n_frames, tiny_config.size, tiny_config.size), np.float16)
    slabs[:, 10:16, 4:12] = 0.5  # a car on every frame
    np.save(store.dir / SLABS_FILE, slabs)
    two = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    config = tiny_config(out=str(tmp_path / "cars"), init_from=str(first.renderer), stages=two, car_masks=True,
                         label_root=str(labels), evaluate=False)  # fmt: skip
    nets = Networks.build(config, torch.device("cpu"))
    width = start.config.width
    adopted = nets.model.cond_embedder.weight.detach().view(width, -1, 4)
    torch.testing.assert_close(adopted[..., :3], start.cond_embedder.weight.detach().view(width, -1, 3))
    assert adopted[..., 3].abs().max() == 0
    run = train(config)
    exported = load_renderer(run.renderer)
    assert exported.model.config.cond_channels == 4 and exported.model.config.wants_cars
    assert exported.model.cond_embedder.weight.detach().view(width, -1, 4)[..., 3].abs().max() > 0  # it learnt
    batches = ClipBatches([store], ["video/road_clip"], exported.stats, 4, (1,), 0, False, car_masks=True)
    mask = batches.next(2, "cpu")["cond"][..., 3]  # (b, t, s, s)
    expected = torch.zeros(mask.shape)
    expected[..., 10:16, 4:12] = 4.0  # the clip on a car, 0 elsewhere
    torch.testing.assert_close(mask, expected)


def test_a_run_with_looks_learns_one_per_video_from_zero_and_a_dropped_look_learns_nothing(tiny_config, tmp_path):
    """`looks`: the network gets one look per training video (named by its stem), starting at zero on top of the
    renderer it starts from; the trained look moves, and with every clip's look dropped it stays exactly zero."""
    first = train(tiny_config(out=str(tmp_path / "first"), evaluate=False))
    start = load_renderer(first.renderer)
    video = tiny_config.base.videos[0].split("@")[0]
    two = (Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)
    config = tiny_config(out=str(tmp_path / "looks"), init_from=str(first.renderer), stages=two, looks=True,
                         look_drop=0.0, evaluate=False)  # fmt: skip
    nets = Networks.build(config, torch.device("cpu"))
    stem = Path(video).stem
    assert nets.model.config.looks == (stem,) and not nets.model.look_embedding.any()
    for name, tensor in start.model.state_dict().items():
        assert torch.equal(nets.model.state_dict()[name], tensor)
    looked = load_renderer(train(config).renderer)
    assert looked.model.config.looks == (stem,) and looked.look == "any"
    assert looked.model.look_embedding.abs().sum() > 0
    assert init_from_choices(looked.path)["looks"] is True and init_from_choices(first.renderer)["looks"] is False
    dropped = tiny_config(out=str(tmp_path / "dropped"), init_from=str(first.renderer), stages=two, looks=True,
                          look_drop=1.0, evaluate=False)  # fmt: skip
    assert not load_renderer(train(dropped).renderer).model.look_embedding.any()
