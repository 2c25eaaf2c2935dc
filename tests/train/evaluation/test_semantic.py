"""Semantic agreement: the class mapping's arithmetic, the game's class maps, DeepLab's maps and the command."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from spokester_env import CLASS_NAMES
from spokester_train.data.extractors.teacher import DeepLabFeatures
from spokester_train.data.game import game_ride
from spokester_train.evaluation.semantic import (
    AGREEMENT,
    CITYSCAPES,
    agreement_figures,
    car_spread,
    confusion,
    flat_cars,
    main,
    segment,
    vehicle_figures,
)

SKY, GROUND, BUILDINGS, CARS, RIDER = range(5)


@pytest.fixture(scope="module")
def deeplab():
    return DeepLabFeatures()


def test_mapping_names_every_game_class_and_only_cityscapes_classes():
    assert CLASS_NAMES == ("sky", "ground", "buildings", "cars", "rider")
    assert set(AGREEMENT) == set(CLASS_NAMES)
    assert all(name in CITYSCAPES for names in AGREEMENT.values() for name in names)
    assert AGREEMENT["sky"] == ("sky",) and AGREEMENT["cars"] == ("car", "truck", "bus") and len(CITYSCAPES) == 19


def test_agreement_arithmetic_on_hand_made_maps():
    c = CITYSCAPES.index
    game = np.array([[SKY, SKY, GROUND, GROUND], [BUILDINGS, CARS, RIDER, GROUND]])
    seen = np.array(
        [
            [c("sky"), c("building"), c("road"), c("sidewalk")],
            [c("vegetation"), c("car"), c("bicycle"), c("car")],
        ]
    )
    counts = confusion(game, seen)
    assert counts.shape == (5, 19) and counts.sum() == 8 and counts[GROUND, c("car")] == 1
    figures = agreement_figures(counts)
    classes = figures["classes"]
    assert classes["sky"] == {"pixels": 2, "agreement": 0.5, "fractions": {"sky": 0.5, "building": 0.5}}
    assert classes["ground"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert classes["ground"]["fractions"] == pytest.approx({"road": 1 / 3, "sidewalk": 1 / 3, "car": 1 / 3}, abs=1e-4)
    assert [classes[k]["agreement"] for k in ("buildings", "cars", "rider")] == [1.0, 1.0, 1.0]
    assert figures["agreement"] == 0.75  # 6 of 8 pixels
    assert figures["class_mean"] == pytest.approx((0.5 + 2 / 3 + 3) / 5, abs=1e-4)


def test_agreement_lists_the_top_classes_then_other_and_skips_empty_classes():
    game = np.full(20, GROUND)
    seen = np.repeat(np.arange(7), [8, 4, 3, 2, 1, 1, 1])  # road 8, sidewalk 4, building 3, ...
    figures = agreement_figures(confusion(game, seen), top=3)
    ground = figures["classes"]["ground"]
    assert ground["fractions"] == {"road": 0.4, "sidewalk": 0.2, "building": 0.15, "other": 0.25}
    assert ground["agreement"] == 0.6 and figures["agreement"] == 0.6 and figures["class_mean"] == 0.6
    assert figures["classes"]["sky"] == {"pixels": 0, "agreement": None, "fractions": {}}
    with pytest.raises(ValueError, match="different shapes"):
        confusion(game, seen[:5])


def test_game_class_map_has_sky_where_depth_is_zero_and_ground_below():
    ride = game_ride(64, 2, seed=0, classes=True)
    classes, depth = ride.classes, ride.depth[..., 0]
    assert classes.shape == (2, 64, 64) and classes.dtype == np.uint8
    np.testing.assert_array_equal(classes == SKY, depth == 0)
    assert (classes[:, 0, 28:36] == SKY).all()  # the top of the view, down the road, is sky
    assert (classes[:, -4:, 24:40] == GROUND).all()  # below the rider, the ground
    assert (classes[:, :20, :8] == BUILDINGS).all()  # top left: the row of buildings
    assert {RIDER, CARS} <= set(np.unique(classes).tolist())


def test_segment_keeps_the_frame_upright(deeplab, road_full_frames, road_box):
    square = cv2.resize(road_box.crop(road_full_frames[0]), (128, 128), interpolation=cv2.INTER_AREA)
    classes = segment(square[None], deeplab)
    assert classes.shape == (1, 128, 128) and classes.dtype == np.uint8
    road = CITYSCAPES.index("road")
    assert (classes[0, -32:] == road).mean() > 0.5 and (classes[0, :32] == road).mean() < 0.05


def test_command_prints_the_documented_json(tiny_checkpoint, capsys):
    result = main(["--checkpoint", str(tiny_checkpoint), "--frames", "4", "--seed", "1", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert {"neural", "cube", "mapping", "checkpoint", "frames", "seed", "size", "num_steps", "window"} <= set(printed)
    assert printed["frames"] == 4 and printed["size"] == 32 and printed["mapping"]["ground"] == ["road", "sidewalk"]
    for view in ("neural", "cube"):
        figures = printed[view]
        assert set(figures["classes"]) == set(CLASS_NAMES)
        pixels = {k: v["pixels"] for k, v in figures["classes"].items()}
        assert sum(pixels.values()) == 4 * 32 * 32 and pixels["sky"] > 0 and pixels["ground"] > 0
        for entry in figures["classes"].values():
            if entry["pixels"]:
                assert sum(entry["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
                assert 0.0 <= entry["agreement"] <= 1.0
        weighted = sum(v["agreement"] * v["pixels"] for v in figures["classes"].values() if v["pixels"])
        assert figures["agreement"] == pytest.approx(weighted / (4 * 32 * 32), abs=1e-3)


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["--frames", "1"], 2, "--frames: must be >= 2, got 1"),
        (["--checkpoint", "missing.safetensors"], 1, "missing"),
        (["--look", "highway"], 1, "look 'highway': this renderer paints only 'any' (it has no looks)"),
        (["--cars", "unmasked"], 1, "cars='unmasked': this renderer is not told where the cars are"),
        (["--cars", "hidden"], 2, "--cars: invalid choice: 'hidden'"),
    ],
)
def test_command_errors_are_one_line(argv, code, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--json"])
    err = capsys.readouterr().err
    assert exit_info.value.code == code and fragment in err and err.count("\n") == 1
    assert err.startswith("python -m spokester_train.evaluation.semantic: error:")


def test_vehicle_figures_count_only_cars_big_enough_to_see():
    """A 10 x 10 car read as a car, a 2 x 2 car (too small to count) read as road, and a phantom car on the
    road: one seen car, fully agreed and detected, and the phantom's share of the other pixels."""
    car, road = CLASS_NAMES.index("cars"), CLASS_NAMES.index("ground")
    game = np.full((1, 32, 32), road, np.uint8)
    game[0, 2:12, 2:12] = car
    game[0, 20:22, 20:22] = car
    read = np.full((1, 32, 32), CITYSCAPES.index("road"), np.uint8)
    read[0, 2:12, 2:12] = CITYSCAPES.index("car")
    read[0, 25:30, 25:30] = CITYSCAPES.index("truck")  # no car there in the game
    figures = vehicle_figures(game, read, min_share=0.05)  # 51 pixels of 1024
    assert figures["seen_cars"] == 1 and figures["seen_agreement"] == 1.0 and figures["seen_detected"] == 1.0
    assert figures["hallucinated"] == pytest.approx(25 / (1024 - 104), abs=1e-4)
    assert vehicle_figures(game, read, min_share=0.5)["seen_agreement"] is None  # no car that big


