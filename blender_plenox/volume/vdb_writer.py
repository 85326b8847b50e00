"""Writes VdbArrays as an OpenVDB file with the openvdb module that ships with Blender."""

from __future__ import annotations

import os

from ..io.vdb_arrays import VdbArrays

DENSITY_GRID = "density"
COLOR_GRID = "color"


def load_openvdb():  # type: ignore[no-untyped-def]
    """Blender's bundled openvdb (the bpy module only exposes it after expose_bundled_modules)."""
    try:
        import openvdb  # type: ignore[import-not-found]
    except ImportError:
        import bpy

        expose = getattr(bpy.utils, "expose_bundled_modules", None)
        if expose is None:
            raise
        expose()
        import openvdb  # type: ignore[import-not-found]
    return openvdb


def write_vdb(arrays: VdbArrays, path: str, metadata: dict[str, str] | None = None) -> str:
    """Writes the density (float) and color (vec3) grids to `path` atomically; returns the path."""
    vdb = load_openvdb()
    transform = vdb.createLinearTransform(arrays.index_to_world_rows())
    offset = tuple(int(v) for v in arrays.offset)

    density = vdb.FloatGrid(0.0)
    density.copyFromArray(arrays.density, ijk=offset, tolerance=0.0)
    density.name = DENSITY_GRID
    density.transform = transform
    density.gridClass = vdb.GridClass.FOG_VOLUME

    bg = float(arrays.color_background)
    color = vdb.Vec3SGrid((bg, bg, bg))
    # Voxels equal to the background stay inactive, so only the active region costs memory.
    color.copyFromArray(arrays.color, ijk=offset, tolerance=(0.0, 0.0, 0.0))
    color.name = COLOR_GRID
    color.transform = transform.deepCopy()

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.vdb"
    vdb.write(tmp, [density, color], metadata=dict(metadata or {}))
    os.replace(tmp, path)
    return path
