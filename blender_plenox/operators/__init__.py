"""The add-on's operators, registered together as one `classes` tuple."""

from __future__ import annotations

from collections.abc import Callable

import bpy

from . import capture, import_cameras, import_mesh, import_volume, train, trainer_env

classes = (*capture.classes, *train.classes, *import_volume.classes, *import_mesh.classes, *import_cameras.classes,
           *trainer_env.classes)
_register_classes: Callable[[], None]
_unregister_classes: Callable[[], None]
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None


def register() -> None:
    _register_classes()
    train.register_handlers()


def unregister() -> None:
    train.unregister_handlers()  # stops a running trainer: nothing outlives the add-on
    trainer_env.unregister_handlers()  # and cancels an environment install
    _unregister_classes()
