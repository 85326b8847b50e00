"""The shader node group that adds the view-dependent part of the colour: Σ_{k≥1} Y_k(d)·sh_k.

Contract 4's colour is c(x, d) = max(0, Σ_k Y_k(d)·trilinear(sh_k)(x) + 0.5), with the real SH basis
of svox2/PlenOctrees (the trainer's trainer/engine/sh.py: same order, signs and constants, copied below,
since the add-on cannot import the torch-based trainer). The `color` grid already holds
C0·sh_0 + 0.5, interpolated by Cycles; this group reads the grids sh1 … sh{K−1} (each R, G, B of one
basis function, interpolated by Cycles too), weights each by its basis value and adds them to its
input. The material clamps the sum afterwards (volume_object.py), as for the DC colour.

d is the direction the light travels along the camera ray, from the camera into the scene (the
trainer's `dirs`). In a volume shader, Geometry → Incoming points the other way, from the shading
point back towards the viewer, so d = −Incoming. (Both are unit vectors in world space; the Volume
object's matrix is a translation at most, so world and grid axes agree.)

One group per degree per .blend file, named by GROUP_NAME, shared by every material of that degree.
"""

from __future__ import annotations

from typing import Any

import bpy

from .vdb_writer import sh_grid_name

GROUP_NAME = "Plenoxels SH degree {degree}"
GROUP_VERSION = 1  # stored on the group; a group from another version is rebuilt
VERSION_KEY = "plenox_sh_version"
INPUT_NAME = "DC Colour"
OUTPUT_NAME = "Colour"

# trainer/engine/sh.py's constants (svox2's).
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)

# Basis functions 1..15 as constant · [factor] · Σ a·monomial over the monomials below, in the
# trainer's order; the label is what the node editor shows.
Term = tuple[float, str]
BASIS: tuple[tuple[str, float, str | None, tuple[Term, ...]], ...] = (
    ("Y1 = −C1·y", C1, None, ((-1.0, "y"),)),
    ("Y2 = C1·z", C1, None, ((1.0, "z"),)),
    ("Y3 = −C1·x", C1, None, ((-1.0, "x"),)),
    ("Y4 = C2₀·xy", C2[0], None, ((1.0, "xy"),)),
    ("Y5 = C2₁·yz", C2[1], None, ((1.0, "yz"),)),
    ("Y6 = C2₂·(2zz − xx − yy)", C2[2], None, ((2.0, "zz"), (-1.0, "xx"), (-1.0, "yy"))),
    ("Y7 = C2₃·xz", C2[3], None, ((1.0, "xz"),)),
    ("Y8 = C2₄·(xx − yy)", C2[4], None, ((1.0, "xx"), (-1.0, "yy"))),
    ("Y9 = C3₀·y·(3xx − yy)", C3[0], "y", ((3.0, "xx"), (-1.0, "yy"))),
    ("Y10 = C3₁·xyz", C3[1], "z", ((1.0, "xy"),)),
    ("Y11 = C3₂·y·(4zz − xx − yy)", C3[2], "y", ((4.0, "zz"), (-1.0, "xx"), (-1.0, "yy"))),
    ("Y12 = C3₃·z·(2zz − 3xx − 3yy)", C3[3], "z", ((2.0, "zz"), (-3.0, "xx"), (-3.0, "yy"))),
    ("Y13 = C3₄·x·(4zz − xx − yy)", C3[4], "x", ((4.0, "zz"), (-1.0, "xx"), (-1.0, "yy"))),
    ("Y14 = C3₅·z·(xx − yy)", C3[5], "z", ((1.0, "xx"), (-1.0, "yy"))),
    ("Y15 = C3₆·x·(xx − 3yy)", C3[6], "x", ((1.0, "xx"), (-3.0, "yy"))),
)
PRODUCTS = {"xx": ("x", "x"), "yy": ("y", "y"), "zz": ("z", "z"), "xy": ("x", "y"), "yz": ("y", "z"), "xz": ("x", "z")}
COLUMN = 220  # node editor spacing


def group_name(degree: int) -> str:
    return GROUP_NAME.format(degree=degree)


def _math(nodes: Any, op: str, loc: tuple[float, float], parent: Any, *values: float) -> Any:
    node = nodes.new("ShaderNodeMath")
    node.operation = op
    for i, v in enumerate(values):
        node.inputs[i + 1].default_value = v
    node.location = loc
    node.parent = parent
    node.hide = True  # one line per node keeps a degree-3 group readable
    return node


def _frame(nodes: Any, label: str) -> Any:
    frame = nodes.new("NodeFrame")
    frame.label = label
    frame.label_size = 16
    return frame


