"""The Import operator in real Blender: its status line says whether the volume shows the grid's
view-dependent colour (SH) or only its view-independent part."""

from __future__ import annotations

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy
from grid_helpers import cube_grid, random_grid

from blender_plenox.io.grid_reader import write_grid


def test_status_names_the_colour_the_volume_shows(registered_scene, tmp_path):
    write_grid(tmp_path / "dc.npz", cube_grid(8, 2, 6, 3.0, (0.8, 0.3, 0.1)))
    write_grid(tmp_path / "sh1.npz", random_grid(sh_degree=1))
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "dc.npz")) == {"FINISHED"}
    status = registered_scene.plenox.import_settings.status
    assert status.startswith("Imported 64 voxels") and "SH degree" not in status
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "sh1.npz")) == {"FINISHED"}
    assert "view-dependent colour (SH degree 1)" in registered_scene.plenox.import_settings.status
    registered_scene.plenox.import_settings.view_independent_only = True
    assert bpy.ops.plenox.import_volume(filepath=str(tmp_path / "sh1.npz")) == {"FINISHED"}
    assert "view-independent part of SH degree 1" in registered_scene.plenox.import_settings.status
