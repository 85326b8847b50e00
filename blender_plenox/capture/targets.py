"""The objects a capture frames and bounds: the selection or every visible renderable object."""

from __future__ import annotations

import bpy
import numpy as np
import numpy.typing as npt

from ..properties import view_layer_of

# Object types with geometry that renders; cameras, lights, empties and the like only steer the render.
RENDERABLE = {"MESH", "CURVE", "SURFACE", "META", "FONT", "VOLUME", "GPENCIL", "GREASEPENCIL", "POINTCLOUD", "CURVES"}


class CaptureError(RuntimeError):
    """A capture that cannot start or go on; the message is one line for the user."""


def target_objects(context: bpy.types.Context, target: str) -> list[bpy.types.Object]:
    view_layer = view_layer_of(context)
    if target == "SELECTED":
        objects = [obj for obj in view_layer.objects if obj.select_get(view_layer=view_layer)]
        objects = [obj for obj in objects if obj.type in RENDERABLE]
        if not objects:
            raise CaptureError("no renderable object is selected: select the objects to capture")
    else:
        objects = [
            obj for obj in view_layer.objects
            if obj.type in RENDERABLE and obj.visible_get(view_layer=view_layer) and not obj.hide_render
        ]
        if not objects:
            raise CaptureError("the scene has no visible renderable object to capture")
    return objects


def world_corners(objects: list[bpy.types.Object]) -> npt.NDArray[np.float64]:
    """World-space corners (8 per object) of the objects' evaluated bounding boxes."""
    corners = []
    for obj in objects:
        local = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
        m = np.array(obj.matrix_world, dtype=np.float64)
        corners.append(local @ m[:3, :3].T + m[:3, 3])
    return np.concatenate(corners, axis=0)