def _basis_value(nodes: Any, links: Any, sockets: dict[str, Any], spec: tuple[str, float, str | None, tuple[Term, ...]],
                 x: float, y: float, parent: Any) -> Any:
    """Math nodes computing one basis function; returns its output socket. The constant is folded
    into the first factors (MULTIPLY, then MULTIPLY_ADD for each further term)."""
    label, const, factor, terms = spec
    acc = None
    for i, (a, mono) in enumerate(terms):
        if acc is None:
            node = _math(nodes, "MULTIPLY", (x + i * COLUMN * 0.6, y), parent, const * a)
        else:
            node = _math(nodes, "MULTIPLY_ADD", (x + i * COLUMN * 0.6, y), parent, const * a)
            links.new(acc, node.inputs[2])
        links.new(sockets[mono], node.inputs[0])
        acc = node.outputs[0]
        last = node
    if factor is not None:
        last = _math(nodes, "MULTIPLY", (x + len(terms) * COLUMN * 0.6, y), parent)
        links.new(acc, last.inputs[0])
        links.new(sockets[factor], last.inputs[1])
    last.label = label
    return last.outputs[0]


def build_group(degree: int) -> Any:
    """The node group for `degree` (1..3): input DC Colour (the `color` grid), output Colour =
    DC Colour + Σ_{k=1}^{K−1} Y_k(−Incoming)·sh_k, unclamped. Reused when it exists."""
    if not 1 <= degree <= 3:
        raise ValueError(f"SH degree must be 1..3 for the node group, got {degree}")
    name = group_name(degree)
    group: Any = bpy.data.node_groups.get(name)  # Any: the stubs type node trees and nodes loosely
    if group is not None and group.bl_idname == "ShaderNodeTree" and group.get(VERSION_KEY) == GROUP_VERSION:
        return group
    if group is None or group.bl_idname != "ShaderNodeTree":
        group = bpy.data.node_groups.new(name, "ShaderNodeTree")  # type: ignore[arg-type]  # the 4.2 stubs list only DUMMY
    group.nodes.clear()
    group.interface.clear()
    group.interface.new_socket(INPUT_NAME, in_out="INPUT", socket_type="NodeSocketVector")
    group.interface.new_socket(OUTPUT_NAME, in_out="OUTPUT", socket_type="NodeSocketVector")
    group.description = (
        f"Adds the view-dependent colour of SH degree {degree} (trainer/svox2 basis) to the DC colour: "
        "Σ_k Y_k(d)·sh_k, d = −Incoming (camera → scene)"
    )
    group[VERSION_KEY] = GROUP_VERSION
    nodes: Any = group.nodes
    links: Any = group.links
    k_count = (degree + 1) ** 2

    # View direction: d = −Incoming and its components and products.
    frame_dir = _frame(nodes, "View direction d = −Incoming (camera → scene), as the trainer's rays")
    geometry: Any = nodes.new("ShaderNodeNewGeometry")
    geometry.location = (-1400, 200)
    geometry.parent = frame_dir
    flip = nodes.new("ShaderNodeVectorMath")
    flip.operation = "SCALE"
    flip.inputs["Scale"].default_value = -1.0
    flip.label = "d = −Incoming"
    flip.location = (-1200, 200)
    flip.parent = frame_dir
    split = nodes.new("ShaderNodeSeparateXYZ")
    split.location = (-1000, 200)
    split.parent = frame_dir
    links.new(geometry.outputs["Incoming"], flip.inputs[0])
    links.new(flip.outputs[0], split.inputs[0])
    sockets: dict[str, Any] = {"x": split.outputs[0], "y": split.outputs[1], "z": split.outputs[2]}
    if degree >= 2:
        for i, (mono, (a, b)) in enumerate(PRODUCTS.items()):
            node = _math(nodes, "MULTIPLY", (-800, 300 - 40 * i), frame_dir)
            node.label = mono
            links.new(sockets[a], node.inputs[0])
            links.new(sockets[b], node.inputs[1])
            sockets[mono] = node.outputs[0]

    group_in = nodes.new("NodeGroupInput")
    group_in.location = (-400, 500)
    group_out = nodes.new("NodeGroupOutput")
    group_out.location = (1400, 500)
    acc = group_in.outputs[INPUT_NAME]
    frames = {band: _frame(nodes, f"Band {band}: basis values Y_k(d) and coefficient grids sh_k")
              for band in range(1, degree + 1)}
    y = 400.0
    for k in range(1, k_count):
        band = int(k**0.5)
        frame = frames[band]
        basis = _basis_value(nodes, links, sockets, BASIS[k - 1], -600, y, frame)
        coeff = nodes.new("ShaderNodeAttribute")
        coeff.attribute_name = sh_grid_name(k)
        coeff.label = f"sh{k} (R, G, B)"
        coeff.location = (200, y)
        coeff.parent = frame
        coeff.hide = True
        add = nodes.new("ShaderNodeVectorMath")
        add.operation = "MULTIPLY_ADD"  # sh_k · Y_k + running sum
        add.label = f"+ Y{k}·sh{k}"
        add.location = (1000, y)
        add.hide = True
        links.new(coeff.outputs["Vector"], add.inputs[0])
        links.new(basis, add.inputs[1])  # a float into a vector socket: the same value on x, y, z
        links.new(acc, add.inputs[2])
        acc = add.outputs[0]
        y -= 60.0
    links.new(acc, group_out.inputs[OUTPUT_NAME])
    return group
