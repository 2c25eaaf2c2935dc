"""Model cards: made from the checkpoint's JSON, and the shipped one is its JSON's and names no machine path."""

from __future__ import annotations

import json

from neural_render import build_renderer, load_renderer, save_renderer
from neural_render.card import card_path, main, renderer_card
from neural_render.checkpoint import DEFAULT_CHECKPOINT, checkpoint_info


def test_the_shipped_renderer_records_no_machine_path_and_its_card_is_its_jsons(machine_paths):
    info = checkpoint_info(DEFAULT_CHECKPOINT)
    assert not machine_paths(info)
    provenance = info["provenance"]
    assert all({"bytes", "sha256", "source", "licence"} <= set(video) for video in provenance["data"])
    assert card_path(DEFAULT_CHECKPOINT).read_text() == renderer_card(DEFAULT_CHECKPOINT)  # regenerated, not edited
    card = card_path(DEFAULT_CHECKPOINT).read_text()
    assert all(f"{psnr:.4g}" in card for psnr in provenance["evaluation"]["psnr"].values())
    assert "| sampled with | 6 Euler steps per framelet" in card and "non-commercial" in card
    assert load_renderer().checkpoint_id == info["checkpoint_id"]  # the rewrite left the pair loadable


def test_the_card_command_writes_beside_the_checkpoint_and_says_what_is_not_recorded(tmp_path, capsys):
    model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1)
    weights = save_renderer(tmp_path / "mine", model, provenance={"steps": 7, "preset": "cpu-tiny"})
    main([str(tmp_path / "mine")])
    assert capsys.readouterr().out == f"{tmp_path / 'mine.card.md'}\n"
    card = (tmp_path / "mine.card.md").read_text()
    assert "| trained | 7 steps of the `cpu-tiny` preset" in card
    assert "Not evaluated: the JSON records no evaluation." in card
    assert "(not recorded in this checkpoint)" in card and "its JSON inside" in card
    assert json.loads((tmp_path / "mine.json").read_text())["provenance"]["steps"] == 7 and weights.is_file()


def test_the_card_names_the_looks_and_the_one_painted_unless_another_is_asked_for(tmp_path):
    model = build_renderer("tiny", image_size=32, num_blocks=1, looks=("highway", "walk"))
    card = renderer_card(save_renderer(tmp_path / "looks", model, look="walk"))
    assert "| looks | `highway`, `walk`, or `any`: it paints `walk` unless given `look=` / `--look`" in card
    plain = renderer_card(save_renderer(tmp_path / "plain", build_renderer("tiny", image_size=32, num_blocks=1)))
    assert "| looks |" not in plain


def test_the_card_says_what_the_renderer_paints_from(tmp_path):
    told = build_renderer("tiny", image_size=32, num_blocks=1, cond_channels=4)
    card = renderer_card(save_renderer(tmp_path / "cars", told))
    assert (
        "| paints from | the game's inverse depth and optical flow and its car mask (the `cars` observation) |" in card
    )
    plain = renderer_card(save_renderer(tmp_path / "plain", build_renderer("tiny", image_size=32, num_blocks=1)))
    assert "| paints from | the game's inverse depth and optical flow |" in plain
