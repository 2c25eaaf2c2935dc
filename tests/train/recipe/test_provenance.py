"""A trained renderer's provenance names files by name, size and hash (never a path of the machine), and its
model card is made from that JSON."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from neural_render.card import FIGURES, card_path, renderer_card
from neural_render.checkpoint import checkpoint_info
from spokester_train.data.extract import file_record
from spokester_train.recipe.loop import train
from spokester_train.recipe.provenance import portable


def test_file_records_and_the_portable_pass(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"abc" * 100)
    record = file_record(path, start_frame=5)
    assert record == {"file": "clip.mp4", "bytes": 300, "sha256": hashlib.sha256(b"abc" * 100).hexdigest(),
                      "start_frame": 5}  # fmt: skip
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "model.bin").write_bytes(b"w")
    assert file_record(folder)["bytes"] == 1 and file_record(folder)["file"] == "weights"
    cleaned = portable({"a": [str(path), "relative/x.mp4", {"b": "/no/such/file.tflite"}], "n": 3})
    assert cleaned == {"a": [file_record(path), "relative/x.mp4", {"b": {"file": "file.tflite"}}], "n": 3}


def test_a_trained_renderer_records_no_path_of_the_machine_and_its_card_shows_its_json(
    tiny_config, road_clip, machine_paths
):
    config = tiny_config(eval_every=2)
    result = train(config)
    text = (Path(config.out) / "renderer.json").read_text()
    info = checkpoint_info(result.renderer)
    assert json.loads(text) == info
    assert not machine_paths(info)
    for folder in (config.out, config.label_root, str(road_clip.parent)):
        assert folder not in text
    provenance = info["provenance"]
    (video,) = provenance["data"]
    assert video["video"] == "road_clip.mp4" and video["bytes"] == road_clip.stat().st_size
    assert video["sha256"] == hashlib.sha256(road_clip.read_bytes()).hexdigest()
    assert provenance["eval_video"]["file"] == "road_clip.mp4"
    assert provenance["train_config"]["videos"] == ["road_clip.mp4@0:12"] and "out" not in provenance["train_config"]
    assert {r["file"] for r in provenance["extractor_weights"]} == {
        "mobile_pydnet_pruned35.tflite", "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"}  # fmt: skip
    assert all("non-commercial" in r["terms"] for r in provenance["extractor_weights"])
    # the card beside it is the JSON's: every evaluation figure, the step count, the data, the terms
    card = card_path(result.renderer).read_text()
    assert card == renderer_card(result.renderer)
    evaluation = provenance["evaluation"]
    assert evaluation["step"] == 4
    settings = list(evaluation["psnr"])
    for key, meaning in FIGURES.items():
        (row,) = [line for line in card.splitlines() if line.startswith(f"| {meaning} |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")][1 : 1 + len(settings)]
        assert [float(c) for c in cells] == [float(f"{evaluation[key][s]:.4g}") for s in settings], key
    assert "| trained | 4 steps" in card and f"`{video['sha256'][:16]}…`" in card
    assert "CC BY-NC-SA 3.0, non-commercial" in card
