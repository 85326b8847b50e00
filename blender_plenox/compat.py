"""Every difference between the Blender versions the add-on supports (4.2 LTS, 4.5 LTS, 5.0), in one place.

The rest of the add-on calls these helpers instead of testing versions or attributes itself. Each test
here is on the feature (is the RNA property there, is the function there), not on the version number,
so a release in between (4.3, 4.4) takes whichever path its API has. docs/PLATFORMS.md ("Blender
versions") lists the differences for readers; keep the two in step.

What differs, and where it is handled:
- ImageFormatSettings.media_type (5.0): file formats are grouped by media type, and file_format only
  accepts the formats of the current one (FFMPEG only under VIDEO). `image_format_attributes`,
  `set_still_image_format`, `set_video_format`.
- A new Material or World has no node tree before 5.0 until `use_nodes` is set; 5.0 always makes
  one (and deprecates `use_nodes`). `node_tree_of`.
- Cycles 5.0 renders volumes unbiased (null scattering) unless `volume_biased` is set; 4.x always
  ray-marches, with the same step rate and step count settings. `use_ray_marched_volumes`.
- Cycles and EEVEE before 5.0 render a VDB grid half a voxel along +x, +y and +z of its index space
  from where the grid's transform puts each voxel (measured on 4.2 and 4.5; 5.0 renders it where the
  transform says, as Blender's Geometry Nodes and the OpenVDB reader read it on every version).
  `volume_object_matrix` moves the Volume object back by that much. The Volume to Mesh modifier
  sees the grid where the renderers do (measured on 4.2, 4.5, 5.0), so the same matrix on the
  Volume object it reads puts the mesh where the transform says (volume/surface_mesh.py).
- The OpenVDB Python binding: none in the 4.2 `bpy` wheel (the 4.2 application bundles `pyopenvdb`),
  `openvdb` from 4.5 on, which the `bpy` module exposes only after
  `bpy.utils.expose_bundled_modules()` (4.5+). The add-on writes VDB files without any binding
  (io/vdb_file.py); `openvdb_module` serves tests and benchmarks that read files back.
- Blender 4.5's `bpy` module never exits while Python classes with methods are still registered: its
  audio device's delayed-close thread waits on a condition variable that a static destructor then
  destroys (found with gdb on 4.5.15; 5.0.1 exits cleanly; 4.2 has no such thread).
  `unregister_at_exit`.
- EEVEE's engine id: BLENDER_EEVEE_NEXT in 4.2–4.5, BLENDER_EEVEE in 5.0. Its volumetric settings
  have the same names on all three (volumetric_tile_size, _samples, _start, _end), but the custom
  range switch (use_volume_custom_range) is on by default before 5.0 and off in 5.0, where start and
  end are then ignored. `eevee_engine_id`, `read_eevee_volumetrics`, `write_eevee_volumetrics`.
"""

from __future__ import annotations

import atexit
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import bpy
from mathutils import Matrix, Vector

# True under the `bpy` module (plain Python importing Blender); False in the Blender application.
# `bpy.app.module` only exists from 4.3 on; the module has no executable path in every version.
IS_PYTHON_MODULE: bool = bool(getattr(bpy.app, "module", bpy.app.binary_path == ""))

_HAS_MEDIA_TYPE: bool = "media_type" in bpy.types.ImageFormatSettings.bl_rna.properties


def image_format_attributes() -> tuple[str, ...]:
    """The ImageFormatSettings attributes that pick the file format, in the order they must be set
    (and restored): the media type first where it exists, since it limits file_format's values."""
    return ("media_type", "file_format") if _HAS_MEDIA_TYPE else ("file_format",)


def set_still_image_format(image_settings: Any, file_format: str) -> None:
    """Sets a still-image file format (PNG, OPEN_EXR) on any version."""
    if _HAS_MEDIA_TYPE:
        image_settings.media_type = "IMAGE"
    image_settings.file_format = file_format


