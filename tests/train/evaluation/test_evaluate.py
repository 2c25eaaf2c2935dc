"""Evaluation: the command's JSON, PSNR ordering of renderers, the renderer's own extractors and flags."""

import json
import math

import numpy as np
import pytest

from neural_render import ConditionStats, build_renderer, save_renderer
from spokester_train.data.extract import extract
from spokester_train.data.extractors import FrameLabeler, StreamSpec, register
from spokester_train.data.store import LabelStore
from spokester_train.data.video import crop_resize
from spokester_train.evaluation.evaluate import (
    FIGURES,
    EvalClip,
    default_cache_steps,
    evaluate_clip,
    load_eval_clip,
    sample_mean,
)
from spokester_train.evaluation.evaluate import main as evaluate_main
from spokester_train.evaluation.metrics import MAX_PSNR


@pytest.fixture(scope="module")
def eval_clip(road_clip, tmp_path_factory) -> EvalClip:
    """8 real road frames at 32 px with their DIS flow (depth is not needed by the test doubles)."""
    root = tmp_path_factory.mktemp("eval-labels")
    store = LabelStore(extract(road_clip, root, size=32, depth=None, teacher=None, max_frames=9, progress=False))
    frames = np.asarray(store.stream("frames")[1:9])
    flow = np.asarray(store.stream("flow_1")[1:9], dtype=np.float32)
    return EvalClip(frames=frames, depth=np.ones((8, 32, 32, 1), np.float32), flow=flow)


class ReplayRenderer:
    """Test double: renders the real frames back, with Gaussian noise of a chosen std (0 = perfect)."""

    def __init__(self, frames: np.ndarray, noise: float):
        self.frames, self.noise, self.index = frames, noise, 0
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None):
        self.index, self.rng = 0, np.random.default_rng(seed)

    def step(self, depth, flow, cars=None):
        real = self.frames[self.index : self.index + len(depth)].astype(np.float64)
        self.index += len(depth)
        noisy = real + self.noise * self.rng.standard_normal(real.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def test_psnr_orders_a_perfect_renderer_above_noisy_ones(eval_clip):
    figures = {
        noise: evaluate_clip(lambda k, n=noise: ReplayRenderer(eval_clip.frames, n), eval_clip, [None, 3], 2)
        for noise in (0.0, 8.0, 40.0)
    }
    perfect, slightly, very = (figures[n] for n in (0.0, 8.0, 40.0))
    assert perfect["psnr"] == {"none": MAX_PSNR, "3": MAX_PSNR} and perfect["ar_loss"]["none"] == 0.0
    assert perfect["psnr"]["none"] > slightly["psnr"]["none"] > very["psnr"]["none"] > 0
    assert 28 < slightly["psnr"]["none"] < 32  # 20 log10(255 / 8) = 30.1 dB
    assert perfect["ar_loss"]["none"] < slightly["ar_loss"]["none"] < very["ar_loss"]["none"]
    # the real frames are as steady as the real frames; noise makes the rendering flicker
    assert perfect["warp_error"]["none"] == pytest.approx(perfect["warp_error_real"], abs=1e-4)
    assert very["warp_error"]["none"] > slightly["warp_error"]["none"] > perfect["warp_error"]["none"]
    # pixel noise is detail (a little of it clipped at 0 and 255); a perfect rendering has no error to share out
    assert slightly["detail_share"]["none"] > 0.9 and perfect["detail_share"]["none"] == 0.0
    blurs = perfect["psnr_real_blurred"]
    assert list(blurs) == ["2", "4", "8"] and 30 > blurs["2"] > blurs["4"] > blurs["8"] > 10


def test_the_mean_of_samples_averages_their_noise_away(eval_clip):
    """Four renderings with independent noise of std 40 average to noise of std 20: about 6 dB more PSNR
    (20 log10 2) than one; the first rendering, when given, is used as it is."""
    make = lambda k: ReplayRenderer(eval_clip.frames, 40.0)  # noqa: E731
    one = evaluate_clip(make, eval_clip, [None], 2, seed=5)["psnr"]["none"]
    four = sample_mean(make, eval_clip, None, 2, seeds=[5, 6, 7, 8])
    assert four["samples"] == 4 and four["cache_at_step"] == "none"
    assert 5.0 < four["psnr"] - one < 7.0
    perfect = eval_clip.frames
    given = sample_mean(make, eval_clip, 3, 2, seeds=[5], first=perfect)
    assert given["psnr"] == MAX_PSNR and given["cache_at_step"] == "3"


def test_eval_command_prints_the_documented_json(road_clip, tmp_path, capsys):
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=2, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"), {"test": True})
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "4", "--json"]
    argv += ["--cache-at-step", "none,1", "--steps", "2", "--labels", str(tmp_path / "labels")]
    result = evaluate_main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    for key in FIGURES:
        assert set(printed[key]) == {"none", "1"} and all(math.isfinite(v) for v in printed[key].values())
    assert 0.8 < printed["seam_ratio_real"] < 1.3 and printed["boundary_ratio_real"] > 0
    assert math.isfinite(printed["warp_error_real"]) and printed["frames"] == 4
    assert printed["noise_correlation"] == 0.95  # the sampler's default
    assert printed["sample_mean"] is None  # not asked for
    # the untrained network predicts 0 (mid grey) everywhere: PSNR is that of a grey picture
    assert 5 < printed["psnr"]["none"] < 20
    # so the mean of its samples is that same grey picture, scored for the first setting asked for
    again = evaluate_main([*argv[:-4], "--cache-at-step", "1,none", "--steps", "2", "--samples", "3", *argv[-2:]])
    assert again["sample_mean"] == {
        "samples": 3,
        "cache_at_step": "1",
        "psnr": again["psnr"]["1"],
        "psnr_colour_matched": again["psnr_colour_matched"]["1"],
        "warp_error": again["warp_error"]["1"],
    }


