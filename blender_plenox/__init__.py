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
    from . import compat

    if _registered:  # registering twice in a row re-registers instead of failing
        unregister()
    for module in _modules():
        module.register()
        _registered.append(module)
    # A script under the `bpy` module that ends with the add-on registered would hang on 4.5 (compat).
    compat.unregister_at_exit(unregister)


def unregister() -> None:
    while _registered:
        _registered.pop().unregister()