def test_command_reports_vehicles_for_the_camera_asked_for(tiny_checkpoint, capsys):
    result = main(["--checkpoint", str(tiny_checkpoint), "--frames", "2", "--camera", "first_person", "--json"])
    capsys.readouterr()
    assert result["camera"] == "first_person" and result["scene"] == "city"  # the renderer's own scene
    assert set(result["vehicles"]) == {"neural", "cube"}
    assert set(result["vehicles"]["cube"]) == {"seen_cars", "seen_agreement", "seen_detected", "hallucinated"}
    assert result["neural"]["classes"]["rider"]["pixels"] == 0  # the first-person camera does not see the rider


def test_one_report_covers_every_camera(tiny_checkpoint, capsys):
    """`--camera all`: the figures of a ride seen by each camera preset, in one run and one JSON object."""
    result = main(["--checkpoint", str(tiny_checkpoint), "--frames", "2", "--camera", "all", "--json"])
    assert json.loads(capsys.readouterr().out) == result
    assert list(result) == ["cameras"] and list(result["cameras"]) == ["follow", "first_person"]
    follow, first = result["cameras"]["follow"], result["cameras"]["first_person"]
    assert follow["camera"] == "follow" and first["camera"] == "first_person"
    assert follow["neural"]["classes"]["rider"]["pixels"] > 0 == first["neural"]["classes"]["rider"]["pixels"]
    assert follow["seed"] == first["seed"] and follow["scene"] == first["scene"]


