"""Pinhole intrinsics and camera-to-world poses of Blender cameras, from plain numbers (no bpy).

The intrinsics follow Blender's own view-plane construction (BKE_camera_params_compute_viewplane):
the sensor is fitted to one image axis, pixels may be non-square, and lens shift is measured in units
of the fitted sensor dimension. The results are in pixels with the principal point measured from the
top-left image corner, +y down (contract 1 in docs/CONTRACTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


class UnsupportedCameraError(ValueError):
    """A camera that a pinhole model cannot describe (orthographic, panoramic)."""


@dataclass(frozen=True)
class Intrinsics:
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int

    @property
    def camera_angle_x(self) -> float:
        """Horizontal field of view in radians, as NeRF-synthetic readers without fl_x expect it."""
        return 2.0 * math.atan(0.5 * self.w / self.fl_x)

    def as_dict(self) -> dict[str, float | int]:
        return {"fl_x": self.fl_x, "fl_y": self.fl_y, "cx": self.cx, "cy": self.cy, "w": self.w, "h": self.h}

    def matrix(self) -> npt.NDArray[np.float64]:
        """3×3 matrix mapping camera-space (x right, y down, z forward) points to homogeneous pixels."""
        return np.array([[self.fl_x, 0.0, self.cx], [0.0, self.fl_y, self.cy], [0.0, 0.0, 1.0]])


def render_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """The image size Blender actually renders: integer division, as in BKE_render_resolution."""
    return resolution_x * percentage // 100, resolution_y * percentage // 100


def check_camera_type(camera_type: str, name: str = "camera") -> None:
    if camera_type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(camera_type, camera_type)
        raise UnsupportedCameraError(
            f"{name}: {kind} cameras cannot be captured; a pinhole (perspective) camera is required"
        )


def intrinsics(
    *,
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    resolution_x: int,
    resolution_y: int,
    resolution_percentage: int = 100,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
) -> Intrinsics:
    """Exact pinhole intrinsics of a perspective Blender camera rendered with the given settings."""
    if sensor_fit not in SENSOR_FITS:
        raise ValueError(f"sensor fit must be one of {SENSOR_FITS}, not {sensor_fit!r}")
    if lens_mm <= 0 or sensor_width_mm <= 0 or sensor_height_mm <= 0:
        raise ValueError("lens and sensor sizes must be positive")
    w, h = render_size(resolution_x, resolution_y, resolution_percentage)
    if w <= 0 or h <= 0:
        raise ValueError(f"render size {w}×{h} is empty")
    # Blender compares the aspect-corrected sizes to resolve AUTO, and AUTO uses the sensor *width*
    # as the size of whichever dimension is larger.
    fit = sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if pixel_aspect_x * w >= pixel_aspect_y * h else "VERTICAL"
    sensor_mm = sensor_height_mm if sensor_fit == "VERTICAL" else sensor_width_mm
    ycor = pixel_aspect_y / pixel_aspect_x
    # viewfac: the fitted dimension's extent in units of one x-pixel
    viewfac = float(w) if fit == "HORIZONTAL" else ycor * h
    fl_x = lens_mm * viewfac / sensor_mm
    fl_y = fl_x / ycor
    cx = 0.5 * w - shift_x * viewfac
    cy = 0.5 * h + shift_y * viewfac / ycor
    return Intrinsics(fl_x=fl_x, fl_y=fl_y, cx=cx, cy=cy, w=w, h=h)


def camera_to_world(matrix_world: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A camera object's world matrix with its scale removed: Blender renders from the rotation and
    translation only, and contract 1 wants a rigid camera-to-world transform."""
    m = np.array(matrix_world, dtype=np.float64).reshape(4, 4)
    norms = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(norms < 1e-12):
        raise ValueError("camera matrix has a zero scale axis")
    m[:3, :3] /= norms
    m[3] = (0.0, 0.0, 0.0, 1.0)
    return m


def project(
    points_world: npt.ArrayLike, c2w: npt.ArrayLike, intr: Intrinsics
) -> npt.NDArray[np.float64]:
    """Pixel coordinates (u right, v down, pixel centres at +0.5) of world points, and their depth
    along the viewing axis: an (N, 3) array [u, v, depth]."""
    pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    c2w_a = np.asarray(c2w, dtype=np.float64)
    rot, origin = c2w_a[:3, :3], c2w_a[:3, 3]
    cam = (pts - origin) @ rot  # world → camera (OpenGL axes: x right, y up, looks down −z)
    depth = -cam[:, 2]
    u = intr.cx + intr.fl_x * cam[:, 0] / depth
    v = intr.cy - intr.fl_y * cam[:, 1] / depth
    return np.stack([u, v, depth], axis=1)
