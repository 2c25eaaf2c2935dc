"""The shipped default renderer: small enough to commit, documented provenance, renders the game it was made for."""

import gymnasium as gym
import numpy as np

import spokester_env  # noqa: F401  (registers Spokester-v0)
from neural_render import NeuralRenderObservation, load_renderer
from neural_render.checkpoint import DEFAULT_CHECKPOINT


def test_default_checkpoint_is_small_and_says_how_it_was_made():
    assert DEFAULT_CHECKPOINT.stat().st_size <= 30 * 2**20
    loaded = load_renderer()
    provenance = loaded.provenance
    assert provenance["preset"] == "cpu-tiny" and provenance["steps"] > 0
    assert provenance["extractors"] == {"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}
    assert all(entry["sha256"] and entry["frames"] > 0 for entry in provenance["data"])
    assert provenance["eval_video"]["file"] not in {entry["video"] for entry in provenance["data"]}  # held out
    assert {"game", "video"} <= set(loaded.stats.sources)
    assert (DEFAULT_CHECKPOINT.parent / "NOTICE.md").is_file()


def test_default_checkpoint_paints_the_game_it_was_made_for_without_a_path():
    loaded = load_renderer()
    size = loaded.model.config.image_size
    env = NeuralRenderObservation(gym.make("Spokester-v0", width=size, height=size, **loaded.game), num_steps=2)
    observation, _ = env.reset(seed=0)
    frame = env.step(0)[0]["neural"]
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # a picture, not the flat grey of an untrained network
    env.close()


def test_default_checkpoint_is_the_blended_network_for_the_first_person_camera():
    """The default paints blended overlapping patches (no 16-px grid), for the footage's first-person camera in
    the open scene; its videos' sky reads as depth 0 and the game's statistics are those of every camera."""
    loaded = load_renderer(None)
    config = loaded.model.config
    assert (config.patch_size, config.patch_overlap, config.decode_overlap, config.num_blocks) == (16, 4, 4, 4)
    assert loaded.game == {"camera": "first_person", "scene": "open"}
    videos = [name for name in loaded.stats.sources if name.startswith("video")]
    assert len(videos) == 7 and all(loaded.stats.sources[name].sky_to_zero for name in videos)
    assert {"game/follow", "game/first_person"} <= set(loaded.stats.sources)
    assert loaded.stats.sources["game"] == loaded.stats.sources["game/first_person"]
    assert not loaded.stats.sources["game"].sky_to_zero and loaded.stats.sources["game"].frames == 120


def test_default_checkpoint_is_sampled_with_the_steps_it_was_evaluated_with():
    """The default records 6 Euler steps (the README's sweep), and its recorded evaluation sampled with them."""
    loaded = load_renderer()
    assert loaded.num_steps == 6
    assert loaded.provenance["evaluation"]["num_steps"] == loaded.num_steps
    assert "--cache-at-step none,3" in loaded.provenance["evaluation"]["command"]
