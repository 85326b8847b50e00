"""Scene settings of the add-on: one PropertyGroup behind `bpy.types.Scene.plenox`, with a group per
stage (capture here; train and import settings are added beside it)."""

from __future__ import annotations

from collections.abc import Callable

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .properties_train import PlenoxImportSettings, PlenoxTrainSettings

SOURCE_ITEMS = [
    ("RIG", "Generated Rig", "Cameras spread evenly on a sphere around the objects, framed to fit"),
    ("COLLECTION", "Camera Collection", "Every camera in a chosen collection"),
    ("ANIMATION", "Animated Camera", "The scene's active camera over a range of frames"),
]
TARGET_ITEMS = [
    ("SELECTED", "Selected Objects", "Frame and bound the selected objects"),
    ("VISIBLE", "Visible Scene", "Frame and bound every visible object that renders"),
]
LAYOUT_ITEMS = [
    ("HEMISPHERE", "Upper Hemisphere", "Cameras above the objects' centre only (objects standing on something)"),
    ("SPHERE", "Full Sphere", "Cameras all around the objects"),
]
FIT_ITEMS = [
    ("DISTANCE", "Fit Radius", "Keep the focal length and move the cameras until the objects fill the frame"),
    ("LENS", "Fit Focal Length", "Keep the rig radius and choose the focal length that fills the frame"),
]
ENGINE_ITEMS = [
    ("CYCLES", "Cycles (CPU, preset)", "Cycles on the CPU with the samples and denoising set here"),
    ("SCENE", "Scene Engine", "The scene's own render engine and its settings, untouched"),
]


def _is_camera_collection(_self: bpy.types.PropertyGroup, collection: bpy.types.Collection) -> bool:
    return any(obj.type == "CAMERA" for obj in collection.all_objects)


