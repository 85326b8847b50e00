"""Add-on preferences (keyed by the package name): the trainer environment (install, cancel, remove,
what it found), the trainer's Python interpreter and where datasets and runs go by default."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, StringProperty

PACKAGE = __package__ or "blender_plenox"
DEFAULT_OUTPUT_DIR = os.path.join(os.path.expanduser("~"), "blender_plenox")


class PlenoxPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    trainer_python: StringProperty(  # type: ignore[valid-type]
        name="Trainer Python",
        description=(
            "A Python interpreter of your own with torch installed, used to run the trainer. "
            "Empty: the trainer environment installed above, else a .venv beside the add-on's "
            "repository, else python3 on PATH"
        ),
        subtype="FILE_PATH",
        default="",
    )
    show_env_advanced: BoolProperty(  # type: ignore[valid-type]
        name="Advanced", description="Choose the Python and pip's arguments for the environment", default=False
    )
    env_python: StringProperty(  # type: ignore[valid-type]
        name="Environment Python",
        description="Python (3.10 or newer) to build the trainer environment for. Empty: Blender's own",
        subtype="FILE_PATH",
        default="",
    )
    pip_args: StringProperty(  # type: ignore[valid-type]
        name="pip Arguments",
        description=(
            "Where pip gets the packages from, replacing the automatic choice of PyTorch build, e.g. "
            "'--index-url https://download.pytorch.org/whl/cu126' or '--no-index --find-links D:/wheels'"
        ),
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
        self._draw_environment(layout.box())
        layout.prop(self, "trainer_python")
        layout.prop(self, "default_output_dir")

    def _draw_environment(self, box: bpy.types.UILayout) -> None:
        from .operators import trainer_env as ops

        box.label(text="Trainer Environment", icon="CONSOLE")
        job = ops.running_job()
        env = ops.installed()
        if job is not None:
            box.progress(factor=job.state.fraction, text=job.state.status())
            for line in list(job.state.log_tail)[-3:]:
                box.label(text=line[:110])
            box.operator("plenox.cancel_trainer_env", icon="CANCEL")
        else:
            if env is not None:
                box.label(text=f"Installed: {env.summary()}", icon="CHECKMARK")
                box.label(text=str(env.root))
            else:
                box.label(text="Not installed: the trainer needs PyTorch (a download of 0.2 to 3 GB)", icon="INFO")
            row = box.row()
            label = "Reinstall Trainer Environment" if env is not None else "Install Trainer Environment"
            row.operator("plenox.install_trainer_env", icon="IMPORT", text=label)
            if env is not None:
                row.operator("plenox.remove_trainer_env", icon="TRASH")
        last = ops.last_result()
        if last is not None and last.error:
            err = box.box()
            err.label(text=last.error[:160], icon="ERROR")
        elif last is not None and last.cancelled:
            box.label(text="Install cancelled; nothing was left behind", icon="INFO")
        box.prop(self, "show_env_advanced")
        if self.show_env_advanced:
            box.prop(self, "env_python")
            box.prop(self, "pip_args")


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
