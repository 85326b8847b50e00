"""The 3D viewport sidebar tab "Reconstruct": Capture, Train and Import panels."""

from __future__ import annotations

import bpy

from .capture.sources import rig_collection
from .properties import capture_settings, scene_of


class PlenoxPanel(bpy.types.Panel):
    """Base of the tab's panels (never registered itself)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Reconstruct"


class VIEW3D_PT_plenox_capture(PlenoxPanel):
    bl_idname = "VIEW3D_PT_plenox_capture"
    bl_label = "Capture"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        assert layout is not None
        layout.use_property_split = True
        layout.use_property_decorate = False
        s = capture_settings(context)

        layout.prop(s, "source")
        layout.prop(s, "target")
        if s.source == "RIG":
            col = layout.column(align=True)
            col.prop(s, "rig_views")
            col.prop(s, "rig_layout")
            col.prop(s, "rig_seed")
            col = layout.column(align=True)
            col.prop(s, "rig_fit")
            col.prop(s, "rig_lens" if s.rig_fit == "DISTANCE" else "rig_radius")
            col.prop(s, "rig_fill")
            row = layout.row(align=True)
            row.operator("plenox.rig_preview", icon="CAMERA_DATA")
            sub = row.row(align=True)
            sub.enabled = rig_collection(scene_of(context)) is not None
            sub.operator("plenox.rig_remove", icon="TRASH", text="")
        elif s.source == "COLLECTION":
            layout.prop(s, "camera_collection")
        else:
            layout.prop(s, "use_scene_frames")
            col = layout.column(align=True)
            col.enabled = not s.use_scene_frames
            col.prop(s, "frame_start")
            col.prop(s, "frame_end")
            layout.prop(s, "frame_step")
        layout.prop(s, "test_every")

        col = layout.column(align=True)
        col.prop(s, "resolution_x")
        col.prop(s, "resolution_y")
        col.prop(s, "resolution_percentage")
        layout.prop(s, "engine")
        if s.engine == "CYCLES":
            layout.prop(s, "samples")
            layout.prop(s, "use_denoising")
        layout.prop(s, "aabb_margin")
        layout.prop(s, "output_dir")
        layout.prop(s, "overwrite")

        layout.use_property_split = False
        layout.operator("plenox.capture", icon="RENDER_STILL")
        if s.running:
            layout.progress(factor=s.progress, text=s.status)
            layout.label(text="Esc cancels (views written are kept)", icon="INFO")
        elif s.status:
            layout.label(text=s.status)


class VIEW3D_PT_plenox_train(PlenoxPanel):
    bl_idname = "VIEW3D_PT_plenox_train"
    bl_label = "Train"

    def draw(self, context: bpy.types.Context) -> None:
        assert self.layout is not None
        self.layout.label(text="Train a Plenoxel grid on the captured dataset")


class VIEW3D_PT_plenox_import(PlenoxPanel):
    bl_idname = "VIEW3D_PT_plenox_import"
    bl_label = "Import"

    def draw(self, context: bpy.types.Context) -> None:
        assert self.layout is not None
        self.layout.label(text="Import a trained grid as a Volume object")


classes = (VIEW3D_PT_plenox_capture, VIEW3D_PT_plenox_train, VIEW3D_PT_plenox_import)
register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None
