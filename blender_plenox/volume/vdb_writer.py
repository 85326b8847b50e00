"""Writes VdbArrays as an OpenVDB file with the add-on's own numpy writer (io/vdb_file.py).

Blender builds ship different OpenVDB Python bindings, or none (the 4.2 `bpy` wheel), so writing
needs no binding; `load_openvdb()` serves tests and benchmarks that read files back with it.
"""

from __future__ import annotations

import os

from ..io.vdb_arrays import VdbArrays
from ..io.vdb_file import VdbGrid, differs_from, write_vdb_file

DENSITY_GRID = "density"
COLOR_GRID = "color"


def load_openvdb():  # type: ignore[no-untyped-def]
    """Blender's OpenVDB Python binding, for tests and benchmarks that read files back; ImportError
    without bpy or where the build has none (the 4.2 wheel). Which binding where: compat.openvdb_module."""
    from ..compat import openvdb_module  # imports bpy, so only when asked

    vdb = openvdb_module()
    if vdb is None:
        raise ImportError("this Blender build has no OpenVDB Python binding")
    return vdb


def vdb_grids(arrays: VdbArrays) -> list[VdbGrid]:
    """The density (fog volume) and colour grids. Voxels equal to the background stay inactive, so
    only the active region costs memory; but a voxel with density keeps its colour active even when
    that colour equals the background: otherwise a grid whose every colour is the background has no
    active voxel at all, and Cycles reads colour 0 from the empty grid (a black volume)."""
    transform = arrays.index_to_world_rows()
    density_active = arrays.density != 0.0
    bg = float(arrays.color_background)
    colour = arrays.color
    colour_active = density_active | differs_from(colour, bg)
    return [
        VdbGrid(DENSITY_GRID, arrays.density, arrays.offset, transform, 0.0, "fog volume", density_active),
        VdbGrid(COLOR_GRID, colour, arrays.offset, transform, (bg, bg, bg), active=colour_active),
    ]


def write_vdb(arrays: VdbArrays, path: str, metadata: dict[str, str] | None = None) -> str:
    """Writes the density (float) and color (vec3) grids to `path` atomically; returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.vdb"
    try:
        write_vdb_file(tmp, vdb_grids(arrays), dict(metadata or {}))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)  # a reader never sees a half-written file under `path`
    return path

