"""The add-on's operators, registered together as one `classes` tuple."""

from __future__ import annotations

import bpy

from . import capture

classes = (*capture.classes,)
register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None
