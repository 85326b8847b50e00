"""The surface of a grid's density field at one level, as a Blender mesh, through Blender's own
Volume to Mesh (OpenVDB's volumeToMesh, multithreaded C++): faster and better kept than a numpy
marching cubes, and no new dependency.

The density (raw signed values on the voxels' sample points, as the volume import writes it) goes
into a temporary VDB file, a temporary Volume object shows it and a temporary mesh object's Volume
to Mesh modifier (grid resolution, no adaptivity) extracts the level set; the evaluated mesh becomes
a plain Mesh datablock and everything temporary is removed. volumeToMesh interpolates linearly
along the edges between sample points, where trilinear interpolation is linear too, and a level
above 0 is the same surface for the raw and the clamped field (contract 4), so the surface lies on
the contract's field.

Placement: the modifier sees a grid where Blender's renderers do, i.e. half a voxel along +x, +y, +z
before 5.0 (compat.RENDER_VOXEL_SHIFT, measured here on 4.2 and 4.5 for the modifier too). It maps
the volume object's space into the mesh object's, so giving the temporary Volume object the
matrix the volume import uses (compat.volume_object_matrix) puts the vertices at the world positions
of contract 4 on every version; the mesh object itself keeps the identity.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import bpy
from mathutils import Matrix

from ..compat import volume_object_matrix
from ..io.enclosed_voids import fill_enclosed_voids
from ..io.grid_reader import PlenoxGrid
from ..io.ray_surface import Block, PinholeCamera, fill_hidden, seen_field
from ..io.vdb_arrays import build_vdb_arrays
from ..io.vdb_file import VdbGrid, write_vdb_file
from .vdb_writer import DENSITY_GRID


def _density_vdb(grid: PlenoxGrid, path: str, level: float, fill_voids: bool, cameras: list[PinholeCamera]) -> None:
    arrays = build_vdb_arrays(grid, view_dependent=False)
    density = arrays.density
    if cameras:  # plus what they could not reach (io/ray_surface.py)
        block = Block(arrays.density, arrays.origin + arrays.offset * arrays.voxel_size, arrays.voxel_size)
        density = fill_hidden(density, level, seen_field(block, cameras, level))
    if fill_voids:
        density = fill_enclosed_voids(density, level)[0]
    transform = arrays.index_to_world_rows()
    active = density != 0.0
    write_vdb_file(path, [VdbGrid(DENSITY_GRID, density, arrays.offset, transform, 0.0, "fog volume", active)])


def extract_surface(scene: Any, grid: PlenoxGrid, level: float, name: str, fill_voids: bool = True,
                    cameras: list[PinholeCamera] | None = None) -> Any:
    """A new Mesh datablock `name`: the surface σ = `level` (per world unit) of the grid's density, in
    world coordinates, faces facing out of the dense side, smooth shaded. Possibly empty.
    fill_voids: leave out the surfaces of empty space enclosed by the field (io/enclosed_voids.py).
    cameras (the training cameras): leave out the surfaces none of them could reach, inner walls
    included (io/ray_surface.py)."""
    fd, path = tempfile.mkstemp(prefix="plenox_surface_", suffix=".vdb")  # a fresh path: Blender caches by path
    os.close(fd)
    scene_coll = scene.collection
    vol = vol_obj = carrier = None
    try:
        _density_vdb(grid, path, level, fill_voids, cameras or [])
        vol = bpy.data.volumes.new(f"{name} (surface source)")
        vol.filepath = path
        vol.grids.load()
        if not vol.grids.is_loaded or DENSITY_GRID not in vol.grids:
            raise RuntimeError(f"{path}: Blender could not load the density ({vol.grids.error_message or 'no grids'})")
        vol_obj = bpy.data.objects.new(f"{name} (surface source)", vol)
        vol_obj.matrix_world = volume_object_matrix(vol.grids[DENSITY_GRID].matrix_object)
        carrier = bpy.data.objects.new(f"{name} (surface)", bpy.data.meshes.new(f"{name} (surface)"))
        carrier.matrix_world = Matrix.Identity(4)
        # both in the scene for the evaluation only: the depsgraph evaluates what the view layer holds
        scene_coll.objects.link(vol_obj)
        scene_coll.objects.link(carrier)
        mod: Any = carrier.modifiers.new("Volume to Mesh", "VOLUME_TO_MESH")
        mod.object = vol_obj
        mod.grid_name = DENSITY_GRID
        mod.resolution_mode = "GRID"
        mod.threshold = level
        mod.adaptivity = 0.0
        mod.use_smooth_shade = True
        depsgraph = bpy.context.evaluated_depsgraph_get()  # the scene's view layer must be the context's
        depsgraph.update()
        mesh = bpy.data.meshes.new_from_object(carrier.evaluated_get(depsgraph))
        mesh.name = name
        return mesh
    finally:
        carrier_mesh: Any = carrier.data if carrier is not None else None
        for obj in (carrier, vol_obj):
            if obj is not None:
                bpy.data.objects.remove(obj)
        if carrier_mesh is not None:
            bpy.data.meshes.remove(carrier_mesh)
        if vol is not None:
            bpy.data.volumes.remove(vol)
        try:
            os.remove(path)
        except OSError:
            pass  # still open (Windows): the temporary folder's own clean-up takes it
