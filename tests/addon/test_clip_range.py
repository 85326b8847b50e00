"""Clip range of a rebuilt dataset camera, against hand-worked depths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_plenox.utils.clip_range import (
    BLENDER_DEFAULT,
    MIN_START_RATIO,
    clip_range,
    frame_near_far,
    view_depth_range,
)


def look_down_minus_z(origin) -> np.ndarray:
    """Camera-to-world of a camera at `origin` with Blender's identity rotation (looks down −z)."""
    m = np.eye(4)
    m[:3, 3] = origin
    return m


def look_at(origin, target) -> np.ndarray:
    """Camera-to-world (OpenGL axes) at `origin` looking at `target`, +z world up."""
    o, t = np.asarray(origin, float), np.asarray(target, float)
    back = (o - t) / np.linalg.norm(o - t)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, o
    return m


def test_two_centimetre_box_seen_from_ten_centimetres():
    box = [[-0.01, -0.01, -0.01], [0.01, 0.01, 0.01]]
    c2w = look_down_minus_z([0.0, 0.0, 0.1])
    assert view_depth_range(c2w, box) == pytest.approx((0.09, 0.11))
    start, end = clip_range(c2w, box)
    # Blender's default start (0.1) would clip the whole box: ours lies in front of its nearest face
    assert 0 < start < 0.09 and start > 0.05
    assert 0.11 < end < 0.2


def test_depths_are_along_the_view_axis_not_the_distance():
    # box corner depths along a diagonal view: every corner's (p − o)·forward
    box = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    o = np.array([4.0, 4.0, 2.0])
    c2w = look_at(o, [0, 0, 0])
    fwd = -c2w[:3, 2]
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    depths = (corners - o) @ fwd
    assert view_depth_range(c2w, box) == pytest.approx((depths.min(), depths.max()))
    start, end = clip_range(c2w, box)
    assert start < depths.min() and end > depths.max()


def test_scaled_camera_matrix_gives_the_same_depths():
    box = [[-1, -1, -1], [1, 1, 1]]
    c2w = look_at([0, -5, 0], [0, 0, 0])
    scaled = c2w.copy()
    scaled[:3, :3] *= 3.0
    assert clip_range(scaled, box) == pytest.approx(clip_range(c2w, box))


def test_camera_inside_the_box_gets_a_small_positive_start():
    box = [[-1, -1, -1], [1, 1, 1]]
    start, end = clip_range(look_down_minus_z([0, 0, 0.5]), box)
    assert end == pytest.approx(1.1 * 1.5)
    assert start == pytest.approx(MIN_START_RATIO * end)
    assert start > 0


def test_box_behind_the_camera_keeps_blenders_range():
    box = [[-1, -1, -1], [1, 1, 1]]
    assert clip_range(look_down_minus_z([0, 0, -5]), box) == BLENDER_DEFAULT
    assert clip_range(look_down_minus_z([0, 0, 5]), None) == BLENDER_DEFAULT


def test_far_scene_keeps_depth_precision():
    # a kilometre-sized box seen from 2 km: start scales with the scene instead of staying at 0.1 m
    box = [[-500, -500, -500], [500, 500, 500]]
    start, end = clip_range(look_down_minus_z([0, 0, 2000]), box)
    assert start == pytest.approx(0.9 * 1500) and end == pytest.approx(1.1 * 2500)


def test_the_datasets_own_near_far_win():
    box = [[-1, -1, -1], [1, 1, 1]]
    c2w = look_down_minus_z([0, 0, 4])
    assert clip_range(c2w, box, near=2.0, far=8.0) == (2.0, 8.0)
    start, end = clip_range(c2w, box, near=0.5)
    assert start == 0.5 and end == pytest.approx(1.1 * 5)
    # a near beyond the box's far end still gives an ordered range
    start, end = clip_range(c2w, box, near=10.0)
    assert start == 10.0 and end > start


def test_near_far_keys_per_frame_over_file_level():
    meta = {"near": 0.2, "far": 6}
    assert frame_near_far(meta, {}) == (0.2, 6.0)
    assert frame_near_far(meta, {"near": 0.5}) == (0.5, 6.0)
    assert frame_near_far({}, {}) == (None, None)
    assert frame_near_far({"near": "n/a"}, {}) == (None, None)


def test_rejects_an_inverted_box():
    with pytest.raises(ValueError):
        clip_range(np.eye(4), [[1, 0, 0], [0, 1, 1]])


@pytest.mark.parametrize("angle", [0.0, 0.7, 2.0, math.pi])
def test_orbit_views_all_see_the_whole_box(angle):
    box = [[-0.3, -0.2, 0.0], [0.3, 0.2, 0.5]]
    o = [2 * math.cos(angle), 2 * math.sin(angle), 0.8]
    c2w = look_at(o, [0, 0, 0.25])
    lo, hi = view_depth_range(c2w, box)
    start, end = clip_range(c2w, box)
    assert 0 < start < lo and end > hi
