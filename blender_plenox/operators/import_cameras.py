"""Import a dataset's cameras (ours or another tool's transforms files) as Blender cameras."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str
from bpy.props import StringProperty

from ..camera_import import import_dataset_cameras
from ..io.dataset_cameras import DatasetCameraError


def default_dataset(settings: Any) -> str:
    """The Import panel's dataset folder, else the Train panel's, else the last capture's."""
    return str(settings.import_settings.dataset_dir or settings.train.data_dir or settings.capture.output_dir)


class PLENOX_OT_import_cameras(bpy.types.Operator):
    """Import the cameras of a dataset folder (transforms files) as Blender cameras with the same
    projection, in a collection named after the dataset, replacing an earlier import of that folder;
    sets the scene's render size to theirs"""

    bl_idname = "plenox.import_cameras"
    bl_label = "Import Dataset Cameras"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012  # Blender reads a plain set

    directory: StringProperty(  # type: ignore[valid-type]
        name="Dataset Folder",
        description="Dataset folder to import the cameras of; empty: the Import panel's folder",
        subtype="DIR_PATH",
        default="",
        options={"SKIP_SAVE"},
    )

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        settings: Any = context.scene.plenox
        path = self.directory or default_dataset(settings)
        if not path:
            self.report({"ERROR"}, "No dataset folder: choose one in the Import panel")
            return {"CANCELLED"}
        try:
            result = import_dataset_cameras(context.scene, path)
        except (DatasetCameraError, OSError) as err:
            settings.import_settings.status = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        msg = result.summary()
        for note in result.notes:
            self.report({"WARNING"}, note.removeprefix("warning: "))
        settings.import_settings.status = msg + (f" ({len(result.notes)} warning(s): see the Info editor)"
                                                 if result.notes else "")
        self.report({"INFO"}, msg)
        return {"FINISHED"}


classes = (PLENOX_OT_import_cameras,)
