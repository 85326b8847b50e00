"""A dataset's cameras as Blender cameras in a collection named after the dataset (the Blender side of
io/dataset_cameras), so a reconstruction sits among the cameras that took its photos and renders from
any of them.

Re-importing a dataset folder replaces the cameras an earlier import of the same folder made, in the same
collection (found by the folder's absolute path, kept on the collection); objects the user put there are
left alone. Everything is read and checked before the scene is touched, so an error creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from mathutils import Matrix

from .io.dataset_cameras import DatasetCamera, DatasetCameras, read_dataset_cameras

DATASET_PROP = "plenox_dataset"   # on the collection and on each camera object: the dataset folder


@dataclass
class CameraImportResult:
    dataset: str
    collection: str
    cameras: list[str]
    replaced: int
    resolution: tuple[int, int]
    pixel_aspect: tuple[float, float]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        count = len(self.cameras)
        msg = f"Imported {count} camera{'s' if count != 1 else ''} from {self.dataset} into '{self.collection}'"
        if self.replaced:
            msg += f" (replacing {self.replaced})"
        w, h = self.resolution
        msg += f"; scene resolution {w}x{h}"
        if self.pixel_aspect != (1.0, 1.0):
            msg += f", pixel aspect {self.pixel_aspect[0]:.4g}:{self.pixel_aspect[1]:.4g}"
        return msg


def dataset_key(root: Path | str) -> str:
    return str(Path(bpy.path.abspath(str(root))).resolve())


def _find_collection(key: str) -> Any:
    collections: Any = bpy.data.collections   # ID custom properties: the stubs type get() as returning None
    return next((c for c in collections if c.get(DATASET_PROP) == key), None)


def _remove_cameras(collection: Any, key: str) -> list[str]:
    """Delete the camera objects (and their then unused camera data) an earlier import made."""
    removed = []
    for obj in list(collection.objects):
        if obj.type == "CAMERA" and obj.get(DATASET_PROP) == key:
            data = obj.data
            removed.append(obj.name)
            bpy.data.objects.remove(obj, do_unlink=True)
            if data.users == 0:
                bpy.data.cameras.remove(data)
    return removed


def _create_camera(cam: DatasetCamera, dataset: DatasetCameras, key: str) -> Any:
    data = bpy.data.cameras.new(cam.name)
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    lens = cam.lens
    data.sensor_fit = lens.sensor_fit
    data.sensor_width, data.sensor_height = lens.sensor_width, lens.sensor_height
    data.lens = lens.lens
    data.shift_x, data.shift_y = lens.shift_x, lens.shift_y
    data.clip_start, data.clip_end = cam.clip_start, cam.clip_end
    data.display_size = dataset.display_size
    # What the camera settings alone cannot hold: the render size and pixel aspect they are exact for
    # (one per scene in Blender), the dataset's pinhole, and any lens distortion left out.
    data["plenox_resolution"] = list(lens.resolution)
    data["plenox_pixel_aspect"] = list(lens.pixel_aspect)
    data["plenox_intrinsics"] = {"fl_x": cam.fl_x, "fl_y": cam.fl_y, "cx": cam.cx, "cy": cam.cy}
    if cam.distortion:
        data["plenox_distortion"] = {k: (int(v) if isinstance(v, bool) else v) for k, v in cam.distortion.items()}
    obj = bpy.data.objects.new(cam.name, data)
    obj.matrix_world = Matrix([list(row) for row in cam.matrix_world])
    obj[DATASET_PROP] = key
    obj["plenox_frame"] = cam.file_path
    return obj


def import_dataset_cameras(scene: Any, root: Path | str) -> CameraImportResult:
    """Create (or replace) the dataset's cameras and set the scene's render size to theirs; raises
    DatasetCameraError before changing anything when the dataset cannot be read."""
    key = dataset_key(root)
    dataset = read_dataset_cameras(key)
    collection = _find_collection(key)
    active = scene.camera.name if scene.camera is not None else None
    removed: list[str] = []
    if collection is None:
        collection = bpy.data.collections.new(f"{dataset.name} Cameras")
        collection[DATASET_PROP] = key
    else:
        removed = _remove_cameras(collection, key)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    created = []
    for cam in dataset.cameras:
        obj = _create_camera(cam, dataset, key)
        collection.objects.link(obj)
        created.append(obj)
    render = scene.render
    render.resolution_x, render.resolution_y = dataset.resolution
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = dataset.pixel_aspect
    if scene.camera is None:
        # the replaced active camera's successor (same frame, same name), else the first camera
        scene.camera = next((o for o in created if o.name == active), created[0])
    return CameraImportResult(dataset=str(dataset.root), collection=collection.name,
                              cameras=[o.name for o in created], replaced=len(removed),
                              resolution=dataset.resolution, pixel_aspect=dataset.pixel_aspect,
                              notes=dataset.notes)
