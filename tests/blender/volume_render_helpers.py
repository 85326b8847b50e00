"""Cycles set-up and reference renders for the volume import tests (real Blender)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO, REPO / "tests" / "addon"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import bpy

from blender_plenox.compat import node_tree_of, set_still_image_format, use_ray_marched_volumes


def setup_cycles(scene, width: int, height: int, samples: int = 16, background=(0.0, 0.0, 0.0)) -> None:
    """Cycles on the CPU, fine ray marching, linear output (Raw view) and a flat world colour."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    use_ray_marched_volumes(scene.cycles)
    scene.cycles.volume_step_rate = 0.1
    scene.cycles.volume_max_steps = 4096
    scene.cycles.max_bounces = 0
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # sample pixel centres, as the references do
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Raw"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    tree = node_tree_of(world)
    bg = tree.nodes.get("Background") or tree.nodes.new("ShaderNodeBackground")
    bg.inputs["Color"].default_value = (*background, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    out = tree.nodes.get("World Output") or tree.nodes.new("ShaderNodeOutputWorld")
    tree.links.new(bg.outputs[0], out.inputs["Surface"])


def render_linear(scene, path: str) -> np.ndarray:
    """Renders to a float EXR and returns RGB (H, W, 3), row 0 at the top."""
    set_still_image_format(scene.render.image_settings, "OPEN_EXR")
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(path, check_existing=False)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    os.remove(path)
    return px.reshape(h, w, 4)[::-1, :, :3].copy()


def ortho_camera(scene, location, scale: float) -> bpy.types.Object:
    """An orthographic camera at `location` looking down −z."""
    cam = bpy.data.cameras.new("TestCam")
    cam.type = "ORTHO"
    cam.ortho_scale = scale
    obj = bpy.data.objects.new("TestCam", cam)
    obj.location = location
    scene.collection.objects.link(obj)
    scene.camera = obj
    return obj


def hat_profile(x: np.ndarray, lo_centre: float, hi_centre: float, voxel: float) -> np.ndarray:
    """Trilinear weight along one axis of a run of active voxels: 1 between the outer cell centres,
    falling linearly to 0 one voxel beyond them."""
    below = np.clip(1 - (lo_centre - x) / voxel, 0, 1)
    above = np.clip(1 - (x - hi_centre) / voxel, 0, 1)
    return np.where(x < lo_centre, below, np.where(x > hi_centre, above, 1.0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)
