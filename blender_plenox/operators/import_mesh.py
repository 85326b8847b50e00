"""Import a trained grid (contract 4) as a coloured mesh of its surface (Import As: Mesh)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str
from bpy.props import StringProperty

from ..io.grid_reader import GridFileError
from ..volume.mesh_importer import MeshImportResult, import_grid_as_mesh
from .import_volume import grid_to_import


def import_mesh_with_settings(context: Any, grid_path: str) -> MeshImportResult:
    s: Any = context.scene.plenox.import_settings
    return import_grid_as_mesh(
        context.scene,
        grid_path,
        object_name=s.object_name or "Plenoxels",
        opacity=s.surface_opacity,
        color_space=s.color_space,
        view_dependent=not s.view_independent_only,
        remove_hidden=s.remove_hidden,
    )


def describe(result: MeshImportResult, opacity: float) -> str:
    msg = (f"Imported a surface of {result.vertices:,} vertices, {result.faces:,} faces at density "
           f"{result.level:.4g} (opacity {opacity:g} per voxel) in {result.seconds:.2f} s")
    if result.cameras:
        msg += f", hidden surfaces removed with {result.cameras} training cameras"
    if result.view_dependent:
        return msg + f"; colour seen looking at the surface (SH degree {result.sh_degree})"
    if result.sh_degree > 0:
        return msg + f"; colour: the view-independent part of SH degree {result.sh_degree}"
    return msg


class PLENOX_OT_import_mesh(bpy.types.Operator):
    """Import a trained grid (.npz) as a coloured mesh of its surface in the Reconstruction collection,
    replacing the previous one"""

    bl_idname = "plenox.import_mesh"
    bl_label = "Import Grid as Mesh"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012  # Blender reads a plain set

    filepath: StringProperty(  # type: ignore[valid-type]
        name="Grid File",
        description="Grid file to import; empty: the Import panel's file or the last trained grid",
        subtype="FILE_PATH",
        default="",
        options={"SKIP_SAVE"},
    )

    def execute(self, context: Any) -> set[OperatorReturnItems]:
        settings: Any = context.scene.plenox
        path = grid_to_import(self, context)
        if not path:
            return {"CANCELLED"}
        try:
            result = import_mesh_with_settings(context, path)
        except (GridFileError, RuntimeError, OSError, ValueError) as err:
            settings.import_settings.status = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        msg = describe(result, settings.import_settings.surface_opacity)
        settings.import_settings.status = msg
        self.report({"INFO"}, msg)
        return {"FINISHED"}


classes = (PLENOX_OT_import_mesh,)
