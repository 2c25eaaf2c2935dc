"""The Gymnasium contract: checkers, seeding, pickling, vectorisation, rendering and bad input."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import spokester_env
from spokester_env import ActionRepeat, PackedObservation, SpokesterEnv, pad_frames, play_decision


def _rollout(env, seed, steps=40):
    obs, _ = env.reset(seed=seed)
    frames, rng = [obs], np.random.default_rng(seed)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        frames.append((obs, reward, terminated, info))
        if terminated:
            obs, _ = env.reset()
    return frames


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        x, y = (x, y) if isinstance(x, tuple) else ((x,), (y,))
        for p, q in zip(x, y, strict=True):
            if isinstance(p, dict) and isinstance(next(iter(p.values())), np.ndarray):
                for k in p:
                    np.testing.assert_array_equal(p[k], q[k])
            else:
                assert p == q


def test_gymnasium_check_env_passes_without_warnings(make_env):
    pytest.importorskip("pygame", reason='the checker renders every render mode, "human" (pygame) too')
    env = make_env(observations=("depth", "flow", "rgb", "cars"), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_sb3_check_env_passes(make_env):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    # The only accepted warning: SB3 suggests a CNN-friendly uint8 image, which PackedObservation provides.
    messages = [str(w.message) for w in caught]
    assert messages and all("image" in m.lower() for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(PackedObservation(make_env()), warn=True)  # the packed form has nothing to warn about


def test_same_seed_same_rollout_exactly(make_env):
    kwargs = dict(observations=("depth", "flow", "rgb"))
    _assert_same(_rollout(make_env(**kwargs), 7), _rollout(make_env(**kwargs), 7))
    other = _rollout(make_env(**kwargs), 8)
    assert not np.array_equal(other[-1][0]["rgb"], _rollout(make_env(**kwargs), 7)[-1][0]["rgb"])


def test_reset_clears_camera_state(make_env):
    """A reset after a lane change gives the same first frame as a fresh env: no leaked camera lag."""
    env = make_env(observations=("depth", "flow"))
    first, _ = env.reset(seed=5)
    for _ in range(3):
        env.step(2)  # camera lags behind a lane change
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first["flow"], again["flow"])
    np.testing.assert_array_equal(first["depth"], again["depth"])


def test_pickle_round_trip_continues_identically(make_env):
    env = make_env(observations=("depth", "flow", "rgb"))
    env.reset(seed=3)
    for _ in range(10):
        env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    try:
        for action in (0, 2, 2, 0, 1, 0, 0):
            a, b = env.step(action), clone.step(action)
            for k in a[0]:
                np.testing.assert_array_equal(a[0][k], b[0][k])
            assert a[1:] == b[1:]
    finally:
        clone.close()


def test_close_twice_and_after_failed_construction(make_env):
    env = make_env()
    env.reset(seed=0)
    env.close()
    env.close()


def test_async_vector_env_runs():
    envs = gym.make_vec("Spokester-v0", num_envs=2, vectorization_mode="async", width=32, height=32)
    try:
        obs, info = envs.reset(seed=[1, 2])
        assert obs["depth"].shape == (2, 32, 32, 1) and obs["flow"].shape == (2, 32, 32, 2)
        assert not np.array_equal(obs["depth"][0], obs["depth"][1])  # different seeds, different roads
        for _ in range(5):
            obs, reward, terminated, truncated, info = envs.step(np.array([0, 2]))
        assert reward.shape == (2,) and np.all(reward > 0)
        assert info["lane"].tolist() == [1, 2]
    finally:
        envs.close()


def test_observations_stay_in_space_when_the_camera_is_inside_a_car(make_env):
    env = make_env(observations=("depth", "flow")).unwrapped
    env.reset(seed=0)
    tr = env.game.state.traffic
    cam_y = env._pose.eye[1]
    tr.active[0], tr.lane[0], tr.y[0], tr.speed[0] = True, 1, cam_y, 0.0  # the camera sits in the car
    obs, *_ = env.step(0)
    assert env.observation_space.contains(obs)
    assert np.isfinite(obs["flow"]).all()
    assert obs["depth"].max() <= 1 / env.config.camera.near


def test_info_and_reward(make_env):
    env = make_env()
    _, info = env.reset(seed=1)
    assert info == {"distance": 0.0, "speed": 5.0, "lane": 1, "x": 0.0, "crashed": False}
    _, reward, terminated, truncated, info = env.step(1)
    assert reward == pytest.approx(5.0 / 24 + 0.5 * 0.2 / 24**2)
    assert info["lane"] == 0 and type(info["distance"]) is float and type(info["crashed"]) is bool


def test_time_limit_and_fps(make_env):
    env = make_env(fps=30, max_episode_steps=3)
    env.reset(seed=0)
    assert env.unwrapped.metadata["render_fps"] == 30 and SpokesterEnv.metadata["render_fps"] == 24
    out = [env.step(0) for _ in range(3)]
    assert out[-1][3] is True and out[0][1] == pytest.approx(5.0 / 30 + 0.1 / 900)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(width=0), "width=0"),
        (dict(height=-4), "height=-4"),
        (dict(observations=("depth", "normals")), "'depth', 'flow', 'rgb'"),
        (dict(observations=()), "'depth', 'flow', 'rgb'"),
        (dict(render_mode="ansi"), "'human', 'rgb_array'"),
        (dict(backend="vulkan"), "backend='vulkan' is not one of ('tiny', 'gl')"),
        (dict(fps=0), "fps=0"),
    ],
)
def test_bad_configuration_names_the_allowed_values(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        SpokesterEnv(**{"width": 16, "height": 16, **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(fps=float("inf")), ValueError, "fps=inf: must be finite and > 0 (frames per second)"),
        (dict(fps=float("nan")), ValueError, "fps=nan: must be finite and > 0 (frames per second)"),
        (dict(fps="24"), TypeError, "fps='24': must be a number of frames per second, finite and > 0"),
        (dict(fps=True), TypeError, "fps=True: must be a number of frames per second, finite and > 0"),
        (dict(width=32.0), TypeError, "width=32.0: must be a positive integer (pixels)"),
        (dict(height=True), TypeError, "height=True: must be a positive integer (pixels)"),
        (dict(config="x"), TypeError, "config='x': must be a spokester_env.GameConfig or None"),
        (dict(observations=5), TypeError, "observations=5: must be a key or a tuple of keys from ('depth', 'flow',"),
        (dict(observations=[["depth"]]), TypeError, "observations=[['depth']]: must be a key or a tuple of keys from"),
        (dict(camera=5), TypeError, "camera=5: pass a preset name (follow, first_person) or a CameraConfig"),
        (dict(camera=["follow"]), TypeError, "camera=['follow']: pass a preset name (follow, first_person) or a"),
        (dict(scene=["open"]), TypeError, "scene=['open']: pass a preset name (city, open)"),
    ],
    ids=str.split(
        "fps-inf fps-nan fps-str fps-bool width-float height-bool config-str observations-int "
        "observations-nested camera-int camera-list scene-list"
    ),  # fmt: skip
)
def test_arguments_of_the_wrong_kind_or_out_of_range_are_one_line_errors_naming_them(kwargs, error, message):
    with pytest.raises(error) as caught:
        SpokesterEnv(**{"width": 16, "height": 16, **kwargs})
    assert type(caught.value) is error and str(caught.value).startswith(message) and "\n" not in str(caught.value)


def _crash(env, seed: int = 0):
    """Ride into a car (always "move left", seed 0: 146 steps); returns the crash step."""
    env.reset(seed=seed)
    for _ in range(400):
        out = env.step(1)
        if out[2]:
            return out
    raise AssertionError("no crash in 400 steps")


def test_the_crash_persists_until_reset(make_env):
    """Steps after a crash: terminated every time, reward exactly 0, the same observation and info (the world
    does not move), one warning per episode; reset rides again."""
    env = make_env(width=16, height=16, observations=("depth", "flow"))
    obs, reward, _, _, info = _crash(env)
    assert info["crashed"] and reward > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = [env.step(i % 3) for i in range(50)]
    assert [str(w.message) for w in caught] == [
        "SpokesterEnv.step() after a crash: the ride stays crashed (terminated, reward 0, the world frozen); "
        "call reset() to ride again"
    ]
    assert [out[1] for out in after] == [0.0] * 50 and all(out[2] is True and out[3] is False for out in after)
    for later, _, _, _, later_info in after:
        assert later_info == info
        for key in obs:
            np.testing.assert_array_equal(later[key], obs[key])
    assert env.unwrapped.game.state.distance == info["distance"]
    clone = pickle.loads(pickle.dumps(env.unwrapped))  # a pickled crashed env stays crashed
    try:
        _, reward, terminated, _, clone_info = clone.step(0)
        assert (reward, terminated, clone_info) == (0.0, True, info)
    finally:
        clone.close()
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(0)
    assert reward > 0 and not terminated
    _crash(env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env.step(0), env.step(0)
    assert len(caught) == 1  # once in each crashed episode


def test_a_closed_env_says_so(make_env):
    env = make_env(width=16, height=16, render_mode="rgb_array").unwrapped
    env.reset(seed=0)
    env.close()
    for call in (lambda: env.step(0), lambda: env.reset(seed=1), env.render, env.class_map):
        with pytest.raises(gym.error.ClosedEnvironmentError, match="^SpokesterEnv is closed; make a new one$"):
            call()
    env.close()


@pytest.mark.parametrize("action", [3, -1, 1.5, "left"])
def test_invalid_action_names_the_allowed_actions(make_env, action):
    env = make_env().unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0 \\(keep lane\\), 1 \\(move one lane left\\), 2 \\(move one lane right\\)"):
        env.step(action)


def test_backend_is_chosen_by_backend_and_by_its_deprecated_old_name_renderer():
    new = SpokesterEnv(width=16, height=16, observations=("depth", "flow"), backend="tiny")
    with pytest.warns(DeprecationWarning, match="renderer=.* is deprecated: pass backend="):
        old = SpokesterEnv(width=16, height=16, observations=("depth", "flow"), renderer="tiny")
    try:
        assert new._kwargs["backend"] == old._kwargs["backend"] == "tiny" and "renderer" not in old._kwargs
        _assert_same(_rollout(new, 6, steps=12), _rollout(old, 6, steps=12))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a pickled env is rebuilt with backend=, without a warning
            pickle.loads(pickle.dumps(old)).close()
    finally:
        new.close()
        old.close()
    with pytest.raises(ValueError, match="backend='egl' and renderer='tiny': pass backend= alone"):
        SpokesterEnv(width=16, height=16, backend="egl", renderer="tiny")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError) as error:
        SpokesterEnv(width=16, height=16, renderer="vulkan")
    assert str(error.value) == "backend='vulkan' is not one of ('tiny', 'gl')"


def test_egl_is_a_deprecated_name_of_gl_or_a_clear_error():
    """pybullet's EGL plugin is retired: backend='egl' warns and draws with gl, or fails in one line."""
    with pytest.warns(DeprecationWarning, match="backend='egl'"):
        try:
            env = SpokesterEnv(width=16, height=16, backend="egl")
        except RuntimeError as e:
            assert "backend='gl'" in str(e) and "backend='tiny'" in str(e) and "\n" not in str(e)
            return
    assert env.scene.backend == "gl"
    obs, _ = env.reset(seed=0)
    assert obs["depth"].max() > 0
    env.close()


