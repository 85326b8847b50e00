"""Grid file → coloured surface mesh (the Import panel's "Mesh" mode).

The surface is where the density reaches the level of a user-set opacity per voxel (σ such that one
voxel's thickness stops that share of the light, io/field_sampling.density_for_opacity), extracted
by Blender's Volume to Mesh (surface_mesh.py), less the surfaces none of the training cameras could
see (inner walls and the hollows behind them: io/ray_surface.py, with the cameras of the dataset the
grid's metadata names, when it is still there). Each vertex gets the colour a ray looking straight
at it (along −normal) renders of the field, onto the trainer's background (io/surface_colour.py,
numpy): for a grid with spherical harmonics, seen from that direction, else view-independent. It is
stored as a float colour attribute, in scene-linear or the trainer's values like the volume import,
and an emission material shows it as it is: the trained colours already hold the scene's lighting.
The object has the identity matrix: its vertices are in world coordinates, where the volume is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ..compat import node_tree_of
from ..io.field_sampling import SparseField, density_for_opacity
from ..io.grid_reader import read_grid
from ..io.ray_surface import training_cameras
from ..io.surface_colour import rendered_colour, training_background
from ..io.vdb_arrays import ColorSpace, applied_color_space, srgb_to_linear
from .surface_mesh import extract_surface
from .volume_object import reconstruction_collection

COLOR_ATTRIBUTE = "plenox_colour"
MATERIAL_NAME = "Plenoxels Surface"
MESH_SUFFIX = " Mesh"  # the mesh object beside the volume object of the same import name
TAG = "plenox_grid"  # custom property on the object: the grid file it shows (as on the Volume object)


@dataclass(frozen=True)
class MeshImportResult:
    obj: Any
    vertices: int
    faces: int
    level: float  # the surface's density, per world unit
    seconds: float
    sh_degree: int  # the grid file's
    view_dependent: bool  # colours baked from the SH at −normal (else view-independent)
    cameras: int = 0  # training cameras whose unseen space was filled (0: none, or none found)


def mesh_object_name(object_name: str) -> str:
    return f"{object_name}{MESH_SUFFIX}"


def build_material() -> Any:
    """Emission of the colour attribute, strength 1: the mesh shows the trained colours unlit."""
    mat = bpy.data.materials.get(MATERIAL_NAME) or bpy.data.materials.new(MATERIAL_NAME)
    nt: Any = node_tree_of(mat)
    nt.nodes.clear()
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = COLOR_ATTRIBUTE
    attr.location = (-400, 0)
    emit = nt.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    emit.location = (-150, 0)
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    out.location = (100, 0)
    nt.links.new(attr.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs[0], out.inputs["Surface"])
    return mat


def vertex_arrays(mesh: Any) -> tuple[np.ndarray, np.ndarray]:
    """(positions, unit normals), both (V, 3) float64."""
    n = len(mesh.vertices)
    co = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    normals = np.empty(n * 3, np.float32)
    mesh.vertex_normals.foreach_get("vector", normals)
    normals64 = normals.reshape(-1, 3).astype(np.float64)
    normals64 /= np.maximum(np.linalg.norm(normals64, axis=1, keepdims=True), 1e-12)
    return co.reshape(-1, 3).astype(np.float64), normals64


def _set_colours(mesh: Any, rgb: np.ndarray) -> None:
    attr = mesh.color_attributes.get(COLOR_ATTRIBUTE) or mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([rgb, np.ones((len(rgb), 1), np.float32)], axis=1)
    attr.data.foreach_set("color", rgba.astype(np.float32).ravel())
    mesh.color_attributes.active_color = attr  # what the viewport's Attribute colour shows
    mesh.color_attributes.render_color_index = mesh.color_attributes.find(COLOR_ATTRIBUTE)


def _place(scene: Any, name: str, mesh: Any, grid_path: str) -> Any:
    coll = reconstruction_collection(scene)
    obj = bpy.data.objects.get(name)
    old = None
    if obj is not None and obj.type == "MESH":
        old, obj.data = obj.data, mesh
    else:
        obj = bpy.data.objects.new(name, mesh)
    if obj.name not in coll.objects:
        coll.objects.link(obj)
    obj.matrix_world = ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1))
    obj[TAG] = grid_path
    if old is not None and old.users == 0:
        bpy.data.meshes.remove(old)
    return obj


def import_grid_as_mesh(
    scene: Any,
    grid_path: str,
    object_name: str = "Plenoxels",
    opacity: float = 0.3,
    color_space: ColorSpace = "LINEAR",
    view_dependent: bool = True,
    fill_voids: bool = True,
    remove_hidden: bool = True,
) -> MeshImportResult:
    """Reads a contract-4 grid and shows its surface at `opacity` per voxel as the mesh object
    `<object_name> Mesh` (made, or its data replaced). view_dependent: bake the SH colour seen along
    −normal (grids of degree > 0); else the view-independent colour. remove_hidden: fill what none of
    the training cameras (the grid's dataset, if it is still there) could see, so that no inner
    surface is left (io/ray_surface.py). Raises GridFileError for a bad
    file and RuntimeError when the field has no surface at that level, before the scene changes."""
    start = time.perf_counter()
    grid_path = os.path.abspath(bpy.path.abspath(grid_path))
    grid = read_grid(grid_path)
    level = density_for_opacity(opacity, float(min(grid.voxel_size)))
    name = mesh_object_name(object_name)
    cameras = training_cameras(grid.metadata.get("data")) if remove_hidden else []
    mesh = extract_surface(scene, grid, level, name, fill_voids, cameras)
    if len(mesh.vertices) == 0:
        bpy.data.meshes.remove(mesh)
        peak = float(grid.density.max()) if grid.num_voxels else 0.0
        hint = "lower the Surface Opacity" if peak > 0 else "the grid holds no density"
        raise RuntimeError(f"{grid_path}: no surface at opacity {opacity:g} (density {level:.4g}; "
                           f"the grid's highest is {peak:.4g}): {hint}")
    positions, normals = vertex_arrays(mesh)
    bake = view_dependent and grid.sh_degree > 0
    background = training_background(grid.metadata)  # encoded, as the config gives it
    if background is not None and grid.color_space == "linear":
        background = srgb_to_linear(background)
    rgb = rendered_colour(SparseField(grid), positions, normals, float(min(grid.voxel_size)), bake, background)
    if applied_color_space(color_space, grid) == "LINEAR":
        rgb = srgb_to_linear(rgb)
    _set_colours(mesh, rgb)
    mesh.materials.append(build_material())
    obj = _place(scene, name, mesh, grid_path)
    return MeshImportResult(obj, len(mesh.vertices), len(mesh.polygons), level,
                            time.perf_counter() - start, int(grid.sh_degree), bake, len(cameras))