def test_default_cache_settings_follow_the_steps():
    assert default_cache_steps(12) == (None, 3, 6, 9)  # the settings evaluated before steps were a checkpoint's
    assert default_cache_steps(6) == (None, 1, 3, 4)
    assert default_cache_steps(1) == (None, 0)


def test_eval_command_samples_with_the_checkpoints_steps(road_clip, tmp_path, capsys):
    """Without --steps a renderer is evaluated with its own sampling steps, and the default --cache-at-step
    settings follow them (none and a quarter, half, three quarters of the way)."""
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=1, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"), num_steps=4)
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "4", "--json"]
    result = evaluate_main([*argv, "--labels", str(tmp_path / "labels")])
    assert result["num_steps"] == 4 and set(result["psnr"]) == {"none", "1", "2", "3"}
    with pytest.raises(SystemExit) as stop:
        evaluate_main([*argv, "--cache-at-step", "4"])
    assert stop.value.code == 2 and "--cache-at-step '4': allowed values are none or 0..3" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--steps", "12", "--cache-at-step", "12"], "none or 0..11"),
        (["--frames", "1"], "--frames"),
        (["--window", "0"], "--window"),
        (["--samples", "0"], "--samples"),
        (["--noise-correlation", "1.5"], "--noise-correlation 1.5: must lie in [0, 1]"),
    ],
)
def test_eval_command_bad_arguments_are_one_line(extra, named, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate_main(["--video", "v.mp4", *extra])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and named in err and err.count("\n") == 1


def test_eval_clip_needs_the_depth_stream(road_clip, tmp_path):
    store = LabelStore(extract(road_clip, tmp_path, size=32, depth=None, teacher=None, max_frames=8, progress=False))
    with pytest.raises(KeyError, match="depth"):
        load_eval_clip(store, 5, 2)


@register("depth", "test-evaluation-depth")
class BrightnessDepth(FrameLabeler):
    """A depth stand-in that is not the default one: what a renderer trained on another network records."""

    kind = "depth"

    def streams(self, size):
        return {"depth": StreamSpec((size, size), "float32", "test: brightness + 0.1")}

    def __call__(self, frames, box, size):
        return {"depth": np.stack([crop_resize(f, box, size).mean(axis=-1) / 255.0 + 0.1 for f in frames])}


def test_evaluation_labels_the_clip_with_the_renderers_own_extractors(road_clip, tmp_path, capsys):
    """A renderer whose provenance names a non-default depth network is evaluated on that network's depth
    (not PyDNet's), unless the command is told otherwise."""
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=1, heads=2)
    extractors = {"flow": "dis", "depth": "test-evaluation-depth", "teacher": "deeplab"}
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"), {"extractors": extractors})
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "2", "--steps", "1"]
    argv += ["--cache-at-step", "none", "--labels", str(tmp_path / "labels"), "--json"]
    result = evaluate_main(argv)
    assert result["extractors"] == {"flow": "dis", "depth": "test-evaluation-depth"}
    (store_dir,) = (tmp_path / "labels").iterdir()
    assert LabelStore(store_dir).manifest["extractors"]["depth"] == {"name": "test-evaluation-depth"}
    assert "teacher" not in LabelStore(store_dir).streams  # no sky_to_zero: no sky mask needed
    overridden = evaluate_main([*argv, "--depth", "pydnet"])
    assert overridden["extractors"]["depth"] == "pydnet"
    depths = {LabelStore(d).manifest["extractors"]["depth"]["name"] for d in (tmp_path / "labels").iterdir()}
    assert depths == {"test-evaluation-depth", "pydnet"}
    capsys.readouterr()