def test_several_rides_pool_their_pixels_and_list_each_ride(tiny_checkpoint, capsys):
    """`--rides 2`: the figures are over both rides' pixels (pixel counts add up, the pooled agreement is the
    pixel-weighted mean of the rides'), and each ride is listed with its seed and figures."""
    result = main(["--checkpoint", str(tiny_checkpoint), "--frames", "4", "--seed", "5", "--rides", "2", "--json"])
    assert json.loads(capsys.readouterr().out) == result
    assert result["frames"] == 4 and result["seed"] == 5 and [r["seed"] for r in result["rides"]] == [5, 6]
    for view in ("neural", "cube"):
        assert sum(c["pixels"] for c in result[view]["classes"].values()) == 2 * 4 * 32 * 32
    alone = [main(["--checkpoint", str(tiny_checkpoint), "--frames", "4", "--seed", str(s), "--json"]) for s in (5, 6)]
    capsys.readouterr()
    for view in ("neural", "cube"):
        for name in CLASS_NAMES:  # the same game, so the same pixels of each class
            assert result[view]["classes"][name]["pixels"] == sum(a[view]["classes"][name]["pixels"] for a in alone)
    cube_alone = np.mean([a["cube"]["agreement"] for a in alone])  # the cube view has no noise: the same rides
    assert result["cube"]["agreement"] == pytest.approx(cube_alone, abs=1e-3)
    assert result["neural"]["agreement"] == pytest.approx(np.mean([r["agreement"] for r in result["rides"]]), abs=1e-3)
    assert result["rides"][0]["agreement"] == pytest.approx(alone[0]["neural"]["agreement"], abs=0.02)
    assert len(alone[0]["rides"]) == 1 and alone[0]["rides"][0]["seed"] == 5
    assert result["car_spread"] == car_spread(result["rides"]) and alone[0]["car_spread"]["se"] is None


def test_the_car_spread_is_the_mean_and_standard_error_of_the_rides_with_seen_cars():
    ride = lambda agreement: {"vehicles": {"seen_agreement": agreement}}  # noqa: E731
    assert car_spread([ride(0.1), ride(None), ride(0.3)]) == {"rides": 2, "mean": 0.2, "se": 0.1}
    assert car_spread([ride(0.0), ride(0.0), ride(0.6)]) == {"rides": 3, "mean": 0.2, "se": 0.2}
    assert car_spread([ride(0.25)]) == {"rides": 1, "mean": 0.25, "se": None}
    assert car_spread([ride(None)]) == {"rides": 0, "mean": None, "se": None}


def test_flat_cars_take_the_depth_and_flow_of_the_road_just_below_them_and_keep_their_class_map():
    """Each car pixel takes the depth and flow of the first non-car pixel below it in its column; a car on the
    bottom edge keeps its own; everything else, the class map included, is the ride's."""
    ride = game_ride(16, 2, seed=0)
    classes = np.full((2, 16, 16), GROUND, np.uint8)
    classes[0, 5:8, 3:6] = CARS  # a car in frame 0 with road below it
    classes[1, 13:16, 9:11] = CARS  # a car on frame 1's bottom edge
    depth = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16, 1)
    flow = np.stack([depth[..., 0], -depth[..., 0]], -1)
    flat = flat_cars(dataclasses.replace(ride, depth=depth, flow=flow, classes=classes))
    expected = depth.copy()
    expected[0, 5:8, 3:6] = depth[0, 8:9, 3:6]  # the row below the car, per column
    np.testing.assert_array_equal(flat.depth, expected)
    np.testing.assert_array_equal(flat.flow, np.stack([expected[..., 0], -expected[..., 0]], -1))
    assert flat.classes is classes and flat.rgb is ride.rgb


@pytest.mark.filterwarnings("ignore:.*unit statistics")
def test_a_renderer_told_where_the_cars_are_paints_otherwise_without_its_mask(tmp_path, capsys):
    """--cars unmasked paints with an empty car mask (other frames from a renderer whose car weights are not 0);
    --cars flat with the cars flat in the depth and flow; the JSON says which."""
    import torch

    from neural_render import build_renderer, save_renderer

    torch.manual_seed(0)
    model = build_renderer("tiny", image_size=32, width=64, num_blocks=1, heads=1, cond_channels=4)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    path = save_renderer(tmp_path / "cars", model)
    told = {}
    for cars in ("game", "unmasked", "flat"):
        told[cars] = main(["--checkpoint", str(path), "--frames", "48", "--cars", cars, "--json"])
        assert told[cars]["cars"] == cars and json.loads(capsys.readouterr().out)["cars"] == cars
    assert told["game"]["neural"] != told["unmasked"]["neural"]  # DeepLab reads other frames
    assert told["game"]["neural"] != told["flat"]["neural"]
    assert told["game"]["cube"] == told["unmasked"]["cube"] == told["flat"]["cube"]
