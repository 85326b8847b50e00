"""Camera intrinsics against hand-derived cases (Blender's sensor-fit rules worked out on paper)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_plenox.utils.camera_math import (
    Intrinsics,
    UnsupportedCameraError,
    camera_to_world,
    check_camera_type,
    intrinsics,
    project,
    render_size,
)


def cam(**kw: float | str) -> Intrinsics:
    base: dict[str, float | str] = {
        "lens_mm": 50.0, "sensor_width_mm": 36.0, "sensor_height_mm": 24.0, "sensor_fit": "AUTO",
        "resolution_x": 1920, "resolution_y": 1080,
    }
    base.update(kw)
    return intrinsics(**base)  # type: ignore[arg-type]


def test_default_camera_landscape() -> None:
    k = cam()
    assert k.fl_x == pytest.approx(50 * 1920 / 36)
    assert k.fl_y == pytest.approx(k.fl_x)
    assert (k.cx, k.cy, k.w, k.h) == (960.0, 540.0, 1920, 1080)
    # the horizontal field of view Blender shows for this camera: 2·atan(18/50)
    assert k.camera_angle_x == pytest.approx(2 * math.atan(18 / 50))


def test_auto_fit_portrait_uses_sensor_width_across_the_height() -> None:
    k = cam(resolution_x=100, resolution_y=200)
    assert k.fl_y == pytest.approx(50 * 200 / 36)
    assert k.fl_x == pytest.approx(k.fl_y)


def test_vertical_fit_uses_sensor_height() -> None:
    k = cam(sensor_fit="VERTICAL", resolution_x=300, resolution_y=200)
    assert k.fl_y == pytest.approx(50 * 200 / 24)
    assert k.fl_x == pytest.approx(k.fl_y)


def test_horizontal_fit_on_portrait_image() -> None:
    k = cam(sensor_fit="HORIZONTAL", resolution_x=100, resolution_y=200)
    assert k.fl_x == pytest.approx(50 * 100 / 36)


def test_wide_pixels_double_the_vertical_focal_length() -> None:
    # pixels 2 wide : 1 tall; aspect-corrected size 200 × 100 → horizontal fit over the 100 pixels
    k = cam(resolution_x=100, resolution_y=100, pixel_aspect_x=2.0, pixel_aspect_y=1.0)
    assert k.fl_x == pytest.approx(50 * 100 / 36)
    assert k.fl_y == pytest.approx(2 * k.fl_x)


def test_tall_pixels_switch_auto_fit_to_vertical() -> None:
    # 120 × 100 pixels, 1 wide : 3 tall → aspect-corrected 120 × 300, so AUTO spans the 36 mm over the
    # height: 100 rows of 0.36 mm each (fl_y = 50/0.36), and a pixel is a third as wide (fl_x = 3·fl_y)
    k = cam(resolution_x=120, resolution_y=100, pixel_aspect_x=1.0, pixel_aspect_y=3.0)
    assert k.fl_x == pytest.approx(50 * 300 / 36)
    assert k.fl_y == pytest.approx(50 * 100 / 36)


def test_lens_shift_in_units_of_the_fitted_dimension() -> None:
    k = cam(resolution_x=200, resolution_y=100, shift_x=0.1, shift_y=0.1)
    # shift 0.1 of the 200-pixel fitted width moves the view right and up by 20 px: the optical axis
    # lands 20 px left of and 20 px below the image centre
    assert k.cx == pytest.approx(100 - 20)
    assert k.cy == pytest.approx(50 + 20)
    kv = cam(resolution_x=200, resolution_y=100, sensor_fit="VERTICAL", shift_x=-0.25)
    assert kv.cx == pytest.approx(100 + 25)


def test_resolution_percentage_is_integer_division() -> None:
    assert render_size(1921, 1081, 50) == (960, 540)
    k = cam(resolution_percentage=50)
    assert (k.w, k.h) == (960, 540)
    assert k.fl_x == pytest.approx(50 * 960 / 36)


def test_bad_input_refused() -> None:
    with pytest.raises(ValueError, match="sensor fit"):
        cam(sensor_fit="DIAGONAL")
    with pytest.raises(ValueError, match="empty"):
        cam(resolution_x=1, resolution_percentage=10)
    for kind, word in (("ORTHO", "orthographic"), ("PANO", "panoramic")):
        with pytest.raises(UnsupportedCameraError, match=word):
            check_camera_type(kind, "Cam")
    check_camera_type("PERSP")


def test_camera_to_world_drops_scale() -> None:
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    m = np.eye(4)
    m[:3, :3] = rot @ np.diag([2.0, 0.5, 3.0])
    m[:3, 3] = (1, 2, 3)
    c2w = camera_to_world(m)
    assert np.allclose(c2w[:3, :3], rot)
    assert np.allclose(c2w[:3, 3], (1, 2, 3))


def test_project_inverts_the_contract_pixel_ray() -> None:
    k = cam(resolution_x=64, resolution_y=48, shift_x=0.05, shift_y=-0.1, pixel_aspect_x=1.5)
    rng = np.random.default_rng(1)
    c2w = np.eye(4)
    c2w[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0] * np.array([1, 1, 1])
    if np.linalg.det(c2w[:3, :3]) < 0:
        c2w[:3, 0] *= -1
    c2w[:3, 3] = rng.normal(size=3)
    u, v = rng.uniform(0, 64, 50), rng.uniform(0, 48, 50)
    depth = rng.uniform(1, 5, 50)
    # contract 1: pixel (u, v) ↦ camera direction ((u − cx)/fl_x, −(v − cy)/fl_y, −1)
    d_cam = np.stack([(u - k.cx) / k.fl_x, -(v - k.cy) / k.fl_y, -np.ones(50)], axis=1) * depth[:, None]
    world = d_cam @ c2w[:3, :3].T + c2w[:3, 3]
    uvz = project(world, c2w, k)
    assert np.allclose(uvz[:, 0], u) and np.allclose(uvz[:, 1], v) and np.allclose(uvz[:, 2], depth)
    assert project([c2w[:3, 3] - c2w[:3, 2]], c2w, k)[0, :2] == pytest.approx([k.cx, k.cy])
