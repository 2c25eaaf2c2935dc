"""Video decoding: errors name the file in one line; crops, fps, frame picks and clip sampling are right."""

import numpy as np
import pytest

from spokester_env.output import write_video
from spokester_train.data.video import (
    ClipSpec,
    CropBox,
    VideoError,
    cut_clips,
    min_frames_for,
    probe_video,
    read_clip,
    read_video,
    sample_clip,
)


def _assert_one_line_naming(error: VideoError, path, words: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(str(path) + ": ")
    assert words in message


@pytest.mark.parametrize(
    "name, content",
    [
        ("noise.mp4", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("empty.webm", b""),
        ("text.avi", b"this is not a video\n" * 50),
    ],
)
def test_corrupt_video_gives_one_line_error_naming_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for read in (probe_video, lambda p: read_video(p, 32)):
        with pytest.raises(VideoError) as info:
            read(path)
        _assert_one_line_naming(info.value, path, "cannot open")


def test_truncated_and_missing_video_errors(tmp_path, road_clip):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(road_clip.read_bytes()[:20000])  # the index (moov) is at the end: cut away
    with pytest.raises(VideoError) as info:
        read_video(truncated, 32)
    _assert_one_line_naming(info.value, truncated, "cannot open")
    with pytest.raises(VideoError) as info:
        probe_video(tmp_path / "missing.mkv")
    _assert_one_line_naming(info.value, tmp_path / "missing.mkv", "no such file")


def test_too_short_video_errors(road_clip):
    with pytest.raises(VideoError) as info:
        read_video(road_clip, 32, min_frames=65)
    _assert_one_line_naming(info.value, road_clip, "too short: 64 frames")
    rng = np.random.default_rng(0)
    with pytest.raises(VideoError) as info:  # 64 frames at skip 1 need a 65th, previous frame
        read_clip(road_clip, 32, 64, rng)
    _assert_one_line_naming(info.value, road_clip, "too short: 64 frames, need at least 65")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "suffix, codec", [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mkv", "ffv1"), ("avi", "mpeg4")]
)
def test_decode_any_container_crops_centre_and_keeps_fps(tmp_path, banded_frames, frame_index, suffix, codec):
    path = tmp_path / f"banded.{suffix}"
    write_video(path, banded_frames(12, 96, 64), fps=24, codec=codec)
    info = probe_video(path)
    assert (info.width, info.height, info.n_frames) == (96, 64, 12)
    assert info.fps == pytest.approx(24.0)
    video = read_video(path, 32)
    assert video.frames.shape == (12, 32, 32, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(24.0)
    np.testing.assert_array_equal(frame_index(video.frames), np.arange(12))
    # the red and blue side bands lie outside the centred square: none of them may survive the crop
    assert video.frames[..., 0].max() < 24 and video.frames[..., 2].max() < 24


def test_read_clip_picks_frames_at_the_drawn_skip(tmp_path, banded_frames, frame_index):
    path = tmp_path / "banded.mkv"
    write_video(path, banded_frames(12, 96, 64), fps=30, codec="ffv1")
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(12):
        frames, spec, fps = read_clip(path, 16, 3, rng)  # skip 3 fits: 10 of 12
        np.testing.assert_array_equal(frame_index(frames), spec.indices)
        assert fps == pytest.approx(30.0 / spec.skip)
        assert spec.previous >= 0 and spec.indices[-1] <= 11
        seen.add(spec.skip)
    assert seen == {1, 2, 3}


def test_sample_clip_is_seeded_and_in_bounds():
    draws = [sample_clip(100, 16, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    specs = [sample_clip(40, 8, rng) for _ in range(500)]
    assert {s.skip for s in specs} == {1, 2, 3}
    assert all(s.previous >= 0 and s.indices[-1] < 40 for s in specs)
    assert min(s.start for s in specs if s.skip == 3) == 3  # the earliest start leaves one previous step
    assert max(s.indices[-1] for s in specs if s.skip == 3) == 39  # and the latest ends on the last frame
    # only skips that fit are drawn: 8 frames at skip 3 plus its previous frame need 25 source frames
    assert min_frames_for(8, 3) == 25
    assert {sample_clip(24, 8, rng).skip for _ in range(100)} == {1, 2}


def test_cut_clips_do_not_overlap():
    clips = cut_clips(50, 4, skip=2)
    assert clips[0] == ClipSpec(2, 2, 4)
    picked = np.concatenate([c.indices for c in clips])
    assert len(set(picked.tolist())) == len(picked) and picked.max() < 50
    assert len(clips) == 6


def test_crop_box_affine_maps_square_pixels_onto_a_full_frame_grid():
    box = CropBox.centred(320, 180)
    assert (box.x0, box.y0, box.side) == (70, 0, 180)
    matrix = box.affine_from(160, 90, 45)  # a half-resolution grid, a 45-pixel square (4 source px each)
    # output pixel (0, 0) covers source x 70..74, centre 72 -> grid x (72 * 0.5) - 0.5 = 35.5, y 0.5
    np.testing.assert_allclose(matrix @ [0, 0, 1], [35.5, 0.5])
    np.testing.assert_allclose(matrix @ [44, 44, 1], [35.5 + 44 * 2, 0.5 + 44 * 2])
