"""Applies the EEVEE volumetric settings of utils/eevee_volumetrics.py to a scene, for a grid's box."""

from __future__ import annotations

import itertools
from typing import Any

from ..compat import read_eevee_volumetrics, write_eevee_volumetrics
from ..utils.eevee_volumetrics import Volumetrics, choose, merge, view_depths


def camera_depths(scene: Any, aabb: Any) -> tuple[float, float] | None:
    """The box's depth range along the active camera's view axis; None without a camera."""
    cam = scene.camera
    if cam is None:
        return None
    m = cam.matrix_world
    origin = tuple(m.translation)
    forward = tuple(-m.col[2].xyz.normalized())  # cameras look down their local −z
    corners = [tuple(float(aabb[k][i]) for i, k in enumerate(pick)) for pick in itertools.product((0, 1), repeat=3)]
    return view_depths(corners, origin, forward)  # type: ignore[arg-type]


def apply_sharp_volumetrics(scene: Any, aabb: Any, voxel_size: float) -> Volumetrics:
    """Chooses and sets the scene's EEVEE volumetrics for a grid with box `aabb` ((min xyz), (max
    xyz), world units) and `voxel_size`, never coarser than what the scene had; returns what is set."""
    r = scene.render
    resolution = (r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100)
    chosen = choose(voxel_size, camera_depths(scene, aabb), resolution)
    settings = merge(chosen, Volumetrics(*read_eevee_volumetrics(scene.eevee)))
    write_eevee_volumetrics(scene.eevee, settings.tile, settings.samples, settings.start, settings.end)
    return settings
