"""Add-on preferences (keyed by the package name): the trainer's Python interpreter and where
datasets and runs go by default."""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty

PACKAGE = __package__ or "blender_plenox"
DEFAULT_OUTPUT_DIR = os.path.join(os.path.expanduser("~"), "blender_plenox")


class PlenoxPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    trainer_python: StringProperty(  # type: ignore[valid-type]
        name="Trainer Python",
        description=(
            "Python interpreter with torch and the trainer installed, used to run `python -m trainer`. "
            "Empty: detect one (a .venv beside the add-on's repository, then python3 on PATH)"
        ),
        subtype="FILE_PATH",
        default="",
    )
    default_output_dir: StringProperty(  # type: ignore[valid-type]
        name="Default Output Folder",
        description="Folder for datasets and training runs when a scene does not name one "
        "(each scene gets a subfolder)",
        subtype="DIR_PATH",
        default=DEFAULT_OUTPUT_DIR,
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "trainer_python")
        layout.prop(self, "default_output_dir")


def get_preferences(context: bpy.types.Context) -> PlenoxPreferences | None:
    """The add-on's preferences, or None when it was registered without being enabled (scripts, tests)."""
    if context.preferences is None:
        return None
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None  # type: ignore[return-value]


def default_output_dir(context: bpy.types.Context) -> str:
    prefs = get_preferences(context)
    folder = prefs.default_output_dir if prefs is not None and prefs.default_output_dir else DEFAULT_OUTPUT_DIR
    return bpy.path.abspath(folder)


def trainer_python(context: bpy.types.Context) -> str:
    prefs = get_preferences(context)
    return prefs.trainer_python if prefs is not None else ""


classes = (PlenoxPreferences,)
register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None
