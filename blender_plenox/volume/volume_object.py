"""The Volume object in the "Reconstruction" collection and its emission-absorption material.

The material reproduces the trainer's rendering model (DESIGN.md): absorption with density σ and
emission σ·c, with σ read from the `density` grid (already in world units) times a multiplier, and
zeroed below a threshold. c is the view-independent colour (the `color` grid) or, for a grid imported
with its SH degree d > 0, that plus the node group "Plenoxels SH degree d" (sh_nodes.py), which adds
Σ_{k≥1} Y_k(view direction)·sh_k from the grids sh1 … sh{K−1}.

Contract 4 v2: the grids hold raw signed values, Cycles interpolates them trilinearly, and the material
clamps right after the Attribute nodes (after the SH group for colour), σ = max(0, density) and
c = max(0, colour [+ Σ Y_k·sh_k]), which is the trainer's field. The threshold and multiplier act on the clamped σ; the optional sRGB → scene-linear
conversion acts on the clamped c (it is non-linear, so it must follow interpolation, not precede it).
"""

from __future__ import annotations

from typing import Any

import bpy

from ..compat import node_tree_of, volume_object_matrix
from .sh_nodes import build_group
from .vdb_writer import COLOR_GRID, DENSITY_GRID

COLLECTION_NAME = "Reconstruction"
MATERIAL_NAME = "Plenoxels"  # scene-linear colours (color_space "LINEAR")
MATERIAL_NAME_TRAINER = "Plenoxels (trainer colours)"  # the trainer's values as they are ("TRAINER")
TAG = "plenox_grid"  # custom property on the object: the grid file it shows
NODE_MULTIPLIER = "Density Multiplier"
NODE_THRESHOLD = "Density Threshold"
NODE_DENSITY_CLAMP = "Density Clamp"  # marks a material built for contract 4 v2
NODE_COLOR_CLAMP = "Color Clamp"
NODE_SH = "View-Dependent Colour"  # the SH group node, in materials of degree > 0
SRGB_LINEAR_BELOW = 0.04045  # IEC 61966-2-1: c/12.92 below, ((c + 0.055)/1.055)^2.4 from here up


def reconstruction_collection(scene: Any) -> Any:
    coll = bpy.data.collections.get(COLLECTION_NAME)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION_NAME)
    if scene.collection.children.get(coll.name) is None and coll not in scene.collection.children_recursive:
        scene.collection.children.link(coll)
    return coll


def _math(n: Any, op: str, location: tuple[float, float], *values: float) -> Any:
    node = n.new("ShaderNodeMath")
    node.operation = op
    for i, v in enumerate(values):
        node.inputs[i + 1].default_value = v
    node.location = location
    return node


def _srgb_to_linear(nt: Any, colour_out: Any, x: float) -> Any:
    """Nodes mapping a clamped colour socket to scene-linear per channel; returns the output socket."""
    n, links = nt.nodes, nt.links
    split = n.new("ShaderNodeSeparateColor")
    split.location = (x, -450)
    join = n.new("ShaderNodeCombineColor")
    join.location = (x + 1000, -450)
    links.new(colour_out, split.inputs[0])
    for ch in range(3):
        y = -350 - 250 * ch
        c = split.outputs[ch]
        low = _math(n, "MULTIPLY", (x + 200, y), 1.0 / 12.92)
        base = _math(n, "MULTIPLY_ADD", (x + 200, y - 80), 1.0 / 1.055, 0.055 / 1.055)
        high = _math(n, "POWER", (x + 400, y - 80), 2.4)
        is_low = _math(n, "LESS_THAN", (x + 400, y + 60), SRGB_LINEAR_BELOW)
        diff = _math(n, "SUBTRACT", (x + 600, y))
        out = _math(n, "MULTIPLY_ADD", (x + 800, y))  # high + is_low·(low − high)
        for target in (low, base, is_low):
            links.new(c, target.inputs[0])
        links.new(base.outputs[0], high.inputs[0])
        links.new(low.outputs[0], diff.inputs[0])
        links.new(high.outputs[0], diff.inputs[1])
        links.new(is_low.outputs[0], out.inputs[0])
        links.new(diff.outputs[0], out.inputs[1])
        links.new(high.outputs[0], out.inputs[2])
        links.new(out.outputs[0], join.inputs[ch])
    return join.outputs[0]


