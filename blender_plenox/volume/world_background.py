"""A grid's learnt background (contract 4's optional background_map) as the scene's World.

A reconstruction from photos learns what lies beyond its box as an environment map; in Blender that is
a World with an Environment Texture, so renders from any camera show the volume in front of the
surroundings the photos saw, as the trainer's own renders do. The trainer's map uses the Environment
Texture's own equirectangular mapping, so the texels go in as they are (rows flipped: Blender's images
start at the bottom).
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from ..compat import node_tree_of
from ..io.vdb_arrays import ColorSpace, srgb_to_linear

WORLD_NAME = "Plenoxels Background"


def show_background_map(scene: Any, texels: np.ndarray, color_space: ColorSpace, name: str = WORLD_NAME) -> str:
    """Makes (or updates) the World `name` showing texels (H, W, 3), top row first, and makes it the
    scene's world; the previous world stays in the file. Returns a one-line description."""
    height, width = int(texels.shape[0]), int(texels.shape[1])
    colours = np.clip(texels, 0.0, None).astype(np.float32)
    if color_space == "LINEAR":  # as the volume's material does with the voxels' colours
        colours = srgb_to_linear(colours)
    image: Any = bpy.data.images.get(name)
    if image is not None and tuple(image.size) != (width, height):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, width, height, alpha=False, float_buffer=True)
    # Non-Color before the pixels: changing a generated image's colour space regenerates its buffer.
    # The values are already the scene-linear ones to show, so no conversion must happen on read.
    image.colorspace_settings.name = "Non-Color"
    rgba = np.ones((height, width, 4), np.float32)
    rgba[:, :, :3] = colours[::-1]
    image.pixels.foreach_set(rgba.ravel())
    image.pack()  # a generated image is lost on save unless packed

    world = bpy.data.worlds.get(name) or bpy.data.worlds.new(name)
    tree = node_tree_of(world)
    tree.nodes.clear()
    texture = tree.nodes.new("ShaderNodeTexEnvironment")
    texture.image = image
    texture.interpolation = "Linear"  # the trainer's bilinear lookup
    texture.location = (-300, 0)
    background = tree.nodes.new("ShaderNodeBackground")
    output = tree.nodes.new("ShaderNodeOutputWorld")
    output.location = (200, 0)
    tree.links.new(texture.outputs["Color"], background.inputs["Color"])
    tree.links.new(background.outputs["Background"], output.inputs["Surface"])
    scene.world = world
    return f"world '{name}': the learnt background ({width}x{height})"
