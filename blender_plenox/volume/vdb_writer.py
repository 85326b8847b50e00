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
SH_GRID_PREFIX = "sh"  # sh1 … sh{K−1}: one vec3 grid (R, G, B) per SH basis function after the DC one


def sh_grid_name(k: int) -> str:
    return f"{SH_GRID_PREFIX}{k}"


def load_openvdb():  # type: ignore[no-untyped-def]
    """Blender's OpenVDB Python binding, for tests and benchmarks that read files back; ImportError
    without bpy or where the build has none (the 4.2 wheel). Which binding where: compat.openvdb_module."""
    from ..compat import openvdb_module  # imports bpy, so only when asked

    vdb = openvdb_module()
    if vdb is None:
        raise ImportError("this Blender build has no OpenVDB Python binding")
    return vdb


def vdb_grids(arrays: VdbArrays) -> list[VdbGrid]:
    """The density (fog volume) grid, the colour (DC value) grid and one grid per higher SH
    coefficient. Density is active where it is non-zero. Every colour grid is active on all kept
    voxels, even where the value equals its background: a colour grid inactive where density is
    active reads the background there, and one whose every value is the background would be empty
    (Cycles then reads 0 from it: a black volume). They share one mask object, so the writer lays out
    their trees once."""
    transform = arrays.index_to_world_rows()
    density_active = arrays.density != 0.0
    bg = float(arrays.color_background)
    kept = arrays.kept if arrays.kept is not None else density_active | differs_from(arrays.color, bg)
    grids = [
        VdbGrid(DENSITY_GRID, arrays.density, arrays.offset, transform, 0.0, "fog volume", density_active),
        VdbGrid(COLOR_GRID, arrays.color, arrays.offset, transform, (bg, bg, bg), active=kept),
    ]
    for k in range(arrays.sh_rest.shape[2]):
        grids.append(
            VdbGrid(sh_grid_name(k + 1), arrays.sh_rest[:, :, k], arrays.offset, transform, (0.0, 0.0, 0.0), active=kept)
        )
    return grids


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