def material_name(color_space: str, sh_degree: int = 0) -> str:
    """One material per colour space and SH degree: volumes of the same kind share it."""
    base = MATERIAL_NAME if sh_degree == 0 else f"{MATERIAL_NAME} SH{sh_degree}"
    return f"{base} (trainer colours)" if color_space == "TRAINER" else base


def build_material(name: str = MATERIAL_NAME, linear: bool = True, sh_degree: int = 0) -> Any:
    """σ = max(0, density)·multiplier·(σ > threshold); c = max(0, colour [+ SH group]) [→ linear];
    Volume = Absorption(σ) + Emission(σ·c)."""
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    nt: Any = node_tree_of(mat)
    nt.nodes.clear()
    n: Any = nt.nodes
    density = n.new("ShaderNodeAttribute")
    density.attribute_name = DENSITY_GRID
    density.location = (-1000, 100)
    color = n.new("ShaderNodeAttribute")
    color.attribute_name = COLOR_GRID
    color.location = (-1000, -300)
    clamp_density = _math(n, "MAXIMUM", (-800, 100), 0.0)
    clamp_density.name = clamp_density.label = NODE_DENSITY_CLAMP
    clamp_color = n.new("ShaderNodeVectorMath")
    clamp_color.operation = "MAXIMUM"
    clamp_color.inputs[1].default_value = (0.0, 0.0, 0.0)
    clamp_color.name = clamp_color.label = NODE_COLOR_CLAMP
    clamp_color.location = (-800, -300)
    above = _math(n, "GREATER_THAN", (-550, 250), 0.0)
    above.name = above.label = NODE_THRESHOLD
    gated = _math(n, "MULTIPLY", (-350, 150))
    scaled = _math(n, "MULTIPLY", (-150, 150), 1.0)
    scaled.name = scaled.label = NODE_MULTIPLIER
    absorb = n.new("ShaderNodeVolumeAbsorption")
    absorb.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)  # coefficient = density·(1 − colour) = σ
    absorb.location = (100, 200)
    emit = n.new("ShaderNodeEmission")
    emit.location = (1300, -100)
    add = n.new("ShaderNodeAddShader")
    add.location = (1500, 50)
    out = n.new("ShaderNodeOutputMaterial")
    out.location = (1700, 50)
    links = nt.links
    links.new(density.outputs["Fac"], clamp_density.inputs[0])
    links.new(clamp_density.outputs[0], above.inputs[0])
    links.new(clamp_density.outputs[0], gated.inputs[0])
    links.new(above.outputs[0], gated.inputs[1])
    links.new(gated.outputs[0], scaled.inputs[0])
    links.new(scaled.outputs[0], absorb.inputs["Density"])
    links.new(scaled.outputs[0], emit.inputs["Strength"])
    if sh_degree > 0:
        sh = n.new("ShaderNodeGroup")
        sh.node_tree = build_group(sh_degree)
        sh.name = sh.label = NODE_SH
        sh.location = (-1000, -500)
        links.new(color.outputs["Vector"], sh.inputs[0])
        links.new(sh.outputs[0], clamp_color.inputs[0])
    else:
        links.new(color.outputs["Color"], clamp_color.inputs[0])
    colour_out = clamp_color.outputs[0]
    if linear:
        colour_out = _srgb_to_linear(nt, colour_out, -600)
    links.new(colour_out, emit.inputs["Color"])
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
    color_space: str = "LINEAR",
    sh_degree: int = 0,
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
    mat_name = material_name(color_space, sh_degree)
    mat = bpy.data.materials.get(mat_name)
    # A material from before contract 4 v2 (no clamp node) would render negative densities, and one
    # of degree > 0 without its SH group (or with an outdated one) the wrong colour: rebuild them.
    nodes: Any = mat.node_tree.nodes if mat is not None and mat.node_tree is not None else None
    stale = nodes is None or NODE_DENSITY_CLAMP not in nodes
    if nodes is not None and not stale and sh_degree > 0:
        group_node = nodes.get(NODE_SH)
        stale = group_node is None or group_node.node_tree is not build_group(sh_degree)
    if stale:
        mat = build_material(mat_name, linear=color_space != "TRAINER", sh_degree=sh_degree)
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
    # The VDB's transform already places every voxel in world space; the object's matrix only undoes
    # where a Blender version renders grids off it (compat).
    obj.matrix_world = volume_object_matrix(vol.grids[DENSITY_GRID].matrix_object)
    if old is not None and old.users == 0:
        bpy.data.volumes.remove(old)
    return obj
