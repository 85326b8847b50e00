"""Camera sources: the generated rig (kept in its own collection), a collection of cameras, or the active
camera over a frame range. Each gives an ordered list of views (camera object, frame)."""

from __future__ import annotations

from dataclasses import dataclass

import bpy
from mathutils import Matrix

from ..properties import PlenoxCaptureSettings, scene_of
from ..utils import rig
from ..utils.camera_math import check_camera_type
from .targets import CaptureError, target_objects, world_corners

RIG_COLLECTION = "Plenox Rig"
RIG_SENSOR_MM = 36.0


@dataclass(frozen=True)
class View:
    camera: str  # object name
    frame: int


def rig_collection(scene: bpy.types.Scene) -> bpy.types.Collection | None:
    coll = bpy.data.collections.get(RIG_COLLECTION)
    return coll if coll is not None and coll.name in scene.collection.children else None


def remove_rig(scene: bpy.types.Scene) -> int:
    """Delete the rig collection with its cameras and their camera data; returns how many cameras."""
    coll = bpy.data.collections.get(RIG_COLLECTION)
    if coll is None:
        return 0
    count = 0
    for obj in list(coll.objects):
        data = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        if isinstance(data, bpy.types.Camera) and data.users == 0:
            bpy.data.cameras.remove(data)
        count += 1
    bpy.data.collections.remove(coll)
    return count


def build_rig(context: bpy.types.Context, settings: PlenoxCaptureSettings) -> bpy.types.Collection:
    """(Re)create the rig cameras around the target objects, framed to fit; the same settings and
    seed give the same rig."""
    scene = scene_of(context)
    center, radius = rig.bounding_sphere(world_corners(target_objects(context, settings.target)))
    w, h = settings.resolution_x, settings.resolution_y
    # AUTO sensor fit puts the 36 mm across the longer side; the shorter side limits the framing.
    short_sensor = RIG_SENSOR_MM * min(w, h) / max(w, h)
    if settings.rig_fit == "DISTANCE":
        lens = settings.rig_lens
        distance = rig.fit_distance(radius, lens, short_sensor, settings.rig_fill)
    else:
        distance = settings.rig_radius
        try:
            lens = rig.fit_lens(radius, distance, short_sensor, settings.rig_fill)
        except ValueError as err:
            raise CaptureError(str(err)) from None
    poses = rig.rig_poses(settings.rig_views, center, distance, settings.rig_layout, settings.rig_seed)

    remove_rig(scene)
    coll = bpy.data.collections.new(RIG_COLLECTION)
    scene.collection.children.link(coll)
    digits = len(str(len(poses) - 1))
    for i, pose in enumerate(poses):
        data = bpy.data.cameras.new(f"PlenoxCam.{i:0{digits}d}")
        data.lens = lens
        data.sensor_fit = "AUTO"
        data.sensor_width = RIG_SENSOR_MM
        data.clip_start = max(1e-3, 0.01 * (distance - radius))
        data.clip_end = 2.0 * (distance + radius)
        data.display_size = 0.1 * radius
        obj = bpy.data.objects.new(data.name, data)
        obj.matrix_world = Matrix(pose.tolist())
        coll.objects.link(obj)
    return coll


def _cameras_sorted(objects: list[bpy.types.Object]) -> list[bpy.types.Object]:
    return sorted((obj for obj in objects if obj.type == "CAMERA"), key=lambda obj: obj.name)


def list_views(context: bpy.types.Context, settings: PlenoxCaptureSettings) -> list[View]:
    """The views to render, in order; refuses cameras that are not perspective."""
    scene = scene_of(context)
    if settings.source == "RIG":
        # Rebuilt every time (it is deterministic), so settings changed after a preview still count.
        coll = build_rig(context, settings)
        views = [View(obj.name, scene.frame_current) for obj in _cameras_sorted(list(coll.objects))]
    elif settings.source == "COLLECTION":
        coll = settings.camera_collection
        if coll is None:
            raise CaptureError("choose the collection whose cameras to render")
        views = [View(obj.name, scene.frame_current) for obj in _cameras_sorted(list(coll.all_objects))]
        if not views:
            raise CaptureError(f"collection {coll.name!r} holds no camera")
    else:
        if scene.camera is None:
            raise CaptureError("the scene has no active camera to animate")
        start, end = (scene.frame_start, scene.frame_end) if settings.use_scene_frames else (
            settings.frame_start, settings.frame_end)
        if end < start:
            raise CaptureError(f"frame range {start}–{end} is empty")
        views = [View(scene.camera.name, f) for f in range(start, end + 1, settings.frame_step)]
    for name in sorted({v.camera for v in views}):
        data = bpy.data.objects[name].data
        assert isinstance(data, bpy.types.Camera)
        try:
            check_camera_type(data.type, name)
        except ValueError as err:
            raise CaptureError(str(err)) from None
    return views

