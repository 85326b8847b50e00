"""Capture operators: render the dataset (modal in the UI: per-view progress, Esc cancels and keeps the
views written; blocking in background mode), preview the rig, and remove it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

from ..capture.session import CaptureSession, run_blocking
from ..capture.sources import build_rig, remove_rig
from ..capture.targets import CaptureError
from ..properties import PlenoxCaptureSettings, capture_settings, scene_of

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str


def _settings(context: bpy.types.Context) -> PlenoxCaptureSettings:
    return capture_settings(context)


# The capture in progress, if any. Kept here rather than in a scene property so that a file saved (or a
# Blender that crashed) mid-capture never comes back believing a capture is still running.
_active: list[CaptureSession] = []


def active_session() -> CaptureSession | None:
    return _active[0] if _active else None


class PLENOX_OT_capture(bpy.types.Operator):
    """Render the scene from every capture camera into a dataset folder (Esc cancels, keeping the views
    already written)"""

    bl_idname = "plenox.capture"
    bl_label = "Capture Dataset"
    bl_options = {"REGISTER"}  # noqa: RUF012  # Blender reads a plain set

    _timer: Any = None
    _session: CaptureSession | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and not _active

    def execute(self, context: bpy.types.Context) -> set[OperatorReturnItems]:
        settings = _settings(context)
        try:
            session = run_blocking(context, settings)
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            settings.status = str(err)
            return {"CANCELLED"}
        settings.status = session.summary()
        settings.progress = 1.0
        self.report({"INFO"}, settings.status)
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[OperatorReturnItems]:
        if bpy.app.background:  # no event loop: a modal operator would never get its timer
            return self.execute(context)
        settings = _settings(context)
        try:
            self._session = CaptureSession(context, settings)
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            settings.status = str(err)
            return {"CANCELLED"}
        _active.append(self._session)
        settings.progress = 0.0
        settings.status = f"rendering 0 / {self._session.total}"
        wm = context.window_manager
        assert wm is not None
        wm.progress_begin(0, self._session.total)
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[OperatorReturnItems]:
        session = self._session
        assert session is not None
        if event.type == "ESC" and event.value == "PRESS":
            return self._stop(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            session.render_next()
        except Exception as err:  # noqa: BLE001  # a failed render must still give the scene back
            self.report({"ERROR"}, f"capture failed at view {session.index + 1}: {err}")
            return self._stop(context, cancelled=True)
        settings = _settings(context)
        settings.progress = session.index / session.total
        settings.status = f"rendering {session.index} / {session.total}"
        if context.window_manager is not None:
            context.window_manager.progress_update(session.index)
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if session.done:
            return self._stop(context, cancelled=False)
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context, cancelled: bool) -> set[OperatorReturnItems]:
        session = self._session
        assert session is not None
        wm = context.window_manager
        assert wm is not None
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        session.finish()
        settings = _settings(context)
        _active.clear()
        settings.status = session.summary()
        self.report({"WARNING" if cancelled else "INFO"}, settings.status)
        if cancelled and session.writer.written():
            print("blender_plenox: views kept:", ", ".join(session.writer.written()))
        return {"CANCELLED" if cancelled else "FINISHED"}


class PLENOX_OT_rig_preview(bpy.types.Operator):
    """Create (or update) the generated rig's cameras in the 'Plenox Rig' collection without rendering"""

    bl_idname = "plenox.rig_preview"
    bl_label = "Preview Rig"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012  # Blender reads a plain set

    def execute(self, context: bpy.types.Context) -> set[OperatorReturnItems]:
        try:
            coll = build_rig(context, _settings(context))
        except CaptureError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"rig of {len(coll.objects)} cameras in collection {coll.name!r}")
        return {"FINISHED"}


class PLENOX_OT_rig_remove(bpy.types.Operator):
    """Delete the generated rig: its collection, cameras and camera data"""

    bl_idname = "plenox.rig_remove"
    bl_label = "Remove Rig"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012  # Blender reads a plain set

    def execute(self, context: bpy.types.Context) -> set[OperatorReturnItems]:
        count = remove_rig(scene_of(context))
        self.report({"INFO"}, f"removed {count} rig cameras")
        return {"FINISHED"}


classes = (PLENOX_OT_capture, PLENOX_OT_rig_preview, PLENOX_OT_rig_remove)
