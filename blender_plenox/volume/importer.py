"""Grid file → VDB file → Volume object, in that order, so a bad file never reaches the scene."""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Any

import bpy

from ..io.grid_reader import read_grid
from ..io.vdb_arrays import ColorSpace, applied_color_space, build_vdb_arrays
from .vdb_writer import write_vdb
from .volume_object import create_or_update
from .world_background import show_background_map


@dataclass(frozen=True)
class ImportResult:
    obj: Any
    vdb_path: str
    active_voxels: int
    resolution: tuple[int, int, int]
    seconds: float
    sh_degree: int = 0  # the grid file's SH degree
    shown_degree: int = 0  # the degree the volume shows: the file's, or 0 with view-independent colour only
    vdb_bytes: int = 0
    aabb: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,) * 3, (0.0,) * 3)  # the voxels' world box
    voxel_size: float = 0.0  # the smallest side of a voxel, in world units
    background: str = ""  # what became of the grid's learnt background ('' when it has none)


def vdb_path_for(grid_path: str) -> str:
    """A fresh file name per import beside the grid: Blender caches volume files by path, so
    rewriting the same path would show the old grids."""
    stem, _ = os.path.splitext(os.path.abspath(grid_path))
    return f"{stem}.{time.time_ns() // 1_000_000}.vdb"


def _remove_stale(grid_path: str, keep: str) -> None:
    stem, _ = os.path.splitext(os.path.abspath(grid_path))
    for old in glob.glob(glob.escape(stem) + ".*.vdb"):
        if os.path.abspath(old) != os.path.abspath(keep):
            try:
                os.remove(old)
            except OSError:
                pass  # still open elsewhere (Windows): a later import cleans it up


def _voxel_box(grid: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The world box of the grid's voxels (the whole grid box when it has none): tighter than the
    training box, so EEVEE's depth range hugs what is there."""
    lo, hi = grid.aabb[0], grid.aabb[1]
    if len(grid.coords):
        lo, hi = lo + grid.coords.min(0) * grid.voxel_size, lo + (grid.coords.max(0) + 1) * grid.voxel_size
    return tuple(map(float, lo)), tuple(map(float, hi))


def import_grid(
    scene: Any,
    grid_path: str,
    object_name: str = "Plenoxels",
    multiplier: float = 1.0,
    threshold: float = 0.0,
    min_density: float = 0.0,
    color_space: ColorSpace = "LINEAR",
    view_dependent: bool = True,
    background_world: bool = True,
) -> ImportResult:
    """Reads a contract-4 grid and shows it as the Volume object `object_name` (replacing its data).

    view_dependent: write the grid's higher SH coefficients and evaluate them from the view direction
    in the material; False writes and shows the view-independent colour only (a lighter file).
    background_world: a grid with a learnt background makes it the scene's World (world_background).
    Raises GridFileError (one line) for a bad file, before anything in the scene changes.
    """
    start = time.perf_counter()
    grid_path = os.path.abspath(bpy.path.abspath(grid_path))
    grid = read_grid(grid_path)
    color_space = applied_color_space(color_space, grid)
    arrays = build_vdb_arrays(grid, min_density=min_density, view_dependent=view_dependent)
    meta = {"source": grid_path, "color_space": color_space, "sh_degree": str(arrays.sh_degree)}
    vdb_path = write_vdb(arrays, vdb_path_for(grid_path), meta)
    obj = create_or_update(scene, object_name, vdb_path, grid_path, multiplier, threshold, color_space, arrays.sh_degree)
    _remove_stale(grid_path, vdb_path)
    background = ""
    if grid.background_map is not None:
        background = (show_background_map(scene, grid.background_map, color_space) if background_world else
                      "learnt background not shown (Learnt Background as World is off)")
    res = tuple(int(v) for v in grid.resolution)
    seconds = time.perf_counter() - start
    return ImportResult(
        obj, vdb_path, arrays.active_voxels, res, seconds,  # type: ignore[arg-type]
        int(grid.sh_degree), arrays.sh_degree, os.path.getsize(vdb_path),
        _voxel_box(grid), float(min(grid.voxel_size)), background,
    )
