"""Lens models: a pixel's camera-space ray direction, with OpenCV's lens distortion inverted exactly.

A pixel position (u, v) (u right, v down, pixel centres at +0.5) has the normalised *distorted*
coordinates xd = (u - cx) / fx, yd = (v - cy) / fy, in OpenCV's camera axes (x right, y down, z
forward). The lens maps the undistorted image-plane point (x, y) = (X/Z, Y/Z) of a camera-space point
(X, Y, Z) to (xd, yd); a ray needs the inverse, which has no closed form, so it is solved by Newton's
method from (xd, yd), the exact solution without distortion.

Radial-tangential (OpenCV, COLMAP's OPENCV, nerfstudio's "OPENCV"; instant-ngp's k1 k2 p1 p2)::

    r² = x² + y²,   radial = 1 + k1 r² + k2 r⁴ + k3 r⁶ + k4 r⁸
    xd = x · radial + 2 p1 x y + p2 (r² + 2 x²)
    yd = y · radial + p1 (r² + 2 y²) + 2 p2 x y

k4 is nerfstudio's eighth-order radial term (COLMAP's FULL_OPENCV uses k4..k6 as a rational
denominator instead; no converter writes that model, and the loader refuses k5/k6).

Fisheye, equidistant (OpenCV's fisheye module, COLMAP's OPENCV_FISHEYE, `is_fisheye`): a direction
at angle θ from the optical axis, with azimuth φ, lands at

    θd = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸),   (xd, yd) = θd (cos φ, sin φ)

so θ is solved from θd = |(xd, yd)| and the direction is (sin θ cos φ, sin θ sin φ, cos θ), which also
holds beyond 90° from the axis, where no point of the plane z = 1 exists.

Everything runs in float32 on the tensors' device: Newton converges quadratically, so the directions
are as exact as float32 allows (about 1e-7 in normalised coordinates, 1e-4 px at a 1000 px focal).
"""

from __future__ import annotations

import math

import torch

# Layout of a camera's row in Split.intrinsics when any view has a lens model (trainer.io.data):
# fx, fy, cx, cy, then k1, k2, k3, k4, p1, p2, then the model code.
PINHOLE_COLUMNS = 4
LENS_COLUMNS = 11
MODEL_RADIAL_TANGENTIAL = 0.0
MODEL_FISHEYE = 1.0

NEWTON_STEPS = 20     # the most Newton steps; a step below NEWTON_TOL everywhere ends the solve early
NEWTON_TOL = 1e-7     # normalised image-plane units: float32's resolution near 1


def distort_radial_tangential(x: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward model (see the module docstring): undistorted (x, y) -> distorted (xd, yd)."""
    k1, k2, k3, k4, p1, p2 = coeffs.unbind(-1)
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    xy = x * y
    return x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x), y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy


def undistort_radial_tangential(xd: torch.Tensor, yd: torch.Tensor, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Undistorted (x, y) with distort_radial_tangential(x, y) = (xd, yd), by Newton's method with the
    analytic 2x2 Jacobian. Where the model is not invertible (far outside the calibrated field, where
    the polynomial folds back) the solve may not converge; such pixels keep their distorted position
    rather than a NaN that would poison training."""
    k1, k2, k3, k4, p1, p2 = coeffs.unbind(-1)
    x, y = xd.clone(), yd.clone()
    for _ in range(NEWTON_STEPS):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        d_radial = k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + r2 * 4.0 * k4))  # d radial / d r²
        ex, ey = distort_radial_tangential(x, y, coeffs)
        ex, ey = ex - xd, ey - yd
        # partial derivatives of (xd, yd) by (x, y); d r²/dx = 2x
        jxx = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        jxy = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y   # = d yd / dx as well
        jyy = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = jxx * jyy - jxy * jxy
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        step_x = (ex * jyy - ey * jxy) / det
        step_y = (ey * jxx - ex * jxy) / det
        x, y = x - step_x, y - step_y
        if float(torch.maximum(step_x.abs(), step_y.abs()).nan_to_num(0.0).max()) < NEWTON_TOL:
            break
    bad = ~(torch.isfinite(x) & torch.isfinite(y))
    return torch.where(bad, xd, x), torch.where(bad, yd, y)


def undistort_fisheye(xd: torch.Tensor, yd: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Unit directions [..., 3] (OpenCV axes) of the equidistant fisheye's distorted points (xd, yd);
    coeffs = k1..k4 (see the module docstring)."""
    k1, k2, k3, k4 = coeffs.unbind(-1)
    theta_d = torch.sqrt(xd * xd + yd * yd)
    theta = theta_d.clone()
    for _ in range(NEWTON_STEPS):
        t2 = theta * theta
        err = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        slope = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
        slope = torch.where(slope.abs() < 1e-12, torch.full_like(slope, 1e-12), slope)
        step = err / slope
        theta = (theta - step).clamp(0.0, math.pi)   # beyond pi the model has no meaning
        if float(step.abs().nan_to_num(0.0).max()) < NEWTON_TOL:
            break
    theta = torch.where(torch.isfinite(theta), theta, theta_d)
    # sin(theta) / theta_d -> 1 at the centre, where theta ~ theta_d -> 0
    ratio = torch.where(theta_d > 1e-12, torch.sin(theta) / theta_d.clamp(min=1e-12), torch.ones_like(theta_d))
    return torch.stack((ratio * xd, ratio * yd, torch.cos(theta)), dim=-1)


def pixel_directions(camera: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Camera-space directions [..., 3] in OpenGL axes (+y up, looking down -z) of pixel positions
    (u, v) of one camera; camera = fx, fy, cx, cy[, k1, k2, k3, k4, p1, p2, model]. Pinhole and
    radial-tangential directions have z = -1; fisheye ones are unit length."""
    fx, fy, cx, cy = camera[0], camera[1], camera[2], camera[3]
    xd = (u - cx) / fx
    yd = (v - cy) / fy
    if camera.shape[0] == PINHOLE_COLUMNS:
        x, y, z = xd, yd, torch.ones_like(xd)
    elif float(camera[10]) == MODEL_FISHEYE:
        x, y, z = undistort_fisheye(xd, yd, camera[4:8]).unbind(-1)
    else:
        x, y = undistort_radial_tangential(xd, yd, camera[4:10])
        z = torch.ones_like(x)
    return torch.stack((x, -y, -z), dim=-1)   # OpenCV (x right, y down, z forward) -> OpenGL
