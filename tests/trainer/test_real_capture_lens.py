"""benchmarks/make_real_capture.py's lens: its numpy resampling puts every point where OpenCV's forward
model says, and its model is the one the trainer inverts (trainer/io/lens.py, written independently).

The script imports bpy only inside its Blender functions, so its lens part loads here without Blender.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

from trainer.io.lens import undistort_radial_tangential


@pytest.fixture(scope="module")
def capture() -> ModuleType:
    return load_benchmark("make_real_capture")


def test_fixed_point_undistortion_inverts_the_forward_model_over_the_whole_image(capture: ModuleType) -> None:
    k = capture.intrinsics_for(270, 480)
    u, v = np.meshgrid(np.linspace(0, k.w, 60), np.linspace(0, k.h, 100))
    xd, yd = (u - k.cx) / k.fl_x, (v - k.cy) / k.fl_y
    x, y = capture.undistort(xd, yd, capture.PHONE_LENS)
    ex, ey = capture.distort(x, y, capture.PHONE_LENS)
    assert np.abs(ex - xd).max() < 1e-12 and np.abs(ey - yd).max() < 1e-12
    # barrel distortion: the undistorted corners lie further out, so the render must be wider than the image
    assert np.hypot(x, y).max() > 1.05 * np.hypot(xd, yd).max()


def test_the_trainer_inverts_the_same_lens_model(capture: ModuleType) -> None:
    """Independent implementations agree: points distorted here come back through the trainer's Newton
    inverse (float32) to where they started."""
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-0.45, 0.45, 500), rng.uniform(-0.8, 0.8, 500)
    xd, yd = capture.distort(x, y, capture.PHONE_LENS)
    lens = capture.PHONE_LENS
    coeffs = torch.tensor([lens["k1"], lens["k2"], 0.0, 0.0, lens["p1"], lens["p2"]], dtype=torch.float32)
    bx, by = undistort_radial_tangential(torch.from_numpy(xd).float(), torch.from_numpy(yd).float(), coeffs)
    assert np.abs(bx.numpy() - x).max() < 2e-6 and np.abs(by.numpy() - y).max() < 2e-6


def blob_image(rc, points: np.ndarray, sigma_px: float) -> np.ndarray:
    """The undistorted render of small Gaussian spots at normalised points (x, y): [rc.h, rc.w, 1]."""
    v, u = np.mgrid[0:rc.h, 0:rc.w] + 0.5
    img = np.zeros((rc.h, rc.w))
    for x, y in points:
        pu, pv = rc.focal * x + rc.w / 2, rc.focal * y + rc.h / 2
        img += np.exp(-((u - pu) ** 2 + (v - pv) ** 2) / (2 * sigma_px**2))
    return img[..., None]


def test_the_resampled_image_puts_points_where_the_forward_model_projects_them(capture: ModuleType) -> None:
    """Spots drawn in the undistorted render at known normalised points land, in the distorted image,
    at the pixel the forward model (distort, then fl and c) predicts: the centroid within 0.05 px."""
    k = capture.intrinsics_for(135, 240)
    rc = capture.render_camera_for(k, capture.PHONE_LENS, oversample=1.25)
    # undistorted points towards the corners and edges (where the distortion is largest) and the middle
    xd_corner, yd_corner = (0.5 * k.w - 10) / k.fl_x, (0.5 * k.h - 10) / k.fl_y
    distorted = np.array([[0.0, 0.0], [xd_corner, yd_corner], [-xd_corner, yd_corner], [xd_corner, -yd_corner],
                          [-xd_corner, -yd_corner], [0.0, -yd_corner], [xd_corner, 0.0]])
    points = np.stack(capture.undistort(distorted[:, 0], distorted[:, 1], capture.PHONE_LENS), axis=1)
    src = blob_image(rc, points, sigma_px=2.0)
    out = capture.distort_image(src, capture.sample_map(rc, k, capture.PHONE_LENS))[..., 0]
    assert out.shape == (k.h, k.w)
    v, u = np.mgrid[0:k.h, 0:k.w] + 0.5
    for x, y in points:
        xd, yd = capture.distort(np.array(x), np.array(y), capture.PHONE_LENS)
        pu, pv = k.fl_x * float(xd) + k.cx, k.fl_y * float(yd) + k.cy
        near = (np.abs(u - pu) < 6) & (np.abs(v - pv) < 6)
        weight = out * near
        cu, cv = (weight * u).sum() / weight.sum(), (weight * v).sum() / weight.sum()
        assert math.hypot(cu - pu, cv - pv) < 0.05, (x, y, pu, pv, cu, cv)


def test_without_distortion_the_resampling_is_the_pinhole(capture: ModuleType) -> None:
    k = capture.intrinsics_for(27, 48)
    rc = capture.render_camera_for(k, capture.NO_LENS, oversample=1.25)
    us, vs = capture.sample_map(rc, k, capture.NO_LENS)
    sub_u, sub_v = (np.arange(k.w * 2) + 0.5) / 2, (np.arange(k.h * 2) + 0.5) / 2
    assert np.allclose(us[0], rc.focal * (sub_u - k.cx) / k.fl_x + rc.w / 2)
    assert np.allclose(vs[:, 0], rc.focal * (sub_v - k.cy) / k.fl_y + rc.h / 2)
    assert rc.focal == pytest.approx(1.25 * k.fl_x)
