"""Snapshot and restore of every scene setting a capture touches, so the user's scene comes back as
it was (active camera, resolution, film, frame, engine, output, selection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

from ..compat import image_format_attributes

# (owner path from the scene, attribute): what a capture may change, in the order to restore it
# (the image format's attributes in the order that compat says they must be set).
_SETTINGS = (
    ("render", "engine"),
    ("render", "resolution_x"),
    ("render", "resolution_y"),
    ("render", "resolution_percentage"),
    ("render", "film_transparent"),
    ("render", "filepath"),
    ("render", "use_file_extension"),
    *(("render.image_settings", attr) for attr in image_format_attributes()),
    ("render.image_settings", "color_mode"),
    ("render.image_settings", "color_depth"),
    ("cycles", "samples"),
    ("cycles", "use_denoising"),
    ("cycles", "device"),
    ("view_settings", "view_transform"),
    ("view_settings", "look"),
    ("view_settings", "exposure"),
    ("view_settings", "gamma"),
)


def _owner(scene: bpy.types.Scene, path: str) -> Any:
    obj: Any = scene
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@dataclass
class SceneState:
    scene_name: str
    camera_name: str | None
    frame: int
    subframe: float
    settings: list[tuple[str, str, Any]] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    active: str | None = None

    @classmethod
    def capture(cls, scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> SceneState:
        state = cls(
            scene_name=scene.name,
            camera_name=scene.camera.name if scene.camera else None,
            frame=scene.frame_current,
            subframe=scene.frame_subframe,
        )
        for path, attr in _SETTINGS:
            owner = _owner(scene, path)
            if owner is not None:  # None: Cycles' settings where the Cycles add-on is off
                state.settings.append((path, attr, getattr(owner, attr)))
        state.selected = [obj.name for obj in view_layer.objects if obj.select_get(view_layer=view_layer)]
        active = view_layer.objects.active
        state.active = active.name if active else None
        return state

    def restore(self, scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> None:
        for path, attr, value in self.settings:
            owner = _owner(scene, path)
            if owner is not None and getattr(owner, attr) != value:
                setattr(owner, attr, value)
        scene.camera = bpy.data.objects.get(self.camera_name) if self.camera_name else None
        if scene.frame_current != self.frame or scene.frame_subframe != self.subframe:
            scene.frame_set(self.frame, subframe=self.subframe)
        selected = set(self.selected)
        for obj in view_layer.objects:
            want = obj.name in selected
            if obj.select_get(view_layer=view_layer) != want:
                obj.select_set(want, view_layer=view_layer)
        view_layer.objects.active = bpy.data.objects.get(self.active) if self.active else None
