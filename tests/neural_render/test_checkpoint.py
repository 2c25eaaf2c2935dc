"""Checkpoints: exact round trip, atomic writes, published as one unit, and a one-line error naming the file
for each fault."""

import dataclasses
import json
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from neural_render import ConditionSource, ConditionStats, build_renderer, load_renderer, save_renderer
from neural_render.checkpoint import DEFAULT_CHECKPOINT, LATER_FIELDS, CheckpointError, checkpoint_num_steps
from neural_render.sampler import NUM_STEPS

from .conftest import randomize


@pytest.fixture
def saved(tmp_path):
    model = randomize(build_renderer("tiny", image_size=32, num_blocks=2))
    stats = ConditionStats.unit("game")
    weights = save_renderer(tmp_path / "ckpt", model, stats=stats, provenance={"steps": 3, "data": "test"})
    return model, stats, weights, tmp_path / "ckpt.json"


def _stored(weights) -> tuple[dict, dict]:
    """The tensors and the safetensors metadata of a weights file."""
    with safe_open(str(weights), framework="pt") as file:
        return {name: file.get_tensor(name) for name in file.keys()}, file.metadata()


def _info(weights) -> dict:
    """A checkpoint's JSON: the copy its weights carry, else the one beside them."""
    metadata = _stored(weights)[1]
    return json.loads(metadata["json"] if "json" in metadata else weights.with_suffix(".json").read_text())


