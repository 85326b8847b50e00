"""Reads a Volume's grids back through Blender itself, on every supported version.

The `openvdb` Python binding is missing from Blender 4.2's `bpy` wheel, so the tests that look inside
a written VDB also ask Blender: its own OpenVDB loads the file and a Geometry Nodes *Sample Grid* node
(present from 4.2 on) reads values at points, trilinear as Cycles interpolates, or *Sample Grid Index*
reads voxels by index, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy

from blender_plenox.compat import openvdb_module

_ATTRIBUTE = "probe_value"


def _as_object(volume: Any) -> tuple[Any, bool]:
    """(object showing `volume`, whether it was made here): Object Info needs an object."""
    if isinstance(volume, bpy.types.Object):
        return volume, False
    obj = bpy.data.objects.new("probe_volume", volume)
    bpy.context.scene.collection.objects.link(obj)
    return obj, True


def sample_grid(volume: Any, grid_name: str, points: np.ndarray, by_index: bool = False) -> np.ndarray:
    """Blender's trilinear sample of the grid `grid_name` of `volume` (a Volume object or datablock)
    at world-space `points` (n, 3), or with `by_index` the values of the voxels whose integer indices
    `points` holds: (n,) for a float grid, (n, 3) for a vector grid."""
    vol_obj, made = _as_object(volume)
    vector = vol_obj.data.grids[grid_name].data_type.startswith("VECTOR")
    grid_type = "VECTOR" if vector else "FLOAT"  # the grid nodes' name for a socket type
    data_type = "FLOAT_VECTOR" if vector else "FLOAT"  # the attribute's
    points = np.asarray(points, np.float64).reshape(-1, 3)
    mesh = bpy.data.meshes.new("probe_points")
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.astype(np.float32).ravel())
    probe = bpy.data.objects.new("probe_points", mesh)
    bpy.context.scene.collection.objects.link(probe)
    tree = bpy.data.node_groups.new("probe", "GeometryNodeTree")
    try:
        tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
        tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
        nodes, links = tree.nodes, tree.links
        group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
        info = nodes.new("GeometryNodeObjectInfo")
        info.inputs["Object"].default_value = vol_obj
        get = nodes.new("GeometryNodeGetNamedGrid")
        get.data_type = grid_type
        get.inputs["Name"].default_value = grid_name
        position = nodes.new("GeometryNodeInputPosition").outputs[0]
        if by_index:  # integer indices are exact in the float32 positions up to 2^24
            sample = nodes.new("GeometryNodeSampleGridIndex")
            xyz = nodes.new("ShaderNodeSeparateXYZ")
            links.new(position, xyz.inputs[0])
            for axis in "XYZ":
                links.new(xyz.outputs[axis], sample.inputs[axis])
        else:
            sample = nodes.new("GeometryNodeSampleGrid")
            links.new(position, sample.inputs["Position"])
        sample.data_type = grid_type
        store = nodes.new("GeometryNodeStoreNamedAttribute")
        store.data_type, store.domain = data_type, "POINT"
        store.inputs["Name"].default_value = _ATTRIBUTE
        links.new(info.outputs["Geometry"], get.inputs["Volume"])
        links.new(get.outputs["Grid"], sample.inputs["Grid"])
        links.new(group_in.outputs[0], store.inputs["Geometry"])
        links.new(sample.outputs["Value"], store.inputs["Value"])
        links.new(store.outputs["Geometry"], group_out.inputs[0])
        probe.modifiers.new("probe", "NODES").node_group = tree
        evaluated = probe.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        attribute = evaluated.attributes[_ATTRIBUTE]
        out = np.empty(len(points) * (3 if vector else 1), np.float32)
        attribute.data.foreach_get("vector" if vector else "value", out)
        return out.reshape(-1, 3) if vector else out
    finally:
        bpy.data.objects.remove(probe)
        bpy.data.meshes.remove(mesh)
        bpy.data.node_groups.remove(tree)
        if made:
            bpy.data.objects.remove(vol_obj)


def index_to_world(volume: Any, grid_name: str) -> np.ndarray:
    """Blender's 4×4 map (column vectors) from a voxel index (its centre) to object space."""
    vol = volume.data if isinstance(volume, bpy.types.Object) else volume
    return np.array(vol.grids[grid_name].matrix_object, np.float64)


def sample_voxels(volume: Any, grid_name: str, ijk: np.ndarray) -> np.ndarray:
    """The values of the voxels `ijk` (n, 3): exactly what the file holds, background where inactive."""
    return sample_grid(volume, grid_name, ijk, by_index=True)


@dataclass(frozen=True)
class GridBlock:
    """A dense copy of a grid around its non-background voxels, read through Blender."""

    values: np.ndarray  # (x, y, z) or (x, y, z, 3): the voxels that differ from the background, and a rim
    lo: np.ndarray  # index of values[0, 0, 0]
    active_lo: np.ndarray  # index bounds (inclusive) of the voxels that differ from the background
    active_hi: np.ndarray
    index_to_world: np.ndarray  # 4×4, column vectors: index (a voxel's centre) → object space


def read_block(volume_obj: Any, grid_name: str, background: float = 0.0, rim: int = 1) -> GridBlock:
    """Every voxel that differs from `background` (for density, the add-on's writer activates exactly
    those) and `rim` voxels around them. It reads all voxels inside the object's bounds, which Blender
    makes cover the active ones (whole 8³ leaves on 4.x), plus a margin."""
    m = index_to_world(volume_obj, grid_name)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    corners = np.array([tuple(c) for c in volume_obj.evaluated_get(depsgraph).bound_box], np.float64)
    ijk = (corners - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    margin = rim + 1
    lo = np.floor(ijk.min(0)).astype(np.int64) - margin
    hi = np.ceil(ijk.max(0)).astype(np.int64) + margin
    axes = [np.arange(a, b + 1) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    values = sample_voxels(volume_obj, grid_name, grid)
    values = values.reshape(*(len(a) for a in axes), *values.shape[1:])
    differs = values != np.float32(background)
    if differs.ndim == 4:
        differs = differs.any(-1)
    found = np.argwhere(differs)
    if len(found) == 0:
        empty = np.zeros((0, 0, 0, *values.shape[3:]), values.dtype)
        return GridBlock(empty, lo, np.full(3, -1), np.full(3, -1), m)
    # Found voxels within a margin of the block's edge would mean Blender's bounds missed some.
    assert np.all(found.min(0) >= margin) and np.all(found.max(0) < np.array(differs.shape) - margin), "bounds"
    start, stop = found.min(0) - rim, found.max(0) + rim + 1
    block = values[tuple(slice(a, b) for a, b in zip(start, stop))].copy()
    return GridBlock(block, lo + start, lo + found.min(0), lo + found.max(0), m)


# The binding, where this Blender build has one (not the 4.2 wheel): a reader independent of Blender's
# loader for the tests that look at what only it shows (metadata, tree layout, active voxel counts).
OPENVDB = openvdb_module()
needs_openvdb = pytest.mark.skipif(OPENVDB is None, reason="this Blender build has no OpenVDB Python binding")
