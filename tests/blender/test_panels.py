"""The sidebar panels' draw code, in real Blender without a window: every field a panel shows is a
property of the settings it names, and every button an operator that exists, in each state the panel
draws differently (no GUI here, so a misspelt name would otherwise only show as a broken panel)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy
import pytest


class RecordingLayout:
    """Stands in for bpy.types.UILayout: records prop() and operator() calls, nests like the real one."""

    def __init__(self, record: list[tuple[str, Any, str]]) -> None:
        self.record = record
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = True

    def _nested(self, *_: Any, **__: Any) -> RecordingLayout:
        return RecordingLayout(self.record)

    column = row = box = split = _nested

    def prop(self, data: Any, name: str, **_: Any) -> None:
        self.record.append(("prop", data, name))

    def operator(self, idname: str, **_: Any) -> None:
        self.record.append(("operator", None, idname))

    def label(self, **_: Any) -> None:
        pass

    def progress(self, **_: Any) -> None:
        pass

    def separator(self, **_: Any) -> None:
        pass


def draw(panel: type, context: Any) -> list[tuple[str, Any, str]]:
    record: list[tuple[str, Any, str]] = []
    panel.draw(SimpleNamespace(layout=RecordingLayout(record)), context)
    return record


def check(record: list[tuple[str, Any, str]]) -> set[str]:
    """Fails on a property or operator that does not exist; returns the property names drawn."""
    shown = set()
    for kind, data, name in record:
        if kind == "prop":
            assert name in data.bl_rna.properties, f"{data.bl_rna.identifier} has no property {name!r}"
            shown.add(name)
        else:
            category, op = name.split(".")
            assert op in dir(getattr(bpy.ops, category)), f"no operator {name!r}"
    return shown


@pytest.mark.parametrize(("source", "only_here"), [("RIG", "rig_views"), ("COLLECTION", "camera_collection"),
                                                  ("ANIMATION", "frame_step")])
def test_capture_panel(registered_scene, source, only_here):
    from blender_plenox.panels import VIEW3D_PT_plenox_capture

    registered_scene.plenox.capture.source = source
    shown = check(draw(VIEW3D_PT_plenox_capture, bpy.context))
    assert {"source", "output_dir", only_here} <= shown


def test_train_panel_shows_the_time_limit_and_threads(registered_scene):
    from blender_plenox.panels import VIEW3D_PT_plenox_train

    train = registered_scene.plenox.train
    shown = check(draw(VIEW3D_PT_plenox_train, bpy.context))
    assert {"preset", "device", "time_limit", "threads"} <= shown and "steps" not in shown
    train.use_overrides, train.status, train.error, train.can_resume = True, "Done", "a problem", True
    shown = check(draw(VIEW3D_PT_plenox_train, bpy.context))
    assert {"final_resolution", "steps", "tv_sh", "extra_overrides", "snapshot_every"} <= shown


@pytest.mark.parametrize("import_as", ["VOLUME", "MESH"])
def test_import_panel(registered_scene, import_as):
    from blender_plenox.panels import VIEW3D_PT_plenox_import

    registered_scene.plenox.import_settings.import_as = import_as
    shown = check(draw(VIEW3D_PT_plenox_import, bpy.context))
    assert ("surface_opacity" in shown) == (import_as == "MESH")
