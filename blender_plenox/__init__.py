"""blender_plenox: capture posed renders of a scene, train a Plenoxel grid with the trainer subprocess,
and import the grid back as a Volume object.

bpy is imported only inside register()/unregister(), so plain Python can import the bpy-free parts
(`blender_plenox.utils`, `blender_plenox.io`) for tests and tools.
"""

from __future__ import annotations

from types import ModuleType

_registered: list[ModuleType] = []


def _modules() -> list[ModuleType]:
    # Order matters: property groups before the operators and panels that use them.
    from . import operators, panels, preferences, properties

    return [preferences, properties, operators, panels]


def register() -> None:
    if _registered:  # registering twice in a row re-registers instead of failing
        unregister()
    for module in _modules():
        module.register()
        _registered.append(module)


def unregister() -> None:
    while _registered:
        _registered.pop().unregister()