class PlenoxCaptureSettings(bpy.types.PropertyGroup):
    source: EnumProperty(  # type: ignore[valid-type]
        name="Cameras", description="Where the capture's viewpoints come from", items=SOURCE_ITEMS,
        default="RIG",
    )
    target: EnumProperty(  # type: ignore[valid-type]
        name="Objects", description="The objects to frame and to bound with the dataset's box",
        items=TARGET_ITEMS, default="VISIBLE",
    )
    rig_layout: EnumProperty(  # type: ignore[valid-type]
        name="Layout", description="Part of the sphere the generated cameras cover", items=LAYOUT_ITEMS,
        default="HEMISPHERE",
    )
    rig_views: IntProperty(  # type: ignore[valid-type]
        name="Views", description="Number of generated cameras (train and test together)",
        default=100, min=1, soft_max=400, max=5000,
    )
    rig_seed: IntProperty(  # type: ignore[valid-type]
        name="Seed", description="Turns the rig about the vertical axis; the same seed gives the same rig",
        default=0, min=0,
    )
    rig_fit: EnumProperty(  # type: ignore[valid-type]
        name="Fit", description="What to adjust so the objects fill the frame", items=FIT_ITEMS,
        default="DISTANCE",
    )
    rig_lens: FloatProperty(  # type: ignore[valid-type]
        name="Focal Length", description="Focal length of the generated cameras (36 mm sensor)",
        default=50.0, min=1.0, soft_max=300.0, unit="CAMERA", subtype="DISTANCE_CAMERA",
    )
    rig_radius: FloatProperty(  # type: ignore[valid-type]
        name="Radius", description="Distance from the objects' centre to the cameras when fitting the focal length",
        default=4.0, min=0.001, unit="LENGTH", subtype="DISTANCE",
    )
    rig_fill: FloatProperty(  # type: ignore[valid-type]
        name="Fill", description="Share of the frame (along its shorter side) the objects' bounding sphere spans",
        default=0.9, min=0.1, max=1.0, subtype="FACTOR",
    )
    camera_collection: PointerProperty(  # type: ignore[valid-type]
        name="Collection", description="Collection whose cameras (all of them, sorted by name) are rendered",
        type=bpy.types.Collection, poll=_is_camera_collection,
    )
    use_scene_frames: BoolProperty(  # type: ignore[valid-type]
        name="Scene Frame Range", description="Use the scene's start and end frames", default=True,
    )
    frame_start: IntProperty(  # type: ignore[valid-type]
        name="Start", description="First frame rendered from the active camera", default=1,
    )
    frame_end: IntProperty(  # type: ignore[valid-type]
        name="End", description="Last frame rendered from the active camera", default=100,
    )
    frame_step: IntProperty(  # type: ignore[valid-type]
        name="Step", description="Render every n-th frame", default=1, min=1,
    )
    test_every: IntProperty(  # type: ignore[valid-type]
        name="Test Every", description="Every n-th view goes to the test split (rendered too); 0: no test views",
        default=8, min=0, soft_max=20,
    )
    resolution_x: IntProperty(  # type: ignore[valid-type]
        name="Width", description="Width of the rendered views in pixels", default=200, min=4, max=16384,
        subtype="PIXEL",
    )
    resolution_y: IntProperty(  # type: ignore[valid-type]
        name="Height", description="Height of the rendered views in pixels", default=200, min=4, max=16384,
        subtype="PIXEL",
    )
    resolution_percentage: IntProperty(  # type: ignore[valid-type]
        name="Scale", description="Percentage of the width and height actually rendered", default=100,
        min=1, max=100, subtype="PERCENTAGE",
    )
    engine: EnumProperty(  # type: ignore[valid-type]
        name="Engine", description="How the views are rendered", items=ENGINE_ITEMS, default="CYCLES",
    )
    samples: IntProperty(  # type: ignore[valid-type]
        name="Samples", description="Cycles samples per pixel (denoising cleans up the rest)",
        default=32, min=1, soft_max=1024,
    )
    use_denoising: BoolProperty(  # type: ignore[valid-type]
        name="Denoise", description="Denoise the Cycles renders", default=True,
    )
    standard_view: BoolProperty(  # type: ignore[valid-type]
        name="Standard Colours",
        description=(
            "Render the views with the Standard view transform (no look, exposure 0, gamma 1), restored"
            " afterwards: plain sRGB images that the trainer can model and the imported volume can"
            " reproduce. Off keeps the scene's view transform (e.g. AgX), whose tone mapping the"
            " volume cannot undo"
        ),
        default=True,
    )
    aabb_margin: FloatProperty(  # type: ignore[valid-type]
        name="Box Margin", description="Margin around the objects' box, as a share of its largest side",
        default=0.05, min=0.0, max=1.0, subtype="FACTOR",
    )
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Dataset Folder",
        description="Folder the dataset is written to; empty: <default output folder>/<scene>/dataset",
        subtype="DIR_PATH", default="",
    )
    overwrite: BoolProperty(  # type: ignore[valid-type]
        name="Overwrite", description="Replace an existing dataset in the folder (otherwise capture refuses)",
        default=False,
    )
    # Runtime state shown by the panel.
    status: StringProperty(  # type: ignore[valid-type]
        name="Status", description="What the last capture did", default="",
    )
    progress: FloatProperty(  # type: ignore[valid-type]
        name="Progress", description="Share of the views rendered", default=0.0, min=0.0, max=1.0,
        subtype="FACTOR",
    )


class PlenoxSettings(bpy.types.PropertyGroup):
    capture: PointerProperty(  # type: ignore[valid-type]
        name="Capture", description="How views are captured", type=PlenoxCaptureSettings,
    )
    train: PointerProperty(  # type: ignore[valid-type]
        name="Train", description="How the trainer is run", type=PlenoxTrainSettings,
    )
    import_settings: PointerProperty(  # type: ignore[valid-type]
        name="Import", description="How a trained grid is imported", type=PlenoxImportSettings,
    )


def scene_of(context: bpy.types.Context) -> bpy.types.Scene:
    scene = context.scene
    if scene is None:
        raise RuntimeError("blender_plenox needs an active scene")
    return scene


def view_layer_of(context: bpy.types.Context) -> bpy.types.ViewLayer:
    view_layer = context.view_layer
    if view_layer is None:
        raise RuntimeError("blender_plenox needs an active view layer")
    return view_layer


def capture_settings(context: bpy.types.Context) -> PlenoxCaptureSettings:
    return scene_of(context).plenox.capture  # type: ignore[attr-defined,no-any-return]


classes = (PlenoxCaptureSettings, PlenoxTrainSettings, PlenoxImportSettings, PlenoxSettings)
_register_classes: Callable[[], None]
_unregister_classes: Callable[[], None]
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # the 4.2 stubs declare it as returning None


def register() -> None:
    _register_classes()
    bpy.types.Scene.plenox = PointerProperty(  # type: ignore[attr-defined,func-returns-value]
        name="Plenox", description="blender_plenox settings", type=PlenoxSettings,
    )


def unregister() -> None:
    del bpy.types.Scene.plenox  # type: ignore[attr-defined]
    _unregister_classes()