def _rewrite(weights, info: dict, embed: bool = True) -> None:
    """Write `info` as a checkpoint's JSON: inside the weights and beside them, or (`embed=False`) beside them
    only, as saves did before the JSON travelled inside the weights (versions 1 and early 2)."""
    tensors, metadata = _stored(weights)
    metadata = {"format": metadata["format"], "checkpoint_id": metadata["checkpoint_id"]}
    text = json.dumps(info)
    save_file(tensors, str(weights), metadata={**metadata, "json": text} if embed else metadata)
    weights.with_suffix(".json").write_text(text)


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
    assert _error(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such renderer checkpoint (no nope.safetensors)"
    (tmp_path / "ride.mp4").write_bytes(b"\0" * 64)  # what was given is named, not ride.mp4.safetensors
    assert _error(tmp_path / "ride.mp4") == (
        f"{tmp_path / 'ride.mp4'}: not a renderer checkpoint (a renderer is NAME.safetensors; no ride.mp4.safetensors)"
    )
    meta.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_renderer(weights).provenance == {"steps": 3, "data": "test"}  # the weights carry their JSON
    info = _info(weights)
    _rewrite(weights, info, embed=False)
    meta.unlink()
    assert _error(weights).startswith(f"{meta}: no such file")  # weights of the older layout need it


def test_corrupt_files(saved):
    _, _, weights, meta = saved
    info = _info(weights)
    _rewrite(weights, info, embed=False)
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    assert _error(weights).startswith(f"{meta}: corrupt JSON")
    _rewrite(weights, info)
    meta.write_text(text[: len(text) // 2])
    with pytest.warns(UserWarning, match="is stale") as caught:
        assert load_renderer(weights).provenance == {"steps": 3, "data": "test"}  # the copy is only a copy
    assert len(caught) == 1 and str(caught[0].message).startswith(f"{meta} is stale: it is not the JSON stored in")
    tensors, metadata = _stored(weights)
    save_file(tensors, str(weights), metadata={**metadata, "json": metadata["json"][:50]})
    assert _error(weights).startswith(f"{weights}: corrupt JSON")
    weights.write_bytes(weights.read_bytes()[:100])
    assert _error(weights).startswith(f"{weights}: corrupt safetensors file")


def test_shape_mismatch(saved):
    _, _, weights, meta = saved
    info = _info(weights)
    info["config"]["width"] = 128
    _rewrite(weights, info)
    message = _error(weights)
    assert message.startswith(f"{weights}: tensor ") and "has shape" in message and "needs" in message


def test_unknown_preset(saved):
    _, _, weights, meta = saved
    info = _info(weights)
    info["config"], info["preset"] = None, "huge"
    _rewrite(weights, info, embed=False)
    assert (
        _error(weights)
        == f"{meta}: no config and unknown preset 'huge' (known: tiny, tiny-head, tiny-p8, tiny-p8-head, "
        "tiny-overlap, tiny-overlap-head, tiny-overlap-blend, small, base)"
    )


def test_weights_and_json_of_different_saves(saved, tmp_path):
    """Weights of the older layout refuse the JSON of another save; weights that carry their JSON load as
    themselves, with a warning that the copy beside them is stale."""
    model, _, weights, meta = saved
    other = randomize(build_renderer("tiny", image_size=32, num_blocks=2), seed=3)
    save_renderer(tmp_path / "other", other, provenance={"steps": 9})
    meta.write_text((tmp_path / "other.json").read_text())
    with pytest.warns(UserWarning, match=f"{meta} is stale: it is not the JSON stored in ckpt.safetensors"):
        loaded = load_renderer(weights)
    assert loaded.provenance == {"steps": 3, "data": "test"} and loaded.checkpoint_id == _info(weights)["checkpoint_id"]
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    _rewrite(weights, _info(weights), embed=False)
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
    info = _info(weights)
    assert info["version"] == 2 and info["config"]["num_blocks"] == 2
    info["version"] = 1
    info["config"]["depth"] = info["config"].pop("num_blocks")
    flags = ("log_depth", "sky_to_zero", "clip")
    sources = {
        name: {k: v for k, v in fields.items() if k not in flags} for name, fields in info["stats"]["sources"].items()
    }
    info["stats"] = {"log_depth": True, "clip": 4.0, "sources": sources}
    _rewrite(weights, info, embed=False)  # version 1 kept the JSON beside the weights only
    loaded = load_renderer(weights)
    assert loaded.model.config == model.config and loaded.model.config.num_blocks == 2
    assert loaded.stats.sources["video"] == dataclasses.replace(video, sky_to_zero=True)
    assert not loaded.stats.sources["game"].sky_to_zero
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    info["config"]["depth"] = 0
    meta.write_text(json.dumps(info))
    assert _error(weights) == f"{meta}: config.depth = 0; must be a positive integer"  # the field as the file names it
    info["version"], info["config"]["depth"] = 3, 2
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
    info = _info(weights)
    info["game"] = {"camera": "follow"}
    _rewrite(weights, info)
    assert _error(weights) == f"{weights}: bad \"game\": {{'camera': 'follow'}} (need camera and scene)"
    info["game"] = {"camera": "drone", "scene": "city"}
    _rewrite(weights, info)
    assert _error(weights) == f"{weights}: bad \"game\": camera 'drone' (the cameras are follow, first_person)"
    with pytest.raises(ValueError, match="bad scene 'desert' \\(the scenes are city, open\\)"):
        save_renderer(tmp_path / "bad", model, game={"scene": "desert"})


def test_the_sampling_steps_travel_with_the_checkpoint(tmp_path):
    """A checkpoint says how many Euler steps it is meant for; a file from before "sampling" gets the seed's 12."""
    model = build_renderer("tiny", image_size=32, num_blocks=1)
    weights = save_renderer(tmp_path / "six", model, num_steps=6)
    assert load_renderer(weights).num_steps == checkpoint_num_steps(weights) == 6
    assert _info(weights)["sampling"] == {"num_steps": 6}
    assert load_renderer(save_renderer(tmp_path / "plain", model)).num_steps == NUM_STEPS == 12
    info = _info(weights)
    del info["sampling"]
    _rewrite(weights, info)
    assert load_renderer(weights).num_steps == checkpoint_num_steps(weights) == 12
    for bad, problem in (({"num_steps": 0}, "num_steps 0 (need an integer >= 1)"),
                         ({"num_steps": 6.0}, "num_steps 6.0 (need an integer >= 1)"),
                         ({"steps": 6}, "{'steps': 6} (need num_steps, and a look or none)"),
                         ({"num_steps": 6, "look": "x"}, "look 'x' (the network's looks are [])")):  # fmt: skip
        _rewrite(weights, {**info, "sampling": bad})
        assert _error(weights) == f'{weights}: bad "sampling": {problem}'
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match=f"num_steps={bad!r}, look='any': bad num_steps {bad!r} \\(need an"):
            save_renderer(tmp_path / "bad", model, num_steps=bad)
    assert not (tmp_path / "bad.safetensors").exists()


HEADS = "a positive integer dividing width 256 into heads of a multiple of 4 channels (2D RoPE)"


@pytest.mark.parametrize(
    "name, value, rule",
    [
        ("heads", 0, HEADS),
        ("heads", 3, HEADS),
        ("heads", 2.0, HEADS),
        ("patch_size", 12, "a positive integer dividing image_size 32"),
        ("patch_size", 0, "a positive integer"),
        ("image_size", "32", "a positive integer"),
        ("num_blocks", -1, "a positive integer"),
        ("patch_frames", True, "a positive integer"),
        ("width", 130, "a positive multiple of 4 (2D rotary positions)"),
        ("mlp_ratio", 0.0, "a finite number with width 256 x mlp_ratio >= 1"),
        ("mlp_ratio", float("inf"), "a finite number with width 256 x mlp_ratio >= 1"),
        ("channels", 4, "3 (RGB frames)"),
        ("cond_channels", 2, "3 (depth, flow x, flow y) or 4 (and a car mask)"),
        ("shared_adaln", 1, "true or false"),
        ("qk_norm", "yes", "true or false"),
        ("rope_base", 0.0, "a finite number > 0"),
        ("pixel_head", -2, "an integer >= 0 (hidden channels, 0 = none)"),
        ("patch_overlap", 17, "an integer from 0 to patch_size 16 (pixels, 0 = disjoint patches)"),
        ("decode_overlap", -1, "an integer from 0 to patch_size 16 (pixels, 0 = each patch painted alone)"),
    ],
)
def test_every_config_field_is_checked_on_load(saved, name, value, rule):
    _, _, weights, _ = saved
    info = _info(weights)
    info["config"][name] = value
    _rewrite(weights, info)
    assert _error(weights) == f"{weights}: config.{name} = {value!r}; must be {rule}"


def test_a_file_written_before_the_later_fields_loads_them_as_the_seeds_design(saved):
    """A checkpoint whose config lacks the fields added after it was written (`LATER_FIELDS`) gets the values
    every such file had; a later one that names them keeps its own."""
    model, _, weights, _ = saved
    info = _info(weights)
    assert info["config"]["patch_overlap"] == info["config"]["decode_overlap"] == 0
    for name in LATER_FIELDS:
        del info["config"][name]
    _rewrite(weights, info)
    loaded = load_renderer(weights)
    assert loaded.model.config == model.config
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    blended = randomize(build_renderer("tiny", image_size=32, num_blocks=1, patch_overlap=2, decode_overlap=4))
    path = save_renderer(weights.parent / "blend", blended)
    assert load_renderer(path).model.config.decode_overlap == 4


def _game(info: dict) -> dict:
    """The "game" statistics of a checkpoint's JSON."""
    return info["stats"]["sources"]["game"]


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda i: i["config"].update(dropout=0.1), "bad config: unknown fields ['dropout'] (the fields are "),
        (lambda i: i["config"].pop("rope_base"), "bad config: missing fields ['rope_base']"),
        (lambda i: i.update(notes="hand-edited"), "unknown fields ['notes'] (the fields are format, version, "),
        (lambda i: i.update(provenance=[1, 2]), "provenance = [1, 2]; must be an object or null"),
        (lambda i: i.update(checkpoint_id=7), "checkpoint_id = 7; must be a string or null"),
        (lambda i: _game(i).update(depth_std=0.0), "bad statistics: source 'game': depth_std = 0.0; must be"),
        (lambda i: _game(i).update(flow_std=[1, 1, 1]), "source 'game': flow_std = [1, 1, 1]; must be (x, y): two"),
        (lambda i: _game(i).update(log_depth="no"), "source 'game': log_depth = 'no'; must be true or false"),
        (lambda i: _game(i).pop("depth_std"), "source 'game': missing fields ['depth_std']"),
        (lambda i: i["stats"].update(sources=[]), "bad statistics: sources = []; must be an object"),
        (lambda i: i["stats"]["sources"].update(video=i["stats"]["sources"].pop("game")), 'no "game" source'),
    ],
    ids=[
        "unknown-config-field",
        "missing-config-field",
        "unknown-field",
        "provenance",
        "checkpoint-id",
        "depth-std",
        "flow-std",
        "log-depth",
        "missing-statistic",
        "sources",
        "no-game-source",
    ],
)
def test_nonsense_in_the_json_is_one_line_naming_the_field(saved, change, problem):
    _, _, weights, _ = saved
    info = _info(weights)
    change(info)
    _rewrite(weights, info)
    message = _error(weights)
    assert message.startswith(f"{weights}: ") and problem in message


