"""A grid's learnt background becomes the World: Cycles looking along a direction sees what the map
holds there, by contract 4's equirectangular mapping (written out here, not taken from the trainer)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from volume_render_helpers import render_linear, setup_cycles  # isort: skip

import bpy
import mathutils

from blender_plenox.io.grid_reader import PlenoxGrid, write_grid
from blender_plenox.io.vdb_arrays import srgb_to_linear
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.world_background import WORLD_NAME

H, W = 8, 16


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def grid_with_background(path: str, color_space: str = "linear") -> np.ndarray:
    """One faint voxel far below, and a map of red = row / H (top row first), green = column / W."""
    rows, cols = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
    texels = np.stack((rows / H, cols / W, np.full_like(rows, 0.25)), -1)
    grid = PlenoxGrid(np.array([2, 2, 2]), np.array([[-1.0, -1.0, -9.0], [1.0, 1.0, -8.0]]),
                      np.array([[0, 0, 0]], np.int32), np.array([1e-3], np.float32),
                      np.zeros((1, 3, 1), np.float32), 0, {}, texels, color_space)
    write_grid(path, grid)
    return texels


def expected(direction: np.ndarray, texels: np.ndarray) -> np.ndarray:
    """Bilinear between texel centres at the direction's (u, v); interior directions only."""
    x, y, z = direction / np.linalg.norm(direction)
    u = 0.5 - math.atan2(y, x) / (2 * math.pi)
    v = 0.5 + math.asin(z) / math.pi
    col, row = u * W - 0.5, (1 - v) * H - 0.5  # rows from the top
    c0, r0 = math.floor(col), math.floor(row)
    fc, fr = col - c0, row - r0
    top = (1 - fc) * texels[r0, c0] + fc * texels[r0, c0 + 1]
    bottom = (1 - fc) * texels[r0 + 1, c0] + fc * texels[r0 + 1, c0 + 1]
    return (1 - fr) * top + fr * bottom


def look_along(scene, direction: np.ndarray) -> None:
    cam = bpy.data.objects.new("Probe", bpy.data.cameras.new("Probe"))
    cam.data.angle = 1e-3  # every pixel sees the same direction
    cam.rotation_euler = mathutils.Vector(direction.tolist()).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(cam)
    scene.camera = cam


@pytest.mark.parametrize("grid_space, color_space", [("srgb", "TRAINER"), ("srgb", "LINEAR"), ("linear", "LINEAR")])
def test_cycles_sees_the_map_in_every_direction(tmp_path, empty_scene, grid_space, color_space):
    scene = empty_scene
    setup_cycles(scene, 4, 4, samples=1)
    path = str(tmp_path / "grid.npz")
    texels = grid_with_background(path, grid_space)
    # An sRGB grid's texels are converted to linear for "LINEAR" as they go into the image, so Cycles
    # interpolates converted values (the volume's material converts after interpolating: the two
    # differ only where the map changes within a texel, to second order). A linear grid's are shown as
    # they are.
    shown = srgb_to_linear(texels) if (grid_space, color_space) == ("srgb", "LINEAR") else texels
    result = import_grid(scene, path, color_space=color_space)
    assert scene.world.name == WORLD_NAME
    assert result.background == f"world '{WORLD_NAME}': the learnt background ({W}x{H})"
    # directions whose (u, v) lie between interior texel centres
    for direction in ([1.0, 0.3, 0.2], [-0.4, 1.0, -0.3], [0.2, -1.0, 0.5], [-1.0, -0.6, 0.1]):
        d = np.array(direction)
        look_along(scene, d)
        seen = render_linear(scene, str(tmp_path / "probe.exr")).reshape(-1, 3).mean(0)
        want = expected(d, shown)
        assert np.abs(seen - want).max() < 2e-3, (direction, seen, want)


def test_the_option_off_leaves_the_world_alone(tmp_path, empty_scene):
    scene = empty_scene
    before = bpy.data.worlds.new("Mine")
    scene.world = before
    path = str(tmp_path / "grid.npz")
    grid_with_background(path)
    result = import_grid(scene, path, background_world=False)
    assert scene.world == before
    assert result.background == "learnt background not shown (Learnt Background as World is off)"
