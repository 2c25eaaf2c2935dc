"""Checkpoints: exact round trip, atomic writes, and a one-line error naming the file for each fault."""

import dataclasses
import json

import pytest
import torch

from neural_render import ConditionSource, ConditionStats, build_renderer, load_renderer, save_renderer
from neural_render.checkpoint import DEFAULT_CHECKPOINT, CheckpointError

from .conftest import randomize


@pytest.fixture
def saved(tmp_path):
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=2))
    stats = ConditionStats.unit("game")
    weights = save_renderer(tmp_path / "ckpt", model, stats=stats, provenance={"steps": 3, "data": "test"})
    return model, stats, weights, tmp_path / "ckpt.json"


def _inputs():
    generator = torch.Generator().manual_seed(0)
    x, cond = (torch.randn(1, 4, 32, 32, 3, generator=generator) for _ in range(2))
    return x, torch.rand(1, 2, generator=generator), cond


def test_round_trip_gives_identical_outputs(saved):
    model, stats, weights, _ = saved
    loaded = load_renderer(weights)
    assert loaded.model.config == model.config and loaded.stats == stats
    assert loaded.provenance == {"steps": 3, "data": "test"} and loaded.preset is None  # not the tiny preset
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)


def test_preset_label_and_loading_by_either_file_name(tmp_path):
    save_renderer(tmp_path / "t.safetensors", build_renderer("tiny"))
    assert load_renderer(tmp_path / "t.json").preset == "tiny"
    assert load_renderer(tmp_path / "t").stats is None


def _error(path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_renderer(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_files(saved, tmp_path):
    _, _, weights, meta = saved
    assert _error(tmp_path / "nope.safetensors") == f"{tmp_path / 'nope.safetensors'}: no such file"
    meta.unlink()
    assert _error(weights).startswith(f"{meta}: no such file")


def test_corrupt_files(saved):
    _, _, weights, meta = saved
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    assert _error(weights).startswith(f"{meta}: corrupt JSON")
    meta.write_text(text)
    weights.write_bytes(weights.read_bytes()[:100])
    assert _error(weights).startswith(f"{weights}: corrupt safetensors file")


def test_shape_mismatch(saved):
    _, _, weights, meta = saved
    info = json.loads(meta.read_text())
    info["config"]["width"] = 128
    meta.write_text(json.dumps(info))
    message = _error(weights)
    assert message.startswith(f"{weights}: tensor ") and "has shape" in message and "needs" in message


def test_unknown_preset(saved):
    _, _, weights, meta = saved
    info = json.loads(meta.read_text())
    info["config"], info["preset"] = None, "huge"
    meta.write_text(json.dumps(info))
    assert (
        _error(weights) == f"{meta}: no config and unknown preset 'huge' (known: tiny, tiny-head, tiny-p8, small, base)"
    )


def test_weights_and_json_of_different_saves(saved, tmp_path):
    model, _, weights, meta = saved
    save_renderer(tmp_path / "other", model)
    meta.write_text((tmp_path / "other.json").read_text())
    assert _error(weights) == f"{weights}: these weights and ckpt.json come from different saves"


@pytest.mark.skipif(DEFAULT_CHECKPOINT.exists(), reason="a default checkpoint is shipped")
def test_default_checkpoint_not_shipped_yet():
    assert _error(None).startswith(f"{DEFAULT_CHECKPOINT}: no default renderer is shipped yet")


def test_interrupted_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    model, _, weights, _ = saved
    before = load_renderer(weights).model(*_inputs())

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr("neural_render.checkpoint.os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_renderer(weights, randomize(model, seed=5))
    monkeypatch.undo()
    torch.testing.assert_close(load_renderer(weights).model(*_inputs()), before, rtol=0, atol=0)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["ckpt.json", "ckpt.safetensors"]


def test_version_1_checkpoints_still_load(tmp_path):
    """Format version 1 named the block count `depth`, kept log_depth and clip once for all statistics and
    left sky_to_zero to its provenance's training config."""
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=2))
    video = ConditionSource(depth_floor=0.01, depth_mean=-3.0, depth_std=1.5, flow_mean=(0, 0), flow_std=(2, 1))
    stats = ConditionStats(sources={"game": ConditionSource.unit(), "video": video})
    weights = save_renderer(tmp_path / "old", model, stats, {"train_config": {"sky_to_zero": True}})
    meta = tmp_path / "old.json"
    info = json.loads(meta.read_text())
    assert info["version"] == 2 and info["config"]["num_blocks"] == 2
    info["version"] = 1
    info["config"]["depth"] = info["config"].pop("num_blocks")
    flags = ("log_depth", "sky_to_zero", "clip")
    sources = {
        name: {k: v for k, v in fields.items() if k not in flags} for name, fields in info["stats"]["sources"].items()
    }
    info["stats"] = {"log_depth": True, "clip": 4.0, "sources": sources}
    meta.write_text(json.dumps(info))
    loaded = load_renderer(weights)
    assert loaded.model.config == model.config and loaded.model.config.num_blocks == 2
    assert loaded.stats.sources["video"] == dataclasses.replace(video, sky_to_zero=True)
    assert not loaded.stats.sources["game"].sky_to_zero
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    info["version"] = 3
    meta.write_text(json.dumps(info))
    assert _error(weights) == f"{meta}: format version 3; this code reads versions 1 and 2"


def test_the_game_setting_travels_with_the_checkpoint(tmp_path):
    model = build_renderer("tiny", image_size=32, num_blocks=1)
    stats = ConditionStats(sources={"game": ConditionSource.unit(), "game/follow": ConditionSource.unit()})
    game = {"camera": "first_person", "scene": "open"}
    weights = save_renderer(tmp_path / "fp", model, stats, game=game)
    loaded = load_renderer(weights)
    assert loaded.game == game
    assert loaded.game_source("follow") == "game/follow"  # fitted for that camera
    assert loaded.game_source("first_person") == loaded.game_source(None) == "game"  # its own, or a custom rig
    assert load_renderer(save_renderer(tmp_path / "plain", model)).game == {"camera": "follow", "scene": "city"}
    with pytest.raises(ValueError, match="give camera and scene only"):
        save_renderer(tmp_path / "bad", model, game={"camera": "follow", "weather": "rain"})
    meta = tmp_path / "fp.json"
    info = json.loads(meta.read_text())
    info["game"] = {"camera": "follow"}
    meta.write_text(json.dumps(info))
    assert _error(weights) == f"{meta}: bad \"game\": {{'camera': 'follow'}} (need camera and scene)"