def test_render_modes_and_keys(make_env, monkeypatch):
    pytest.importorskip("pygame")
    env = make_env(render_mode="rgb_array", observations=("rgb",))
    obs, _ = env.reset(seed=0)
    frame = env.render()
    np.testing.assert_array_equal(frame, obs["rgb"])
    assert (frame[..., 1] > 150).any()  # the green rider is in view
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    human = make_env(render_mode="human")
    human.reset(seed=0)
    human.step(0)
    import pygame

    keys = human.unwrapped.get_keys_to_action()
    assert keys[(pygame.K_LEFT,)] == 1 and keys[(pygame.K_d,)] == 2 and set(keys.values()) == {1, 2}


def test_packed_observation_layout(make_env):
    env = PackedObservation(make_env(observations=("depth", "flow")))
    packed, _ = env.reset(seed=0)
    assert packed.shape == (3, 64, 64) and packed.dtype == np.uint8
    raw = env.unwrapped._last_inv_depth
    assert (packed[0][raw == 0] == 0).all() and packed[0].max() > 100  # sky black, near things bright
    assert abs(int(np.median(packed[1])) - 128) < 20  # flow is centred on 128


def test_action_repeat_plays_each_decision_over_several_frames(make_env):
    """A step of ActionRepeat(3) is three plain steps: the action, then keep lane twice; rewards summed."""
    kwargs = dict(width=32, height=32, observations=("depth",))
    repeated, plain = ActionRepeat(make_env(**kwargs), 3), make_env(**kwargs)
    assert repeated.frames_per_step == 3 and repeated.reset(seed=4)[1]["frames"] == 0
    plain.reset(seed=4)
    for action in (2, 0, 2, 2, 1):
        obs, reward, terminated, truncated, info = repeated.step(action)
        steps = [plain.step(played) for played in (action, 0, 0)]
        np.testing.assert_array_equal(obs["depth"], steps[-1][0]["depth"])
        assert reward == pytest.approx(sum(r[1] for r in steps)) and info["frames"] == 3
        assert info["distance"] == steps[-1][4]["distance"] and not terminated
    # one lane per decision: right, keep, right (already at the right edge), right, left -> lanes 2, then 1
    assert repeated.unwrapped.game.state.rider.target_lane == 1
    assert spokester_env.frame_actions(2, 4) == [2, 0, 0, 0]
    with pytest.raises(ValueError, match="repeat=0 must be an integer >= 1"):
        ActionRepeat(plain, 0)


