"""Shared fixtures for the real-Blender tests."""

from __future__ import annotations

import pytest

import volume_render_helpers  # noqa: F401  # isort: skip  # puts the repository on sys.path

import bpy


@pytest.fixture()
def registered_scene():
    """An empty factory scene with the add-on registered (unregistered afterwards)."""
    import blender_plenox

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_plenox.register()
    yield bpy.context.scene
    blender_plenox.unregister()