def test_eval_command_writes_a_sheet_and_a_video_a_person_can_look_at(road_clip, tmp_path, capsys):
    import av
    import cv2

    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=1, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"))
    out = tmp_path / "look"
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "6", "--steps", "1"]
    argv += ["--cache-at-step", "none", "--labels", str(tmp_path / "labels"), "--json"]
    evaluate_main([*argv, "--sheet", str(out / "sheet.png"), "--mp4", str(out / "real_vs_rendered.mp4")])
    sheet = cv2.imread(str(out / "sheet.png"))
    assert sheet.shape == (18 + 4 * 32, 4 * 32, 3)  # a header, 4 frames of real | rendered | depth | flow
    assert abs(int(sheet[18:, 32:64].mean()) - 128) <= 2  # the untrained network paints mid grey
    with av.open(str(out / "real_vs_rendered.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (32, 64, 3)
    assert sorted(p.name for p in out.iterdir()) == ["real_vs_rendered.mp4", "sheet.png"]  # nothing half-written
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        evaluate_main([*argv, "--sheet", str(out / "sheet.jpg")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--sheet" in err and ".png" in err and err.count("\n") == 1


def test_eval_command_keeps_labels_in_the_user_cache_says_where_and_says_when_the_clip_is_short(
    road_clip, tmp_path, monkeypatch, capsys
):
    """Without --labels the store goes to $SPOKESTER_CACHE/labels (not ./runs of the folder it runs in), the
    command says where on stderr, and --frames beyond the clip is said, not silently cut."""
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=1, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"))
    monkeypatch.setenv("SPOKESTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "100000", "--steps", "1"]
    result = evaluate_main([*argv, "--cache-at-step", "none", "--json"])
    out, err = capsys.readouterr()
    (store_dir,) = (tmp_path / "cache" / "labels").iterdir()
    assert f"road_clip.mp4: labels written to {store_dir}\n" in err
    assert not (tmp_path / "runs").exists()
    available = LabelStore(store_dir).n_frames - 1  # frame 0 has no flow
    assert result["frames"] == available // 2 * 2 < 100000 and json.loads(out)["frames"] == result["frames"]
    assert f"note: --frames 100000: road_clip.mp4 has {result['frames']} frames to evaluate" in err


def test_the_text_report_is_all_that_reaches_stdout(road_clip, tmp_path, capsys):
    """Without --json the figures are printed one per line; the extraction's progress bar goes to stderr."""
    model = build_renderer("tiny", image_size=32, patch_size=8, width=64, num_blocks=1, heads=2)
    checkpoint = save_renderer(tmp_path / "net", model, ConditionStats.unit("game"))
    argv = ["--checkpoint", str(checkpoint), "--video", str(road_clip), "--frames", "4", "--steps", "1"]
    evaluate_main([*argv, "--cache-at-step", "none", "--labels", str(tmp_path / "labels")])  # extracts its labels
    out, err = capsys.readouterr()
    assert "extract road_clip.mp4" in err and "extract" not in out
    assert [line.split(":")[0].strip() for line in out.splitlines()] == [*FIGURES, "real warp", "real blurred"]
