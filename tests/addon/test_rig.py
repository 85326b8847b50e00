"""The generated rig: even spread, repeatability, look-at poses and framing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_plenox.utils import rig
from blender_plenox.utils.camera_math import intrinsics, project


@pytest.mark.parametrize("layout", ["SPHERE", "HEMISPHERE"])
def test_directions_are_unit_and_repeatable(layout: str) -> None:
    d = rig.fibonacci_directions(100, layout, seed=3)
    assert d.shape == (100, 3)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.array_equal(d, rig.fibonacci_directions(100, layout, seed=3))
    assert not np.allclose(d, rig.fibonacci_directions(100, layout, seed=4))
    if layout == "HEMISPHERE":
        assert (d[:, 2] > 0).all()
    else:
        assert (d[:, 2] > 0).sum() == 50


def test_sphere_is_evenly_covered() -> None:
    n = 400
    d = rig.fibonacci_directions(n, "SPHERE")
    # equal area: a cap of height h holds the share h/2 of the sphere (Archimedes)
    for h in (0.2, 0.5, 1.0):
        assert (d[:, 2] > 1 - h).mean() == pytest.approx(h / 2, abs=2 / n)
    assert np.linalg.norm(d.mean(axis=0)) < 0.01
    # nearest-neighbour spacing stays close to uniform: no clumps, no holes
    dots = d @ d.T
    np.fill_diagonal(dots, -2)
    nearest = np.arccos(np.clip(dots.max(axis=1), -1, 1))
    assert nearest.min() / nearest.max() > 0.6
    expected = math.sqrt(4 * math.pi / n)  # spacing of n equal cells
    assert 0.7 * expected < np.median(nearest) < 1.3 * expected


def test_look_at_is_a_rotation_facing_the_target() -> None:
    pos = np.array([[3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [0.0, 0.0, -2.0], [-1.0, 2.0, 0.5]])
    target = np.array([0.0, 0.0, 0.5])
    mats = rig.look_at(pos, target)
    for m, p in zip(mats, pos):
        r = m[:3, :3]
        assert np.allclose(r.T @ r, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
        forward = (target - p) / np.linalg.norm(target - p)
        assert np.allclose(-r[:, 2], forward)
        assert np.allclose(m[:3, 3], p) and np.allclose(m[3], (0, 0, 0, 1))
    # away from the poles the image's up vector points upwards and the horizon is level (x has no z)
    assert mats[0][2, 1] > 0 and abs(mats[0][2, 0]) < 1e-12


@pytest.mark.parametrize("fill", [0.5, 0.9, 1.0])
def test_fit_distance_makes_the_sphere_span_fill_of_the_frame(fill: float) -> None:
    lens, sensor, radius, size = 35.0, 36.0, 0.8, 100
    d = rig.fit_distance(radius, lens, sensor, fill)
    k = intrinsics(lens_mm=lens, sensor_width_mm=sensor, sensor_height_mm=sensor, sensor_fit="AUTO",
                   resolution_x=size, resolution_y=size)
    center = np.array([0.3, -0.2, 1.0])
    c2w = rig.rig_poses(1, center, d, "SPHERE", seed=7)[0]
    # dense points on the sphere: the silhouette's widest extent from the image centre is fill·(size/2)
    sphere = rig.fibonacci_directions(20000, "SPHERE") * radius + center
    uv = project(sphere, c2w, k)
    reach = np.abs(uv[:, :2] - size / 2).max()
    assert reach == pytest.approx(fill * size / 2, rel=2e-3)


def test_fit_lens_inverts_fit_distance() -> None:
    d = rig.fit_distance(1.3, 42.0, 24.0, 0.85)
    assert rig.fit_lens(1.3, d, 24.0, 0.85) == pytest.approx(42.0)
    with pytest.raises(ValueError, match="must exceed"):
        rig.fit_lens(2.0, 1.0, 36.0)


def test_rig_poses_sit_at_the_distance_looking_at_the_centre() -> None:
    center = np.array([1.0, 2.0, 3.0])
    poses = rig.rig_poses(30, center, 4.0, "HEMISPHERE", seed=1)
    offsets = poses[:, :3, 3] - center
    assert np.allclose(np.linalg.norm(offsets, axis=1), 4.0)
    assert (offsets[:, 2] > 0).all()
    assert np.allclose(-poses[:, :3, 2], -offsets / 4.0)


def test_bounding_sphere_contains_points_and_bad_input() -> None:
    pts = np.random.default_rng(0).normal(size=(200, 3))
    c, r = rig.bounding_sphere(pts)
    assert (np.linalg.norm(pts - c, axis=1) <= r + 1e-12).all()
    with pytest.raises(ValueError):
        rig.fibonacci_directions(0)
    with pytest.raises(ValueError):
        rig.fibonacci_directions(5, "CUBE")
    with pytest.raises(ValueError):
        rig.fit_distance(1.0, 50.0, 36.0, fill=1.5)
