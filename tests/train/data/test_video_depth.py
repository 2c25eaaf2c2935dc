"""A video's depth as the renderer is taught it: cars as slabs, which blobs count as cars, lazy reads, and what
clips, sources and evaluation read."""

import numpy as np
import pytest

from spokester_train.data.clips import StoredClips
from spokester_train.data.extract import extract
from spokester_train.data.sources import video_source
from spokester_train.data.store import LabelStore
from spokester_train.data.video import ClipSpec
from spokester_train.data.video_depth import SLABS_FILE, VideoDepth, car_blobs, car_slabs, read_depth, slab_values
from spokester_train.evaluation.evaluate import load_eval_clip

SIDE = 32


def _road() -> np.ndarray:
    """Inverse depth of a flat road seen from above it: nearer (larger) row by row downwards."""
    return np.repeat(np.linspace(0.05, 1.0, SIDE, dtype=np.float32)[:, None], SIDE, axis=1)


def _car(top=10, left=4, height=6, width=8) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), bool)
    mask[top : top + height, left : left + width] = True
    return mask


def test_a_car_becomes_one_depth_where_it_meets_the_road_and_nothing_else_changes():
    depth, car = _road(), _car()  # rows 10..15, its lowest eighth: row 15
    slab = car_slabs(depth, car)
    assert np.all(slab[car] == depth[15, 4])  # the rear face of a box standing at row 15
    assert slab[10, 4] > depth[10, 4] + 0.1  # its top stands out from the farther road it hides
    np.testing.assert_array_equal(slab[~car], depth[~car])
    np.testing.assert_array_equal(depth, _road())  # the input is not written


def test_only_car_shaped_blobs_not_cut_off_below_are_cars():
    ragged = np.zeros((SIDE, SIDE), bool)
    ragged[20:23, 0:30:2] = True  # wide, half empty: a sunlit road read as car
    ragged[21, :30] = True
    cases = {
        "car": _car(),
        "tiny": _car(height=2, width=3),  # 6 pixels
        "flat": _car(height=4, width=12),  # 3x as wide as high
        "wide": _car(left=0, height=10, width=20),  # more than half the frame
        "bonnet": _car(top=26, height=6),  # touches the bottom edge
        "ragged": ragged,
    }
    kept = {name: len(car_blobs(mask)) for name, mask in cases.items()}
    assert kept == {"car": 1, "tiny": 0, "flat": 0, "wide": 0, "bonnet": 0, "ragged": 0}
    both = _car() | _car(left=20)
    assert [int(b.sum()) for b in car_blobs(both)] == [48, 48]  # two cars, two blobs
    np.testing.assert_array_equal(car_slabs(_road(), cases["bonnet"]), _road())


def test_video_depth_reads_slabs_and_sky_lazily_frame_by_frame():
    depth = np.stack([_road(), _road() * 2, _road()])
    cars = np.stack([_car(), np.zeros((SIDE, SIDE), bool), _car(left=20)])
    slabs = np.stack([slab_values(d, c) for d, c in zip(depth, cars, strict=True)])
    assert (slabs[1] == 0).all() and (slabs[0][_car()] > 0).all() and (slabs[0][~_car()] == 0).all()
    sky = np.zeros(cars.shape, np.uint8)
    sky[:, :3] = 1
    view = VideoDepth(depth, sky=sky, slabs=slabs)
    full = np.asarray(view)
    assert full.shape == (3, SIDE, SIDE, 1) and full.dtype == np.float32 and view.shape == full.shape
    for frame in range(3):
        expected = car_slabs(depth[frame], cars[frame])
        expected[:3] = 0  # the top three rows are sky
        np.testing.assert_array_equal(full[frame, ..., 0], expected)
    np.testing.assert_array_equal(np.asarray(view[1:]), full[1:])  # a lazy slice
    np.testing.assert_array_equal(view[np.array([2, 0])], full[[2, 0]])  # an index array reads those frames
    with pytest.raises(ValueError, match=r"depth \(3, 32, 32\) and slab map \(2, 32, 32\) differ in shape"):
        VideoDepth(depth, slabs=slabs[:2])


@pytest.fixture(scope="module")
def car_store(road_clip, tmp_path_factory):
    """A 32 px label store of the road clip with the teacher's masks, its car mask replaced by a known car."""
    root = tmp_path_factory.mktemp("cars")
    store_dir = extract(road_clip, root, size=SIDE, max_frames=6, chunk_frames=3, skips=(1,), progress=False)
    store = LabelStore(store_dir)
    assert store.spec("cars").shape == (SIDE, SIDE) and set(np.unique(store.stream("cars"))) <= {0, 1}
    cars = np.lib.format.open_memmap(store_dir / "cars.npy", mode="r+")
    cars[:] = 0
    cars[:, 14:20, 10:18] = 1  # rows 14..19 on every frame
    cars.flush()
    return LabelStore(store_dir)


def test_clips_sources_and_evaluation_read_the_cars_as_slabs(car_store, capsys):
    raw = car_store.stream("depth").astype(np.float32)
    slabbed = np.asarray(read_depth(car_store, sky_to_zero=False, car_slabs=True))[..., 0]
    car = np.zeros((SIDE, SIDE), bool)
    car[14:20, 10:18] = True
    lowest = np.median(raw[:, 19, 10:18], axis=1).astype(np.float16).astype(np.float32)  # kept as the depth is
    assert np.all(slabbed[:, car] == lowest[:, None])  # its lowest row
    np.testing.assert_array_equal(slabbed[:, ~car], raw[:, ~car])
    clip = StoredClips(car_store, clip_len=2, car_slabs=True).clip(ClipSpec(1, 1, 2))["depth"][..., 0].numpy()
    np.testing.assert_array_equal(clip, slabbed[1:3])
    plain = StoredClips(car_store, clip_len=2).clip(ClipSpec(1, 1, 2))["depth"][..., 0].numpy()
    np.testing.assert_array_equal(plain, raw[1:3])
    source = video_source(car_store, car_slabs=True)
    assert source.car_slabs and not video_source(car_store).car_slabs
    assert source.depth_mean != video_source(car_store).depth_mean  # fitted on the slabs
    evaluated = load_eval_clip(car_store, 4, 2, car_slabs=True).depth[..., 0]
    np.testing.assert_array_equal(evaluated, slabbed[1:5])
    path = car_store.dir / SLABS_FILE  # made once, kept; a damaged one is made again
    assert path.is_file()
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    capsys.readouterr()
    again = np.asarray(read_depth(car_store, sky_to_zero=False, car_slabs=True))[..., 0]
    np.testing.assert_array_equal(again, slabbed)
    assert path.stat().st_size == size and capsys.readouterr().err.startswith(f"{path}: {size // 2} bytes, expected")


def test_car_slabs_need_a_car_mask(small):
    store_dir = small(small.depth())
    for reader in (
        lambda: StoredClips(store_dir, clip_len=2, car_slabs=True),
        lambda: video_source(store_dir, car_slabs=True),
        lambda: read_depth(LabelStore(store_dir), sky_to_zero=False, car_slabs=True),
    ):
        with pytest.raises(ValueError, match=f"{store_dir}: car_slabs needs a cars mask in the label store"):
            reader()
