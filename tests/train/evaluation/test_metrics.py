"""Figures of rendered frames: colour match, seams between patches, jumps between framelets."""

import math

import numpy as np
import pytest

from spokester_train.data.video import read_video
from spokester_train.evaluation.metrics import (
    MAX_PSNR,
    blurred,
    boundary_ratio,
    colour_matched,
    detail_share,
    psnr,
    seam_ratio,
)


def _smooth(frames: int = 4, side: int = 64) -> np.ndarray:
    """Smooth moving gradients: no edge anywhere, least of all on a 16-px grid."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    out = [np.stack([x * 2 + t * 3, y * 2, 128 + 40 * np.sin((x + y + t) / 9)], axis=-1) for t in range(frames)]
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def test_psnr_of_known_error():
    real = np.zeros((2, 4, 4, 3), np.uint8)
    assert psnr(real + 1, real) == pytest.approx(20 * math.log10(255.0))
    assert psnr(real, real) == MAX_PSNR


def test_seam_ratio_is_about_one_for_smooth_and_real_pictures_and_large_for_tiles(road_clip):
    smooth = _smooth()
    assert seam_ratio(smooth, 16) == pytest.approx(1.0, abs=0.05)
    tiles = np.random.default_rng(0).integers(0, 40, (4, 4, 1, 4, 1, 3))  # a random offset per 16-px patch
    tiled = np.clip(smooth.reshape(4, 4, 16, 4, 16, 3) + tiles, 0, 255)
    tiled = tiled.reshape(smooth.shape).astype(np.uint8)
    assert seam_ratio(tiled, 16) > 5.0
    assert seam_ratio(tiled, 8) < seam_ratio(tiled, 16)  # half of the 8-px boundaries are no seams
    real = read_video(road_clip, 128, max_frames=8).frames
    assert 0.8 < seam_ratio(real, 16) < 1.3


def test_boundary_ratio_finds_a_jump_at_every_framelet():
    steady = _smooth(frames=8)
    assert boundary_ratio(steady, 2) == pytest.approx(1.0, abs=0.05)
    jumpy = steady.astype(np.int64)
    jumpy[2::2] = jumpy[2::2] + 30  # frames 2, 4, 6 (each framelet's first) shift; 3, 5, 7 follow them
    jumpy[3::2] = jumpy[3::2] + 30
    jumpy[4::4] += 30
    jumpy[5::4] += 30
    ratio = boundary_ratio(np.clip(jumpy, 0, 255).astype(np.uint8), 2)
    assert ratio > 3.0
    assert math.isnan(boundary_ratio(steady[:2], 2))  # one framelet: no boundary to measure


def test_a_colour_transformed_copy_is_recovered_by_the_colour_match(road_clip):
    """A copy in another palette (each channel scaled and shifted) is far from the real frames raw, and
    matches them almost exactly once each channel is fitted back."""
    real = read_video(road_clip, 64, max_frames=6).frames
    gain, offset = np.array([0.4, 1.3, 0.3]), np.array([110.0, -40.0, 150.0])
    painted = np.clip(np.round(real * gain + offset), 0, 255).astype(np.uint8)
    raw, matched = psnr(painted, real), psnr(colour_matched(painted, real), real)
    assert raw < 20 and matched >= 40
    flat = np.full_like(real, 128)
    assert psnr(colour_matched(flat, real), real) < 20  # a flat picture stays a flat picture


def test_detail_share_tells_a_coarse_error_from_a_fine_one(road_clip):
    """An error that is one smooth shade over the frame is coarse (share near 0); pixel noise of the same size is
    detail (near 1); the blurred real frames lose only detail, and the more of it the wider the blur."""
    real = read_video(road_clip, 64, max_frames=4).frames.astype(np.float64)
    y, x = np.mgrid[0:64, 0:64]
    shade = 12 * np.sin(x / 20.0) * np.cos(y / 25.0)  # varies over tens of pixels
    noise = np.random.default_rng(0).normal(0, 8, real.shape)
    middle = (np.clip(real, 40, 215) * 0.7 + 40).round()  # room for the errors without clipping
    coarse = (middle + shade[None, :, :, None]).astype(np.uint8)
    fine = (middle + noise).round().astype(np.uint8)
    reference = middle.astype(np.uint8)
    assert detail_share(coarse, reference) < 0.1
    assert detail_share(fine, reference) > 0.9
    assert detail_share(reference, reference) == 0.0
    as_read = real.astype(np.uint8)
    psnrs = [psnr(blurred(as_read, sigma), as_read) for sigma in (1.0, 2.0, 4.0)]
    assert psnrs[0] > psnrs[1] > psnrs[2] > 15
    assert detail_share(blurred(as_read, 2.0), as_read) > 0.6  # what a blur takes is mostly finer than 4 px
    flat = np.full((2, 32, 32, 3), 90, np.uint8)
    assert np.array_equal(blurred(flat, 4.0), flat)  # nothing to take from a flat picture
