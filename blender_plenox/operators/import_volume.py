"""Import a trained grid (contract 4) as a Volume object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems
else:
    OperatorReturnItems = str
from bpy.props import StringProperty

from ..io.grid_reader import GridFileError
from ..volume.eevee_settings import apply_sharp_volumetrics
from ..volume.importer import ImportResult, import_grid


def import_with_settings(context: Any, grid_path: str) -> tuple[ImportResult, str]:
    """Imports with the Import panel's settings; also the training's own imports (live preview, when
    done), so their volumes look as sharp in the viewport. Returns the result and, with Sharp EEVEE
    Volumes on, the EEVEE settings it made ('' otherwise)."""
    s: Any = context.scene.plenox.import_settings
    result = import_grid(
        context.scene,
        grid_path,
        object_name=s.object_name or "Plenoxels",
        multiplier=s.density_multiplier,
        threshold=s.threshold,
        min_density=s.min_density,
        color_space=s.color_space,
        view_dependent=not s.view_independent_only,
        background_world=s.background_world,
    )
    if not s.sharp_eevee:
        return result, ""
    # bl_options UNDO on the operator: Ctrl-Z restores the scene's previous EEVEE settings with the import
    return result, apply_sharp_volumetrics(context.scene, result.aabb, result.voxel_size).describe()


def show_in_viewport(context: Any) -> None:
    """Volumes show their colour only with material shading: switch Solid viewports to it."""
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else ():
        if area.type == "VIEW_3D":
            for space in area.spaces:
                if space.type == "VIEW_3D" and space.shading.type in {"SOLID", "WIREFRAME"}:
                    space.shading.type = "MATERIAL"


def grid_to_import(operator: Any, context: Any) -> str:
    """The operator's file, else the Import panel's, else the last trained grid (made absolute); ''
    after reporting the error when there is none."""
    settings: Any = context.scene.plenox
    path = operator.filepath or settings.import_settings.grid_path or settings.train.last_grid
    if not path:
        operator.report({"ERROR"}, "No grid file: choose one in the Import panel or train first")
        return ""
    return str(bpy.path.abspath(path))


class PLENOX_OT_import_volume(bpy.types.Operator):
    """Import a trained grid (.npz) as a Volume object in the Reconstruction collection, replacing the
    previous one"""

    bl_idname = "plenox.import_volume"
    bl_label = "Import Grid"
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
            result, eevee = import_with_settings(context, path)
        except (GridFileError, RuntimeError, OSError) as err:
            settings.import_settings.status = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        res = "x".join(map(str, result.resolution))
        msg = (f"Imported {result.active_voxels:,} voxels ({res}) in {result.seconds:.2f} s, "
               f"{result.vdb_bytes / 1e6:.1f} MB")
        if result.shown_degree > 0:
            msg += f"; view-dependent colour (SH degree {result.shown_degree})"
        elif result.sh_degree > 0:
            # the trainer's renders of such a grid include view-dependent colour; this volume does not
            msg += (f"; colour: the view-independent part of SH degree {result.sh_degree}"
                    " (View-Independent Colour Only)")
        if eevee:
            msg += f"; EEVEE volumetrics: {eevee}"
        if result.background:
            msg += f"; {result.background}"
        settings.import_settings.status = msg
        if not bpy.app.background:
            show_in_viewport(context)
        self.report({"INFO"}, msg)
        return {"FINISHED"}


classes = (PLENOX_OT_import_volume,)
