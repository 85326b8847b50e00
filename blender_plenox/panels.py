"""The 3D viewport sidebar tab "Reconstruct": Capture, Train and Import panels."""

from __future__ import annotations

from typing import Any

import bpy

from .capture.sources import rig_collection
from .operators.capture import active_session
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
        layout.prop(s, "standard_view")
        layout.prop(s, "aabb_margin")
        layout.prop(s, "output_dir")
        layout.prop(s, "overwrite")

        layout.use_property_split = False
        layout.operator("plenox.capture", icon="RENDER_STILL")
        if active_session() is not None:
            layout.progress(factor=s.progress, text=s.status)
            layout.label(text="Esc cancels (views written are kept)", icon="INFO")
        elif s.status:
            layout.label(text=s.status)


class VIEW3D_PT_plenox_train(PlenoxPanel):
    bl_idname = "VIEW3D_PT_plenox_train"
    bl_label = "Train"

    def draw(self, context: bpy.types.Context) -> None:
        from .operators.train import active_process

        layout = self.layout
        assert layout is not None
        layout.use_property_split = True
        layout.use_property_decorate = False
        s: Any = scene_of(context).plenox.train  # type: ignore[attr-defined]
        running = active_process() is not None
        col = layout.column()
        col.enabled = not running
        col.prop(s, "data_dir")
        col.prop(s, "output_dir")
        col.prop(s, "preset")
        col.prop(s, "device")
        col.prop(s, "time_limit")
        col.prop(s, "threads")
        col.prop(s, "view_dependent")
        col.prop(s, "use_overrides")
        if s.use_overrides:
            sub = col.column(align=True)
            sub.prop(s, "final_resolution")
            sub.prop(s, "steps")
            sub.prop(s, "prune_weight")
            sub.prop(s, "tv_sigma")
            sub.prop(s, "tv_sh")
            sub.prop(s, "sparsity")
            col.prop(s, "extra_overrides")
        col.prop(s, "live_preview")
        if s.live_preview:
            col.prop(s, "snapshot_every")
        col.prop(s, "import_when_done")
        row = col.row()
        row.prop(s, "resume")
        row.prop(s, "overwrite")

        layout.use_property_split = False
        if running:
            layout.progress(factor=s.progress, text=s.status)
            layout.operator("plenox.train_cancel", icon="CANCEL")
        else:
            row = layout.row(align=True)
            row.operator("plenox.train", icon="PLAY")
            row.operator("plenox.check_python", icon="CONSOLE", text="")
            if s.status:
                layout.label(text=s.status)
            if s.can_resume and not s.resume:
                layout.label(text="Tick Resume to continue from the checkpoint", icon="INFO")
        if s.error:
            box = layout.box()
            for i, line in enumerate(_wrap(s.error, 60)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        if s.log_path:
            layout.label(text=f"Log: {s.log_path}", icon="TEXT")


def _wrap(text: str, width: int) -> list[str]:
    """Panel labels do not wrap: split a long message into lines at spaces."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + len(word) < width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


class VIEW3D_PT_plenox_import(PlenoxPanel):
    bl_idname = "VIEW3D_PT_plenox_import"
    bl_label = "Import"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        assert layout is not None
        layout.use_property_split = True
        layout.use_property_decorate = False
        s: Any = scene_of(context).plenox.import_settings  # type: ignore[attr-defined]
        layout.prop(s, "grid_path")
        layout.prop(s, "import_as", expand=True)
        layout.prop(s, "object_name")
        layout.prop(s, "color_space")
        layout.prop(s, "view_independent_only")
        mesh = s.import_as == "MESH"
        if mesh:
            layout.prop(s, "surface_opacity")
            layout.prop(s, "remove_hidden")
        else:
            layout.prop(s, "sharp_eevee")
            layout.prop(s, "background_world")
            layout.prop(s, "min_density")
            col = layout.column(align=True)
            col.prop(s, "density_multiplier")
            col.prop(s, "threshold")
        layout.use_property_split = False
        layout.operator("plenox.import_mesh" if mesh else "plenox.import_volume", icon="IMPORT")
        layout.use_property_split = True
        layout.prop(s, "dataset_dir")
        layout.use_property_split = False
        layout.operator("plenox.import_cameras", icon="OUTLINER_OB_CAMERA")
        if s.status:
            layout.label(text=s.status)


classes = (VIEW3D_PT_plenox_capture, VIEW3D_PT_plenox_train, VIEW3D_PT_plenox_import)
register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None
