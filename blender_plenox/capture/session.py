"""One capture, view by view: the panel's modal operator and the headless batch drive the same session.

start() checks everything that can be checked before rendering (cameras, objects, output folder) and
only then changes the scene; finish() puts every touched setting back, whether the capture completed,
was cancelled or failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..compat import set_still_image_format
from ..io.dataset_writer import DatasetWriter, aabb_with_margin, check_directory, prepare_directory
from ..preferences import default_output_dir
from ..properties import PlenoxCaptureSettings, scene_of, view_layer_of
from ..utils.camera_math import Intrinsics, camera_to_world, intrinsics
from .scene_state import SceneState
from .sources import View, list_views
from .targets import CaptureError, target_objects, world_corners


def dataset_dir(context: bpy.types.Context, settings: PlenoxCaptureSettings) -> Path:
    if settings.output_dir:
        path = bpy.path.abspath(settings.output_dir)
        if path.startswith("//"):
            raise CaptureError("the dataset folder is relative to an unsaved blend file: save it or pick a folder")
        return Path(path)
    return Path(default_output_dir(context)) / bpy.path.clean_name(scene_of(context).name) / "dataset"


def camera_intrinsics(scene: bpy.types.Scene, camera: bpy.types.Object) -> Intrinsics:
    """Intrinsics of `camera` under the scene's current render settings."""
    data = camera.data
    if not isinstance(data, bpy.types.Camera):
        raise CaptureError(f"{camera.name}: not a camera")
    r = scene.render
    return intrinsics(
        lens_mm=data.lens,
        sensor_width_mm=data.sensor_width,
        sensor_height_mm=data.sensor_height,
        sensor_fit=data.sensor_fit,
        resolution_x=r.resolution_x,
        resolution_y=r.resolution_y,
        resolution_percentage=r.resolution_percentage,
        pixel_aspect_x=r.pixel_aspect_x,
        pixel_aspect_y=r.pixel_aspect_y,
        shift_x=data.shift_x,
        shift_y=data.shift_y,
    )


def _apply_render_settings(scene: bpy.types.Scene, settings: PlenoxCaptureSettings) -> None:
    r = scene.render
    r.resolution_x = settings.resolution_x
    r.resolution_y = settings.resolution_y
    r.resolution_percentage = settings.resolution_percentage
    r.film_transparent = True
    r.use_file_extension = True
    image = r.image_settings
    set_still_image_format(image, "PNG")
    image.color_mode = "RGBA"
    image.color_depth = "8"
    if settings.engine == "CYCLES":
        r.engine = "CYCLES"  # type: ignore[assignment]  # the 4.2 stubs list only built-in engines
        cycles: Any = scene.cycles  # registered by the Cycles add-on, untyped in the stubs
        cycles.device = "CPU"
        cycles.samples = settings.samples
        cycles.use_denoising = settings.use_denoising
    if settings.standard_view:
        # A tone-mapping view transform (AgX, Filmic) bakes a curve into the images that an
        # emission-absorption volume cannot reproduce; Standard is a plain sRGB encoding.
        view: Any = scene.view_settings
        view.view_transform = "Standard"
        view.look = "None"
        view.exposure = 0.0
        view.gamma = 1.0


class CaptureSession:
    def __init__(self, context: bpy.types.Context, settings: PlenoxCaptureSettings) -> None:
        self.scene = scene_of(context)
        self.view_layer = view_layer_of(context)
        self.settings = settings
        self.root = dataset_dir(context, settings)
        try:  # before anything else changes (the rig is rebuilt below)
            check_directory(self.root, overwrite=settings.overwrite)
        except OSError as err:
            raise CaptureError(str(err)) from None
        objects = target_objects(context, settings.target)
        aabb = aabb_with_margin(world_corners(objects), settings.aabb_margin)
        self.views: list[View] = list_views(context, settings)
        try:
            prepare_directory(self.root, overwrite=settings.overwrite)
        except (OSError, ValueError) as err:
            raise CaptureError(str(err)) from None
        self.state = SceneState.capture(self.scene, self.view_layer)
        _apply_render_settings(self.scene, settings)
        view: Any = self.scene.view_settings
        self.writer = DatasetWriter(
            self.root, aabb, test_every=settings.test_every,
            metadata={"scene": self.scene.name, "source": settings.source,
                      "blend": bpy.data.filepath, "blender": bpy.app.version_string,
                      # the PNGs hold display-referred colours under this view transform
                      "view_transform": view.view_transform, "look": view.look},
        )
        self.index = 0
        self.started = time.monotonic()
        self.finished = False

    @property
    def total(self) -> int:
        return len(self.views)

    @property
    def done(self) -> bool:
        return self.index >= self.total

    def render_next(self) -> str:
        """Render the next view to its file and record it; returns the image path written."""
        view = self.views[self.index]
        scene = self.scene
        camera = bpy.data.objects[view.camera]
        if scene.frame_current != view.frame:
            scene.frame_set(view.frame)
        scene.camera = camera
        _split, image = self.writer.next_view()
        scene.render.filepath = os.fspath(image)
        bpy.ops.render.render(write_still=True, scene=scene.name)
        # read the pose after frame_set: animated cameras move with the frame
        self.writer.add_view(
            camera_to_world(np.array(camera.matrix_world)),
            camera_intrinsics(scene, camera),
            extra={"camera": camera.name, "frame": view.frame},
        )
        self.index += 1
        return os.fspath(image)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.state.restore(self.scene, self.view_layer)

    def summary(self) -> str:
        train = len(self.writer.frames["train"])
        test = len(self.writer.frames["test"])
        what = "captured" if self.done else f"stopped after {self.index} of {self.total} views, kept"
        return f"{what} {train} train + {test} test views in {self.root} ({self.elapsed():.1f} s)"


def run_blocking(
    context: bpy.types.Context,
    settings: PlenoxCaptureSettings,
    report: Callable[[CaptureSession, str], None] | None = None,
) -> CaptureSession:
    """Capture every view without returning to the event loop (background mode, scripts, batch)."""
    session = CaptureSession(context, settings)
    try:
        while not session.done:
            path = session.render_next()
            if report is not None:
                report(session, path)
    finally:
        session.finish()
    return session
