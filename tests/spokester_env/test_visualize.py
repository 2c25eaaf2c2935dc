"""Pictures for people: the depth colour map and the flow colour wheel."""

import numpy as np

from spokester_env import depth_to_rgb, flow_to_rgb


def test_depth_map_is_black_for_sky_and_brighter_when_nearer():
    inv = np.array([[0.0, 0.01, 0.05, 0.2, 1.0]], np.float32)
    rgb = depth_to_rgb(inv, max_inv_depth=1.0)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()
    brightness = rgb[0, 1:].astype(int).sum(-1)
    assert (np.diff(brightness) > 0).all()
    assert depth_to_rgb(inv[..., None]).shape == (1, 5, 3)  # (H, W, 1) works too


def test_flow_wheel_directions_and_saturation():
    flows = np.array([[[0, 0], [4, 0], [-4, 0], [0, 4], [0, -4], [2, 0]]], np.float32)
    rgb = flow_to_rgb(flows, max_magnitude=4).astype(int)
    zero, right, left, down, up, half_right = rgb[0]
    assert (zero == 255).all()  # no motion is white
    assert right[0] == 255 and right[1] < 30  # right is red
    assert left[0] < 30 and left[1] > 200 and left[2] > 150  # left is cyan
    assert down[0] == 255 and down[1] > 100 and down[2] < 30  # down is orange-yellow
    assert up[2] == 255 and up[1] < 30  # up is blue-violet
    assert half_right[0] == 255 and 100 < half_right[1] < 160  # half the magnitude: paler red
