"""The game's class map (`SpokesterEnv.class_map`): each pixel's class from pybullet's segmentation mask."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

from spokester_env import CLASS_NAMES, PackedObservation

SKY, GROUND, BUILDINGS, CARS, RIDER = (CLASS_NAMES.index(k) for k in ("sky", "ground", "buildings", "cars", "rider"))


def test_class_map_agrees_with_depth_and_the_cube_views_colours(make_env):
    env = make_env(observations=("depth", "rgb"))
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(0)
    classes, rgb = env.unwrapped.class_map(), obs["rgb"].astype(int)
    assert classes.shape == (64, 64) and classes.dtype == np.uint8
    np.testing.assert_array_equal(classes == SKY, obs["depth"][..., 0] == 0)
    assert classes[0, 32] == SKY and classes[-1, 32] == GROUND and classes[0, 0] == BUILDINGS
    red, green = rgb[..., 0], rgb[..., 1]
    cars, rider = classes == CARS, classes == RIDER
    assert cars.any() and rider.any()
    assert (red[cars] > green[cars] + 80).all()  # the cars are red boxes
    assert (green[rider] > red[rider] + 80).all()  # the rider is a green box
    grey = (classes == GROUND) | (classes == BUILDINGS)
    assert (np.abs(red[grey] - green[grey]) < 10).all()  # ground and buildings are grey checkers


def test_the_cars_observation_is_the_class_maps_cars(make_env):
    """`observations=(..., "cars")`: 1 exactly where the class map has a car, in the observation space, packed too."""
    env = make_env(observations=("depth", "cars"))
    obs, _ = env.reset(seed=0)
    seen = 0
    for _ in range(4):
        obs, *_ = env.step(0)
        assert obs["cars"].shape == (64, 64, 1) and obs["cars"].dtype == np.uint8 and obs in env.observation_space
        np.testing.assert_array_equal(obs["cars"][..., 0], (env.unwrapped.class_map() == CARS).astype(np.uint8))
        seen += int(obs["cars"].sum())
    assert seen > 0
    packer = PackedObservation(env)
    packed = packer.observation(obs)
    assert packed.shape == (2, 64, 64)
    np.testing.assert_array_equal(packed[packer.keys.index("cars")], obs["cars"][..., 0] * 255)


def test_class_map_needs_a_reset_and_survives_pickling(make_env):
    env = make_env()
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.class_map()
    env.reset(seed=2)
    env.step(2)
    clone = pickle.loads(pickle.dumps(env))
    try:
        np.testing.assert_array_equal(clone.unwrapped.class_map(), env.unwrapped.class_map())
    finally:
        clone.close()
