"""The training command `python -m spokester_train`: one-line errors, resuming with more steps, flags reaching
the config."""

import dataclasses
import json

import pytest

from neural_render import ConditionSource, ConditionStats, build_renderer, load_renderer, save_renderer
from spokester_train.__main__ import build_config, parse_args
from spokester_train.__main__ import main as train_main
from spokester_train.recipe.checkpoint import CHECKPOINT, load_state
from spokester_train.recipe.config import RESUMABLE_CHANGES, Stage, config_from_dict, make_config
from spokester_train.recipe.loop import train


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--preset", "huge", "--out", "x", "--video", "v.mp4"], "cpu-tiny"),
        (["--out", "x", "--video", "v.mp4", "--steps", "0"], "--steps"),
        (["--out", "x"], "--video"),
        (["--out", "x", "--resume", "--renderer", "tiny-head"], "--renderer: a resumed run keeps its checkpoint's"),
        (["--out", "x", "--video", "v.mp4", "--device", "tpu"], "--device: must be cpu, cuda or cuda:N, got 'tpu'"),
    ],
)
def test_train_command_bad_arguments_are_one_line(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and err.count("\n") == 1


def test_train_command_missing_video_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--out", str(tmp_path / "run"), "--video", str(tmp_path / "missing.mp4"), "--no-progress"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "missing.mp4" in err and err.count("\n") == 1


def test_train_command_resumes_a_run_with_more_steps(tiny_config, tmp_path, capsys):
    train(tiny_config(stages=(Stage(steps=2, image_size=tiny_config.size, clip_frames=4, batch_size=2),)))
    log = tmp_path / "run" / "log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:  # pretend the first part took 1000 s, and a third step that the checkpoint lacks
        if line.get("step") == 2 and "elapsed_s" in line:
            line["elapsed_s"] = 1000.0
    lines.append({"step": 3, "loss": 1.0, "elapsed_s": 5000.0})
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    result = train_main(["--out", str(tmp_path / "run"), "--resume", "--steps", "3"])  # with its progress bar
    assert result.step == 3 and [h["step"] for h in result.history] == [3]
    printed = capsys.readouterr()
    assert printed.out == f"{result.out}: step 3; renderer {result.renderer}\n"  # the bar is a diagnostic: stderr
    assert "train" in printed.err
    assert load_state(tmp_path / "run" / CHECKPOINT)["config"]["stages"][0]["steps"] == 3
    provenance = load_renderer(result.renderer).provenance
    assert provenance["resumed_at_steps"] == [2]  # the run's wall time goes on from its log at step 2
    assert 1000.0 <= provenance["train_wall_s"] < 1500.0


def test_loader_workers_reach_the_config_from_the_command_line_and_preset():
    assert make_config("gpu-base").loader_workers == 8 and make_config("cpu-tiny").loader_workers == 0
    args = parse_args(["--preset", "cpu-tiny", "--video", "v.mp4", "--out", "o", "--workers", "3"])
    assert build_config(args).loader_workers == 3
    with pytest.raises(ValueError, match="loader_workers=-2: must be >= 0"):
        make_config("cpu-tiny", loader_workers=-2)


def test_extractor_options_reach_the_config_and_a_resume_keeps_its_own(tmp_path, capsys):
    """`--depth/--flow/--teacher/--weights` choose the extractors as `spokester_train.data.extract` does; a network
    with a local checkpoint gets the weights folder, the shipped offline ones do not."""
    base = ["--video", "v.mp4", "--out", str(tmp_path / "o"), "--no-sky-to-zero"]
    config = build_config(parse_args([*base, "--depth", "depth-anything-v2-small", "--weights", "/w"]))
    assert config.extractors == {
        "flow": "dis",
        "depth": {"name": "depth-anything-v2-small", "weights": "/w"},
        "teacher": "deeplab",
    }
    config = build_config(parse_args([*base, "--teacher", "none", "--no-irepa"]))
    assert config.extractors == {"flow": "dis", "depth": "pydnet"} and not config.irepa
    assert build_config(parse_args(base)).extractors == make_config("cpu-tiny").extractors
    with pytest.raises(ValueError, match="irepa=True needs a teacher extractor"):
        build_config(parse_args([*base, "--teacher", "none"]))
    with pytest.raises(SystemExit) as stop:
        parse_args(["--resume", "--out", "o", "--depth", "pydnet"])
    assert stop.value.code == 2 and "--depth: a resumed run keeps" in capsys.readouterr().err


def test_configs_of_old_checkpoints_read_with_the_new_names():
    """Before the renames a config said `renderer`, `cache_root` and `renderer_overrides={"depth": ...}`."""
    old = make_config("cpu-tiny", renderer_overrides={"num_blocks": 2}).to_dict()
    old["renderer"] = old.pop("renderer_preset")
    old["cache_root"] = old.pop("label_root")
    old["renderer_overrides"] = {"depth": 2}
    config = config_from_dict(old)
    assert config == make_config("cpu-tiny", renderer_overrides={"num_blocks": 2})
    with pytest.raises(ValueError, match="unknown fields \\['rendrer'\\]"):
        config_from_dict({**old, "rendrer": "tiny"})


def test_the_game_and_the_network_are_chosen_on_the_command_line(tmp_path, capsys):
    args = parse_args(["--video", "v.mp4", "--out", "o", "--camera", "first_person", "--scene", "open"])
    config = build_config(parse_args(["--video", "v.mp4", "--out", "o", "--renderer", "tiny-head", "--minutes", "5"]))
    assert (build_config(args).camera, build_config(args).scene) == ("first_person", "open")
    assert config.renderer_preset == "tiny-head" and config.max_minutes == 5.0
    assert (make_config("cpu-tiny").camera, make_config("cpu-tiny").scene) == ("follow", "city")
    for bad in (["--camera", "drone"], ["--minutes", "0"]):
        with pytest.raises(SystemExit) as stop:
            parse_args(["--video", "v.mp4", "--out", "o", *bad])
        assert stop.value.code == 2 and bad[0] in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--resume", "--out", "o", "--camera", "follow"])
    assert "--camera: a resumed run keeps" in capsys.readouterr().err


def test_the_peak_learning_rate_is_chosen_on_the_command_line_and_kept_on_resume(capsys):
    """--lr replaces the preset's peak rate (the schedule follows it); a resumed run keeps its own schedule."""
    config = build_config(parse_args(["--video", "v.mp4", "--out", "o", "--lr", "1.5e-4"]))
    assert config.lr == 1.5e-4 and make_config("cpu-tiny").lr == 5e-4
    assert build_config(parse_args(["--video", "v.mp4", "--out", "o"])).lr == 5e-4
    for bad, said in ((["--video", "v.mp4", "--lr", "0"], "--lr"), (["--resume", "--lr", "1e-4"], "--lr: a resumed")):
        with pytest.raises(SystemExit) as stop:
            parse_args(["--out", "o", *bad])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and said in err and err.count("\n") == 1


def test_mirroring_is_asked_on_the_command_line_and_a_resume_keeps_its_own(capsys):
    assert build_config(parse_args(["--video", "v.mp4", "--out", "o", "--mirror"])).mirror is True
    assert build_config(parse_args(["--video", "v.mp4", "--out", "o"])).mirror is False
    with pytest.raises(SystemExit) as stop:
        parse_args(["--out", "o", "--resume", "--mirror"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--mirror: a resumed run keeps" in err and "mirroring" in err


def test_entering_cars_are_asked_on_the_command_line_with_car_masks_and_a_resume_keeps_its_own(capsys):
    base = ["--video", "v.mp4", "--out", "o", "--car-masks"]
    assert build_config(parse_args([*base, "--cars-enter", "0.5"])).cars_enter == 0.5
    assert build_config(parse_args(base)).cars_enter == 0.0
    for bad, said in (
        ([*base, "--cars-enter", "-0.1"], "--cars-enter: must be >= 0.0, got -0.1"),
        (["--out", "o", "--resume", "--cars-enter", "0.5"], "--cars-enter: a resumed run keeps"),
    ):
        with pytest.raises(SystemExit) as stop:
            parse_args(bad)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and said in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="cars_enter=0.5 needs car_masks=True"):
        build_config(parse_args(["--video", "v.mp4", "--out", "o", "--cars-enter", "0.5"]))


def test_the_car_loss_weight_is_asked_on_the_command_line_and_a_resume_keeps_its_own(capsys):
    base = ["--video", "v.mp4", "--out", "o", "--car-masks"]
    assert build_config(parse_args([*base, "--car-loss-weight", "10"])).car_loss_weight == 10.0
    assert build_config(parse_args(base)).car_loss_weight == 1.0
    with pytest.raises(SystemExit) as stop:
        parse_args(["--out", "o", "--resume", "--car-loss-weight", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--car-loss-weight: a resumed run keeps" in err and "car loss weight" in err


@pytest.mark.filterwarnings("ignore:.*unit statistics")
@pytest.mark.parametrize("flag", ["sky_at_clip", "car_slabs"])
def test_a_depth_reading_flag_holds_when_asked_or_when_the_start_renderer_had_it(tmp_path, capsys, flag):
    base, option = ["--video", "v.mp4", "--out", "o"], "--" + flag.replace("_", "-")
    assert getattr(build_config(parse_args([*base, option])), flag)
    assert not getattr(build_config(parse_args(base)), flag) and not getattr(make_config("cpu-tiny"), flag)
    network = build_renderer("tiny", image_size=32, num_blocks=2, width=64, heads=2)
    for flagged in (False, True):
        source = dataclasses.replace(ConditionSource.unit(), **{flag: flagged})
        start = save_renderer(tmp_path / f"start-{flagged}.safetensors", network, ConditionStats({"game": source}))
        assert getattr(build_config(parse_args([*base, "--init-from", str(start)])), flag) is flagged
        assert getattr(build_config(parse_args([*base, "--init-from", str(start), option])), flag)
    with pytest.raises(SystemExit) as stop:
        parse_args(["--resume", "--out", "o", option])
    assert stop.value.code == 2 and f"{option}: a resumed run keeps" in capsys.readouterr().err


def test_a_host_without_the_game_is_told_so_on_the_command_line():
    """--game-stats and --no-eval reach the config; both may change when a run is resumed (another host)."""
    config = build_config(parse_args(["--video", "store/", "--out", "o", "--game-stats", "g.json", "--no-eval"]))
    assert (config.game_stats, config.evaluate) == ("g.json", False)
    default = build_config(parse_args(["--video", "v.mp4", "--out", "o"]))
    assert (default.game_stats, default.evaluate) == (None, True)
    assert {"game_stats", "evaluate"} <= set(RESUMABLE_CHANGES)


@pytest.mark.filterwarnings("ignore:.*unit statistics")
def test_init_from_takes_the_renderers_network_game_and_steps_unless_told(tmp_path, capsys):
    """--init-from: the run trains that renderer's network (the preset it names, its differences as overrides),
    for its camera and scene and with its sampling steps; --camera/--scene may change, the network may not."""
    start = save_renderer(
        tmp_path / "start.safetensors",
        build_renderer("tiny-head", image_size=32, num_blocks=2, width=64, heads=2),
        game={"camera": "first_person", "scene": "open"},
        num_steps=4,
    )
    base = ["--video", "v.mp4", "--out", str(tmp_path / "o"), "--init-from", str(start)]
    config = build_config(parse_args(base))
    network = {"num_blocks": 2, "width": 64, "heads": 2, "pixel_head": 16}  # a tiny-head of other sizes
    assert (config.renderer_preset, config.renderer_overrides) == ("tiny", network)
    assert (config.camera, config.scene, config.sample_steps, config.init_from) == (
        "first_person",
        "open",
        4,
        str(start),
    )
    assert config.eval_cache_steps == (None, 2)  # its steps' clean pass and half way, not the preset's (None, 3, 6)
    built = build_renderer(config.renderer_preset, image_size=32, **config.renderer_overrides)
    assert built.config == load_renderer(start).model.config
    assert build_config(parse_args([*base, "--camera", "follow"])).camera == "follow"
    assert make_config("cpu-tiny").init_from is None

    with pytest.raises(SystemExit) as stop:
        train_main([*base, "--renderer", "tiny-head"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--renderer: a run started from a renderer" in err
    with pytest.raises(SystemExit) as stop:
        train_main([*base[:-1], str(tmp_path / "missing.safetensors")])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "missing.safetensors" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as stop:
        parse_args(["--resume", "--out", "o", "--init-from", str(start)])
    assert stop.value.code == 2 and "--init-from: a resumed run keeps" in capsys.readouterr().err