def set_video_format(image_settings: Any) -> None:
    """FFmpeg video output (an animation render writes one movie file), on any version: 5.0 lists
    FFMPEG only under the VIDEO media type. The bpy module writes H.264 MP4 on 4.2, 4.5 and 5.0."""
    if _HAS_MEDIA_TYPE:
        image_settings.media_type = "VIDEO"
    image_settings.file_format = "FFMPEG"


def node_tree_of(idblock: Any) -> Any:
    """The node tree of a Material or World, made first where the version starts without one."""
    if idblock.node_tree is None:
        idblock.use_nodes = True  # before 5.0 this creates the default tree (Principled BSDF, Background)
    return idblock.node_tree


def use_ray_marched_volumes(cycles_settings: Any) -> None:
    """Cycles' ray-marched volume integration, whose step settings (volume_step_rate,
    volume_max_steps) the callers set: opt-in on 5.0, the only one before."""
    if "volume_biased" in cycles_settings.bl_rna.properties:
        cycles_settings.volume_biased = True


# The one difference no RNA property reveals, so the version decides: the half-voxel render offset
# above, gone in 5.0.
RENDER_VOXEL_SHIFT: float = 0.0 if bpy.app.version >= (5, 0, 0) else 0.5


def volume_object_matrix(index_to_object: Matrix) -> Matrix:
    """The world matrix that makes the renderers show each voxel of a grid with this index → object
    map (a VolumeGrid's matrix_object) where the map puts it: identity from 5.0 on, before that a
    translation back by RENDER_VOXEL_SHIFT voxels along every index axis. A .blend saved with one
    version and rendered with the other shows the volume half a voxel off until it is imported again."""
    shift = index_to_object.to_3x3() @ Vector((RENDER_VOXEL_SHIFT,) * 3)
    return Matrix.Translation(-shift)


def openvdb_module() -> ModuleType | None:
    """Blender's OpenVDB Python binding, or None where this build has none (the 4.2 `bpy` wheel)."""
    for name in ("openvdb", "pyopenvdb"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    expose = getattr(bpy.utils, "expose_bundled_modules", None)
    if expose is None:
        return None
    try:
        expose()
        return importlib.import_module("openvdb")
    except ImportError:
        return None


_exit_hooks: list[Callable[[], None]] = []


def unregister_at_exit(unregister: Callable[[], None]) -> None:
    """Under the `bpy` module, calls `unregister` when Python exits (once per function), so that
    Blender 4.5's module can shut down instead of hanging; a no-op when nothing is registered any more.
    In the Blender application, add-ons are disabled before Python finalises: nothing to do there."""
    if not IS_PYTHON_MODULE or unregister in _exit_hooks:
        return
    _exit_hooks.append(unregister)
    atexit.register(unregister)


def eevee_engine_id() -> str:
    """The render engine id of EEVEE on this version (BLENDER_EEVEE_NEXT in 4.2–4.5)."""
    engine: Any = bpy.types.RenderSettings.bl_rna.properties["engine"]
    items = engine.enum_items
    return "BLENDER_EEVEE_NEXT" if "BLENDER_EEVEE_NEXT" in items else "BLENDER_EEVEE"


def read_eevee_volumetrics(eevee: Any) -> tuple[int, int, float | None, float | None]:
    """The scene's (tile px, samples, start, end); start and end None where EEVEE ignores them."""
    custom = bool(getattr(eevee, "use_volume_custom_range", True))
    start, end = (eevee.volumetric_start, eevee.volumetric_end) if custom else (None, None)
    return int(eevee.volumetric_tile_size), int(eevee.volumetric_samples), start, end


def write_eevee_volumetrics(eevee: Any, tile: int, samples: int, start: float | None, end: float | None) -> None:
    """Sets the froxel grid; a range (both ends) also switches on the custom range where 5.0 needs it."""
    eevee.volumetric_tile_size = str(tile)
    eevee.volumetric_samples = samples
    if start is not None and end is not None:
        if "use_volume_custom_range" in eevee.bl_rna.properties:
            eevee.use_volume_custom_range = True
        eevee.volumetric_start = start
        eevee.volumetric_end = end
