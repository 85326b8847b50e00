"""A generated camera rig: N viewpoints spread evenly on a sphere or upper hemisphere (Fibonacci lattice),
looking at a target, at a distance (or with a focal length) that makes a bounding sphere fill the frame.
No bpy: plain numpy, tested in plain pytest.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

LAYOUTS = ("SPHERE", "HEMISPHERE")
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def fibonacci_directions(count: int, layout: str = "SPHERE", seed: int = 0) -> npt.NDArray[np.float64]:
    """Unit vectors (count, 3) spread evenly over the sphere or the upper (z > 0) hemisphere.

    Points sit at equal-area heights (z stepped uniformly, which is equal area by Archimedes) and turn by
    the golden angle; the seed turns the whole lattice about z, so the same seed gives the same rig.
    """
    if count < 1:
        raise ValueError(f"the rig needs at least one camera, not {count}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    i = np.arange(count, dtype=np.float64)
    z_low = -1.0 if layout == "SPHERE" else 0.0
    z = 1.0 - (1.0 - z_low) * (i + 0.5) / count
    offset = np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi)
    azimuth = offset + i * GOLDEN_ANGLE
    ring = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)


def look_at(
    positions: npt.ArrayLike, target: npt.ArrayLike, up: npt.ArrayLike = (0.0, 0.0, 1.0)
) -> npt.NDArray[np.float64]:
    """Camera-to-world matrices (N, 4, 4) with Blender camera axes: −z towards the target, +y as close to
    `up` as possible. Where the view is parallel to `up` (a pole), world +y serves as up instead."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    forward = np.asarray(target, dtype=np.float64) - pos
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    up_v = np.broadcast_to(np.asarray(up, dtype=np.float64), pos.shape)
    right = np.cross(forward, up_v)
    norm = np.linalg.norm(right, axis=1, keepdims=True)
    pole = norm[:, 0] < 1e-9
    if np.any(pole):
        right[pole] = np.cross(forward[pole], np.array([0.0, 1.0, 0.0]))
        norm[pole] = np.linalg.norm(right[pole], axis=1, keepdims=True)
    right /= norm
    true_up = np.cross(right, forward)
    mats = np.zeros((pos.shape[0], 4, 4))
    mats[:, :3, 0] = right
    mats[:, :3, 1] = true_up
    mats[:, :3, 2] = -forward
    mats[:, :3, 3] = pos
    mats[:, 3, 3] = 1.0
    return mats


def half_fov(lens_mm: float, sensor_mm: float) -> float:
    """Half the field of view across the fitted sensor dimension (square image: both axes)."""
    return math.atan(0.5 * sensor_mm / lens_mm)


def fit_distance(bound_radius: float, lens_mm: float, sensor_mm: float, fill: float = 0.9) -> float:
    """Camera distance at which a sphere of bound_radius spans `fill` of the field of view.

    The sphere's silhouette seen from distance d subtends a half-angle asin(r / d); setting that to
    fill · half_fov keeps the whole sphere in frame from every direction.
    """
    if bound_radius <= 0:
        raise ValueError("the objects' bounding radius must be positive")
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"fill must be in (0, 1], not {fill}")
    angle = math.atan(fill * math.tan(half_fov(lens_mm, sensor_mm)))
    return bound_radius / math.sin(angle)


def fit_lens(bound_radius: float, distance: float, sensor_mm: float, fill: float = 0.9) -> float:
    """Focal length (mm) at which a sphere of bound_radius seen from `distance` spans `fill` of the
    frame: the inverse of fit_distance."""
    if distance <= bound_radius:
        raise ValueError(f"rig radius {distance:g} must exceed the objects' bounding radius {bound_radius:g}")
    angle = math.asin(bound_radius / distance)
    return 0.5 * sensor_mm * fill / math.tan(angle)


def rig_poses(
    count: int,
    center: npt.ArrayLike,
    distance: float,
    layout: str = "SPHERE",
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """Camera-to-world matrices (count, 4, 4) of a rig around `center` at `distance`."""
    c = np.asarray(center, dtype=np.float64)
    positions = c + distance * fibonacci_directions(count, layout, seed)
    return look_at(positions, c)


def bounding_sphere(points: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], float]:
    """A sphere around points: centred on their box, radius to the farthest point (not minimal, but
    within √3 of it and stable, which is what framing needs)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] == 0:
        raise ValueError("no points to bound")
    center = 0.5 * (pts.min(axis=0) + pts.max(axis=0))
    radius = float(np.linalg.norm(pts - center, axis=1).max())
    return center, max(radius, 1e-6)