def test_play_decision_moves_one_lane_sums_rewards_and_stops_at_the_episode_end(make_env):
    env = make_env(width=16, height=16, observations=("depth",), max_episode_steps=5)
    env.reset(seed=1)
    played = play_decision(env, 2, 3)  # right, then keep lane twice
    assert played.frames == len(played.observations) == 3 and played.info["lane"] == 2
    assert played.reward == pytest.approx(played.info["distance"]) and played.reward > 0
    assert not played.terminated and not played.truncated
    assert not np.array_equal(played.observations[0]["depth"], played.observations[-1]["depth"])
    played = play_decision(env, 1, 3)  # the time limit (5 frames) ends this decision after its second frame
    assert played.frames == 2 and played.truncated and not played.terminated and played.info["lane"] == 1
    assert pad_frames(["a", "b"], 4) == ["a", "b", "b", "b"] and pad_frames(["a", "b"], 2) == ["a", "b"]


def test_action_repeat_stops_at_a_crash(make_env):
    """A crash inside a repeated step ends it there: fewer frames, terminated, the crash frame's distance."""
    env = ActionRepeat(make_env(width=32, height=32, observations=("depth",)), 50)
    env.reset(seed=0)
    frames, terminated = [], False
    while not terminated:
        _, _, terminated, truncated, info = env.step(0)  # keep lane until a car ends the ride
        frames.append(info["frames"])
        assert not truncated
    assert info["crashed"] and frames[-1] < 50 and set(frames[:-1]) == {50}


