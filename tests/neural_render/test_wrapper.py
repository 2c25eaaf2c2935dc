"""The gym wrappers: Gymnasium's checker, spaces, no lag, reset clears the stream, batched = single."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from neural_render import NeuralRenderObservation, NeuralRenderVectorEnv, build_renderer, save_renderer
from neural_render.checkpoint import DEFAULT_CHECKPOINT, CheckpointError

from .conftest import randomize

spokester_env = pytest.importorskip("spokester_env")
SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = randomize(build_renderer("tiny", image_size=SIZE, num_blocks=2, width=64, heads=2))
    return save_renderer(tmp_path_factory.mktemp("ckpt") / "tiny32", model)


def _env(**kwargs):
    return gym.make("Spokester-v0", width=SIZE, height=SIZE, observations=("depth", "flow"), **kwargs)


def _wrapped(checkpoint, **kwargs):
    return NeuralRenderObservation(_env(), checkpoint, num_steps=2, cache_at_step=1, **kwargs)


@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
def test_passes_gymnasium_check_env(checkpoint):
    check_env(_wrapped(checkpoint))


def test_observations_lie_in_the_space_and_show_the_same_game_frame(checkpoint):
    env, plain = _wrapped(checkpoint), _env()
    observation, info = env.reset(seed=1)
    plain.reset(seed=1)
    assert env.observation_space.contains(observation) and info["frames"] == 0
    for action in (0, 1, 2, 0):
        observation, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(observation)
        assert info["frames"] == 2 and info["neural_frames"].shape == (2, SIZE, SIZE, 3)
        expected = [plain.step(action), plain.step(0)]  # a decision is one lane: the move, then keep lane
        np.testing.assert_array_equal(observation["depth"], expected[-1][0]["depth"])  # no lag
        assert reward == pytest.approx(sum(e[1] for e in expected))
        np.testing.assert_array_equal(observation["neural"], info["neural_frames"][-1])
        np.testing.assert_array_equal(env.render(), observation["neural"])
    assert env.metadata["render_fps"] == plain.metadata["render_fps"] / 2 and env.render_mode == "rgb_array"


def test_reset_clears_the_stream(checkpoint):
    env, fresh = _wrapped(checkpoint), _wrapped(checkpoint)
    env.reset(seed=0)
    for _ in range(3):
        env.step(1)
    first, _ = env.reset(seed=4)
    assert env.renderer.cache.lengths.tolist() == [1]
    again, _ = fresh.reset(seed=4)
    np.testing.assert_array_equal(first["neural"], again["neural"])
    for _ in range(3):
        np.testing.assert_array_equal(env.step(2)[0]["neural"], fresh.step(2)[0]["neural"])


def test_pixels_only_and_a_truncated_framelet(checkpoint):
    env = NeuralRenderObservation(_env(max_episode_steps=3), checkpoint, num_steps=1, cache_at_step=0, pixels_only=True)
    observation, _ = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    assert observation.shape == (SIZE, SIZE, 3) and observation.dtype == np.uint8
    assert env.step(0)[4]["frames"] == 2
    *_, truncated, info = env.step(0)
    assert truncated and info["frames"] == 1 and info["neural_frames"].shape == (1, SIZE, SIZE, 3)


def test_bad_wrapping_is_refused(checkpoint):
    with pytest.raises(ValueError, match="width=height=32"):
        NeuralRenderObservation(gym.make("Spokester-v0", width=64, height=64), checkpoint)
    if not DEFAULT_CHECKPOINT.exists():
        with pytest.raises(CheckpointError, match="no default renderer is shipped yet"):
            NeuralRenderObservation(_env())


def test_vector_env_renders_like_single_envs_and_resets_one_slot(checkpoint):
    makers = [lambda: _env(), lambda: _env(max_episode_steps=3)]
    vector = NeuralRenderVectorEnv(makers, checkpoint, num_steps=1, cache_at_step=0)
    single = NeuralRenderObservation(_env(), checkpoint, num_steps=1, cache_at_step=0)
    observations, _ = vector.reset(seed=10)
    reference, _ = single.reset(seed=10)
    assert vector.observation_space.contains(observations)
    for index in range(4):
        observations, rewards, terminations, truncations, infos = vector.step(np.array([1, 0]))
        reference = single.step(1)[0]
        difference = observations["neural"][0].astype(int) - reference["neural"]
        assert np.abs(difference).max() <= 1  # batched float sums may round one level apart
        if index == 1:  # env 1 is truncated in the middle of its second framelet
            assert truncations.tolist() == [False, True] and infos["frames"].tolist() == [2, 1]
        if index == 2:  # ... and autoreset on the next step, with a cleared cache slot
            assert infos["frames"].tolist() == [2, 0] and vector.renderer.cache.lengths.tolist() == [3, 1]
    assert vector.render().shape == (2, SIZE, SIZE, 3)
    vector.close()


def test_the_env_camera_picks_the_statistics_and_a_foreign_game_is_named(tmp_path):
    """A renderer made for the first-person camera in the open scene: an env with that game renders
    silently with the "game" statistics; a follow-camera env uses the checkpoint's follow statistics and is
    warned about, naming both games."""
    from neural_render import ConditionSource, ConditionStats

    follow = ConditionSource(depth_floor=0.01, depth_mean=-2.0, depth_std=1.0, flow_mean=(0, 1), flow_std=(2, 2))
    stats = ConditionStats(sources={"game": ConditionSource.unit(), "game/follow": follow})
    model = randomize(build_renderer("tiny", image_size=SIZE, num_blocks=1, width=64, heads=2))
    checkpoint = save_renderer(tmp_path / "fp", model, stats, game={"camera": "first_person", "scene": "open"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        own = NeuralRenderObservation(_env(camera="first_person", scene="open"), checkpoint, num_steps=1)
    assert own.renderer.source == "game"
    with pytest.warns(UserWarning, match="made for the first_person camera in the open scene, the env has the follow"):
        foreign = NeuralRenderObservation(_env(), checkpoint, num_steps=1)
    assert foreign.renderer.source == "game/follow"
    for env in (own, foreign):
        env.close()


def test_the_checkpoints_sampling_steps_are_used_unless_given(tmp_path):
    model = randomize(build_renderer("tiny", image_size=SIZE, num_blocks=1, width=64, heads=2))
    checkpoint = save_renderer(tmp_path / "three", model, num_steps=3)
    own = NeuralRenderObservation(_env(), checkpoint)
    given = NeuralRenderObservation(_env(), checkpoint, num_steps=2)
    vector = NeuralRenderVectorEnv([_env], checkpoint)
    assert (own.renderer.num_steps, given.renderer.num_steps, vector.renderer.num_steps) == (3, 2, 3)
    with pytest.raises(ValueError, match=r"cache_at_step must be None or in \[0, num_steps=3\), got 3"):
        NeuralRenderObservation(_env(), checkpoint, cache_at_step=3)
    for env in (own, given, vector):
        env.close()


def test_a_renderer_told_where_the_cars_are_gets_the_games_car_mask(tmp_path):
    """A renderer with a car mask channel needs the env to observe "cars" (one line saying so otherwise) and paints
    from it: the wrappers hand it each frame's mask, so a single env and a vector env paint alike, and the car
    channel's weights change the picture."""
    model = randomize(build_renderer("tiny", image_size=SIZE, num_blocks=2, width=64, heads=2, cond_channels=4))
    checkpoint = save_renderer(tmp_path / "cars", model)
    with pytest.raises(ValueError, match=r"observations including 'depth', 'flow', 'cars'"):
        NeuralRenderObservation(_env(), checkpoint)

    def cars_env(**kwargs):
        return gym.make("Spokester-v0", width=SIZE, height=SIZE, observations=("depth", "flow", "cars"), **kwargs)

    single = NeuralRenderObservation(cars_env(), checkpoint, num_steps=1, cache_at_step=0)
    vector = NeuralRenderVectorEnv([cars_env], checkpoint, num_steps=1, cache_at_step=0)
    reference, _ = single.reset(seed=3)
    batched, _ = vector.reset(seed=3)
    for _ in range(6):
        reference = single.step(0)[0]
        batched = vector.step(np.array([0]))[0]
        assert np.abs(batched["neural"][0].astype(int) - reference["neural"]).max() <= 1
    assert reference["cars"].any()  # a car is in view, so its mask reaches the renderer
    blind = randomize(build_renderer("tiny", image_size=SIZE, num_blocks=2, width=64, heads=2, cond_channels=4))
    blind.load_state_dict(model.state_dict())
    with torch.no_grad():
        blind.cond_embedder.weight.view(64, -1, 4)[..., 3] = 0  # the same network, deaf to the mask
    other = NeuralRenderObservation(cars_env(), save_renderer(tmp_path / "blind", blind), num_steps=1, cache_at_step=0)
    other.reset(seed=3)
    for _ in range(6):
        painted = other.step(0)[0]
    assert np.abs(painted["neural"].astype(int) - reference["neural"]).mean() > 0.5
    vector.close()
