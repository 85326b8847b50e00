"""benchmarks/make_real_capture.py end to end in Blender: small emissive markers at known 3D points,
rendered by the script's own camera set-up and resampled through its lens, appear in the distorted image
where the transforms file's camera (pose, fl, c, then OpenCV's forward model) projects them.

This checks what the numpy test (tests/trainer/test_real_capture_lens.py) cannot: that the Blender render
camera is the centred pinhole the resampling assumes (sensor fit, lens, pixel centres, row order).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest
from benchmark_scripts import load_benchmark

from blender_plenox.compat import node_tree_of

DEPTH = 3.0
RADIUS = 0.06     # world units: 3 px in radius at 120x200 and DEPTH, so that pixel sampling biases the centroid little


@pytest.fixture(scope="module")
def capture() -> ModuleType:
    return load_benchmark("make_real_capture")


def marker_scene(points: np.ndarray) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mat = bpy.data.materials.new("marker")
    nodes = node_tree_of(mat).nodes  # (5.0 deprecates use_nodes)
    glow = nodes.new("ShaderNodeEmission")
    glow.inputs["Strength"].default_value = 0.8     # below 1: no clipping in the PNG
    mat.node_tree.links.new(glow.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    for p in points:
        bpy.ops.mesh.primitive_uv_sphere_add(radius=RADIUS, location=tuple(p), segments=24, ring_count=12)
        bpy.context.active_object.data.materials.append(mat)
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    if world.node_tree is not None:   # Blender 5 gives a new world a grey Background node
        world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    bpy.context.scene.world = world


def test_markers_land_where_the_distorted_camera_projects_them(capture: ModuleType, tmp_path: Path) -> None:
    k = capture.intrinsics_for(120, 200)
    lens = capture.PHONE_LENS
    rc = capture.render_camera_for(k, lens, oversample=1.25)
    c2w = capture.look_at(np.array([0.3, -3.5, 0.6]), np.array([0.1, 0.2, -0.1]), math.radians(4.0))
    # distorted pixels from the centre to near the corners, where the lens moves points most
    pixels = np.array([[k.cx, k.cy], [12, 14], [k.w - 12, 14], [12, k.h - 14], [k.w - 12, k.h - 14],
                       [k.w / 2, 20], [k.w - 15, k.h / 2]], dtype=np.float64)
    x, y = capture.undistort((pixels[:, 0] - k.cx) / k.fl_x, (pixels[:, 1] - k.cy) / k.fl_y, lens)
    camera_points = np.stack([x * DEPTH, -y * DEPTH, np.full_like(x, -DEPTH), np.ones_like(x)], axis=1)  # OpenGL
    world_points = (camera_points @ c2w.T)[:, :3]
    marker_scene(world_points)
    cam = capture.setup_render(rc, samples=16)
    src = capture.render_view(cam, c2w, tmp_path / "render.png")
    img = capture.distort_image(src, capture.sample_map(rc, k, lens)).mean(axis=2)
    assert img.shape == (k.h, k.w)
    v, u = np.mgrid[0:k.h, 0:k.w] + 0.5
    errors = []
    for pu, pv in pixels:
        near = (np.abs(u - pu) < 7) & (np.abs(v - pv) < 7)
        weight = img * near
        assert weight.sum() > 0.5, f"no marker near ({pu}, {pv})"
        errors.append(math.hypot((weight * u).sum() / weight.sum() - pu, (weight * v).sum() / weight.sum() - pv))
    assert max(errors) < 0.15, errors
    # and nothing else lit: the markers (3 px in radius, ~30 px each) are the whole picture
    assert 7 * 20 < np.count_nonzero(img > 0.02) < 7 * 60
