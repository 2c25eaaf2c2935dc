"""The shipped default renderer: small enough to commit, documented provenance, renders the game."""

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


def test_default_checkpoint_paints_the_game_without_a_path():
    size = load_renderer().model.config.image_size
    env = NeuralRenderObservation(gym.make("Spokester-v0", width=size, height=size), num_steps=2)
    observation, _ = env.reset(seed=0)
    frame = env.step(0)[0]["neural"]
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # a picture, not the flat grey of an untrained network
    env.close()


def test_default_checkpoint_is_read_as_version_1_with_its_videos_sky_at_zero():
    """The shipped default predates format version 2: its training config's sky_to_zero reaches its video
    sources, and its game source keeps the game's own sky."""
    loaded = load_renderer(None)
    assert loaded.model.config.num_blocks == 4 and loaded.stats.clip == 4.0
    videos = [name for name in loaded.stats.sources if name.startswith("video")]
    assert len(videos) == 7 and all(loaded.stats.sources[name].sky_to_zero for name in videos)
    assert not loaded.stats.sources["game"].sky_to_zero and loaded.stats.sources["game"].frames == 120