def test_ppo_trains_on_the_env_out_of_the_box(make_env):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    for env, policy in (
        (make_env(width=36, height=36), "MultiInputPolicy"),
        (PackedObservation(make_env(width=36, height=36)), "CnnPolicy"),
    ):
        model = PPO(policy, env, n_steps=32, batch_size=16, n_epochs=1, device="cpu", seed=0)
        model.learn(64)
        assert model.num_timesteps == 64
        action, _ = model.predict(env.observation_space.sample(), deterministic=True)
        assert env.action_space.contains(int(action))


def test_registered_spec():
    assert spokester_env.ENV_ID == "Spokester-v0"  # what users type
    spec = gym.spec(spokester_env.ENV_ID)
    assert spec.max_episode_steps == 3000 and spec.entry_point == "spokester_env.env:SpokesterEnv"
    env = gym.make("Spokester-v0", width=16, height=16)
    assert env.spec.id == spokester_env.ENV_ID and isinstance(env.unwrapped, SpokesterEnv)
    assert env.unwrapped.intrinsics.width == 16
    env.close()
    default = SpokesterEnv()
    assert default.observation_space["depth"].shape == (320, 320, 1) and spokester_env.DEFAULT_IMAGE_SIZE == 320
    default.close()
    assert spokester_env.ACTION_MEANINGS[1] == "move one lane left"