def test_a_checkpoint_without_statistics_loads_with_one_warning(tmp_path):
    """An untrained network (as tests save) has no statistics: it loads with unit statistics, and says so."""
    weights = save_renderer(tmp_path / "untrained", build_renderer("tiny", image_size=32, num_blocks=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_renderer(weights).stats is None
    assert [str(w.message) for w in caught] == [
        f'{weights}: "stats": null, so depth and flow are normalised with unit statistics: fine for an untrained '
        "network, wrong for a trained one"
    ]


@pytest.mark.parametrize("first", [False, True], ids=["over-a-save", "first-save"])
def test_a_kill_between_publishing_the_weights_and_the_json_leaves_the_new_renderer(saved, monkeypatch, first):
    """The process dies after the new weights are in place and before their JSON is: the weights carry their
    JSON, so the checkpoint loads as the new one, whole (weights, config and provenance of the same save)."""
    from spokester_env import output

    old, _, weights, meta = saved
    if first:
        weights.unlink(), meta.unlink()
    new = randomize(build_renderer("tiny", image_size=32, num_blocks=1), seed=7)
    publish = output.publish

    def killed(temporary, path, **options):
        if str(path).endswith(".json"):
            raise KeyboardInterrupt("killed")
        publish(temporary, path, **options)

    monkeypatch.setattr(output, "publish", killed)
    with pytest.raises(KeyboardInterrupt):
        save_renderer(weights, new, ConditionStats.unit("game"), {"steps": 11})
    monkeypatch.undo()
    assert meta.exists() is not first  # the old JSON, or none at all
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_renderer(weights)
    assert [("is stale" in str(w.message)) for w in caught] == ([] if first else [True])
    assert loaded.model.config == new.config and loaded.provenance == {"steps": 11}
    assert loaded.checkpoint_id == _stored(weights)[1]["checkpoint_id"]
    for name, tensor in new.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["ckpt.json", "ckpt.safetensors"][first:]


def test_weights_without_their_json_inside_load_exactly_as_before(saved):
    """Version-2 saves from before the JSON travelled inside the weights (and the shipped default's layout)."""
    model, stats, weights, meta = saved
    info = _info(weights)
    _rewrite(weights, info, embed=False)
    assert "json" not in _stored(weights)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_renderer(weights)
    assert loaded.stats == stats and loaded.checkpoint_id == info["checkpoint_id"]
    torch.testing.assert_close(loaded.model(*_inputs()), model(*_inputs()), rtol=0, atol=0)
    assert json.loads(meta.read_text()) == info


def test_looks_and_the_look_to_paint_travel_with_the_checkpoint(tmp_path):
    """A renderer's looks are part of its config and its look vectors part of its weights; its "sampling" may name
    the look it is meant to be painted with, which must be one of them. A file written before looks has none."""
    model = build_renderer("tiny", image_size=32, num_blocks=1, looks=("highway", "walk"))
    with torch.no_grad():
        model.look_embedding.copy_(torch.arange(2 * 256, dtype=torch.float32).reshape(2, 256))
    weights = save_renderer(tmp_path / "looks", model, look="walk")
    loaded = load_renderer(weights)
    assert loaded.model.config.looks == ("highway", "walk") and loaded.look == "walk"
    assert torch.equal(loaded.model.look_embedding, model.look_embedding)
    assert _info(weights)["config"]["looks"] == ["highway", "walk"]
    assert _info(weights)["sampling"] == {"num_steps": 12, "look": "walk"}
    assert loaded.look_for(None) == "walk" and loaded.look_for("any") == "any"
    with pytest.raises(ValueError, match="look 'city': this renderer paints any, highway, walk"):
        loaded.look_for("city")
    assert load_renderer(save_renderer(tmp_path / "any", model)).look == "any"
    assert "look" not in _info(tmp_path / "any.safetensors")["sampling"]
    with pytest.raises(ValueError, match=r"look='city': bad look 'city' \(the network's looks are \['highway', 'walk'"):
        save_renderer(tmp_path / "bad", model, look="city")
    assert not (tmp_path / "bad.safetensors").exists()
    plain = save_renderer(tmp_path / "plain", build_renderer("tiny", image_size=32, num_blocks=1))
    info = _info(plain)
    del info["config"]["looks"]  # as every file written before looks
    _rewrite(plain, info)
    assert load_renderer(plain).model.config.looks == () and load_renderer(plain).look == "any"
