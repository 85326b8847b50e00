"""The Volume object in the "Reconstruction" collection and its emission-absorption material.

The material reproduces the trainer's rendering model (DESIGN.md): absorption with density σ and
emission σ·c, where c is the view-independent colour, with σ read from the `density` grid (already in
world units) times a multiplier, and zeroed below a threshold.
"""

from __future__ import annotations

from typing import Any

import bpy

from .vdb_writer import COLOR_GRID, DENSITY_GRID

COLLECTION_NAME = "Reconstruction"
MATERIAL_NAME = "Plenoxels"
TAG = "plenox_grid"  # custom property on the object: the grid file it shows
NODE_MULTIPLIER = "Density Multiplier"
NODE_THRESHOLD = "Density Threshold"


def reconstruction_collection(scene: Any) -> Any:
    coll = bpy.data.collections.get(COLLECTION_NAME)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION_NAME)
    if scene.collection.children.get(coll.name) is None and coll not in scene.collection.children_recursive:
        scene.collection.children.link(coll)
    return coll


def build_material(name: str = MATERIAL_NAME) -> Any:
    """A node tree: σ = density·multiplier·(density > threshold); Volume = Absorption(σ) + Emission(σ·c)."""
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 makes materials without a node tree
        mat.use_nodes = True
    nt: Any = mat.node_tree
    nt.nodes.clear()
    n: Any = nt.nodes
    density = n.new("ShaderNodeAttribute")
    density.attribute_name = DENSITY_GRID
    density.location = (-800, 100)
    color = n.new("ShaderNodeAttribute")
    color.attribute_name = COLOR_GRID
    color.location = (-800, -200)
    above = n.new("ShaderNodeMath")
    above.operation = "GREATER_THAN"
    above.name = above.label = NODE_THRESHOLD
    above.inputs[1].default_value = 0.0
    above.location = (-550, 250)
    gated = n.new("ShaderNodeMath")
    gated.operation = "MULTIPLY"
    gated.location = (-350, 150)
    scaled = n.new("ShaderNodeMath")
    scaled.operation = "MULTIPLY"
    scaled.name = scaled.label = NODE_MULTIPLIER
    scaled.inputs[1].default_value = 1.0
    scaled.location = (-150, 150)
    absorb = n.new("ShaderNodeVolumeAbsorption")
    absorb.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)  # coefficient = density·(1 − colour) = σ
    absorb.location = (100, 200)
    emit = n.new("ShaderNodeEmission")
    emit.location = (100, -100)
    add = n.new("ShaderNodeAddShader")
    add.location = (300, 50)
    out = n.new("ShaderNodeOutputMaterial")
    out.location = (500, 50)
    links = nt.links
    links.new(density.outputs["Fac"], above.inputs[0])
    links.new(density.outputs["Fac"], gated.inputs[0])
    links.new(above.outputs[0], gated.inputs[1])
    links.new(gated.outputs[0], scaled.inputs[0])
    links.new(scaled.outputs[0], absorb.inputs["Density"])
    links.new(scaled.outputs[0], emit.inputs["Strength"])
    links.new(color.outputs["Color"], emit.inputs["Color"])
    links.new(absorb.outputs[0], add.inputs[0])
    links.new(emit.outputs[0], add.inputs[1])
    links.new(add.outputs[0], out.inputs["Volume"])
    return mat


def set_material_controls(mat: Any, multiplier: float, threshold: float) -> None:
    nodes = mat.node_tree.nodes if mat.node_tree else None
    if nodes is None or NODE_MULTIPLIER not in nodes or NODE_THRESHOLD not in nodes:
        return
    nodes[NODE_MULTIPLIER].inputs[1].default_value = multiplier
    nodes[NODE_THRESHOLD].inputs[1].default_value = threshold


def find_volume_object(scene: Any, name: str) -> Any:
    obj = bpy.data.objects.get(name)
    return obj if obj is not None and obj.type == "VOLUME" else None


def create_or_update(
    scene: Any,
    name: str,
    vdb_path: str,
    grid_path: str,
    multiplier: float = 1.0,
    threshold: float = 0.0,
) -> Any:
    """Shows `vdb_path` on the Volume object `name` (made if missing); re-importing replaces its data."""
    coll = reconstruction_collection(scene)
    obj = find_volume_object(scene, name)
    old = obj.data if obj is not None else None
    vol: Any = bpy.data.volumes.new(name)
    vol.filepath = vdb_path
    vol.grids.load()  # load now: a broken file fails here, before the scene changes
    if not vol.grids.is_loaded or len(vol.grids) == 0:
        error = vol.grids.error_message or "no grids"
        bpy.data.volumes.remove(vol)
        raise RuntimeError(f"{vdb_path}: Blender could not load the volume ({error})")
    # The material's density already is extinction per world unit: no hidden scale anywhere.
    vol.render.space = "WORLD"
    vol.render.precision = "FULL"
    vol.render.clipping = 0.0
    vol.display.density = 1.0
    vol.display.interpolation_method = "LINEAR"
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is None or mat.node_tree is None or NODE_MULTIPLIER not in mat.node_tree.nodes:
        mat = build_material(MATERIAL_NAME)
    set_material_controls(mat, multiplier, threshold)
    vol.materials.append(mat)
    if obj is None:
        obj = bpy.data.objects.new(name, vol)
        coll.objects.link(obj)
    else:
        obj.data = vol
        if obj.name not in coll.objects:
            coll.objects.link(obj)
    obj[TAG] = grid_path
    # The VDB's transform already places every voxel in world space.
    obj.matrix_world.identity()
    if old is not None and old.users == 0:
        bpy.data.volumes.remove(old)
    return obj