@pytest.mark.filterwarnings("ignore:.*matplotlib is not installed")
def test_gymnasium_play_drives_the_env_with_keys(monkeypatch):
    """gymnasium.utils.play.play runs headless on the env: a held right arrow changes lanes."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame = pytest.importorskip("pygame")
    from gymnasium.utils.play import play

    env = gym.make("Spokester-v0", width=48, height=48, render_mode="rgb_array")
    seen = []

    def callback(obs_t, obs_tp1, action, reward, terminated, truncated, info):
        seen.append((action, info["lane"]))
        if len(seen) == 2:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RIGHT))
        if len(seen) == 4:
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=pygame.K_RIGHT))
        if len(seen) == 8:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    play(env, fps=1000, callback=callback, seed=0)
    actions = [a for a, _ in seen]
    assert 2 in actions and actions[0] == 0 and actions[-1] == 0
    assert seen[-1][1] == 2  # ended in the right lane


def _ride(env, seed: int, frames: int = 40) -> list[dict]:
    observations = [env.reset(seed=seed)[0]]
    for t in range(frames):
        observations.append(env.step(2 if t == 10 else 1 if t == 25 else 0)[0])
    return observations


def test_first_person_camera_sees_the_road_from_the_riders_head(make_env):
    """The first-person preset: no rider pixels on a ride with lane changes (the box is behind the eye),
    and seeded rides repeat; the env pickles with its camera."""
    first = make_env(width=48, height=48, observations=("depth", "flow", "rgb"), camera="first_person").unwrapped
    follow = make_env(width=48, height=48, observations=("depth", "flow", "rgb")).unwrapped
    rider = spokester_env.CLASS_NAMES.index("rider")
    seen = {"first": 0, "follow": 0}
    for name, env in (("first", first), ("follow", follow)):
        env.reset(seed=4)
        for t in range(40):
            env.step(2 if t == 10 else 1 if t == 25 else 0)
            seen[name] += int((env.class_map() == rider).sum())
    assert seen["first"] == 0 and seen["follow"] > 1000
    assert first.config.camera == spokester_env.CAMERA_PRESETS["first_person"]
    assert spokester_env.camera_name(first.config.camera) == "first_person"
    assert spokester_env.camera_name(follow.config.camera) == spokester_env.DEFAULT_CAMERA == "follow"
    again = make_env(width=48, height=48, observations=("depth", "flow", "rgb"), camera="first_person").unwrapped
    for a, b in zip(_ride(first, 7), _ride(again, 7), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    clone = pickle.loads(pickle.dumps(first))
    assert clone.config.camera == first.config.camera
    np.testing.assert_array_equal(clone.step(0)[0]["depth"], first.step(0)[0]["depth"])
    clone.close()


def test_camera_accepts_presets_and_rigs_and_names_the_presets_on_error(make_env):
    rig = spokester_env.CameraConfig(height=2.5, behind=6.0)
    env = make_env(camera=rig).unwrapped
    assert env.config.camera == rig and spokester_env.camera_name(rig) is None
    config = spokester_env.GameConfig(start_speed=7.0)
    env = make_env(camera="first_person", config=config).unwrapped
    assert env.config.start_speed == 7.0 and env.config.camera.behind < 0  # the camera replaces the config's
    with pytest.raises(ValueError, match="camera='drone': choose one of follow, first_person") as error:
        make_env(camera="drone")
    assert "\n" not in str(error.value)


def test_scene_presets_change_the_roadside_only(make_env):
    """The open scene has more sky than the city and the same game; a scene and its name round-trip."""
    city = make_env(width=48, height=48, camera="first_person").unwrapped
    open_ = make_env(width=48, height=48, camera="first_person", scene="open").unwrapped
    sky = {}
    for name, env in (("city", city), ("open", open_)):
        env.reset(seed=2)
        depths = [env.step(0)[0]["depth"] for _ in range(10)]
        sky[name] = float(np.mean([(d == 0).mean() for d in depths]))
    assert sky["open"] > sky["city"] + 0.1
    assert city.game.state.distance == open_.game.state.distance  # the same ride
    assert spokester_env.scene_name(open_.config) == "open" and spokester_env.scene_name(city.config) == "city"
    custom = spokester_env.GameConfig(building_setback=1.0)
    assert spokester_env.scene_name(custom) is None
    assert spokester_env.with_scene(custom, "city") == spokester_env.GameConfig()
    with pytest.raises(ValueError, match="scene='desert': choose one of city, open"):
        make_env(scene="desert")
