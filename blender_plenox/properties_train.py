"""Train and Import settings, behind `scene.plenox.train` and `scene.plenox.import_settings`."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

PRESET_ITEMS = [
    ("tiny", "Tiny (tests)", "A few hundred steps at 16-32³: checks the whole pipeline in a minute or two"),
    ("fast", "Fast (CPU preview)", ("5 minutes on any machine: up to 9000 steps up to 144³, its schedule "
                                    "fitted to the time (on 2 CPU cores 5000-9000 steps)")),
    ("capture", "Photo Capture", ("Fast's 4000 steps for photos without alpha (a phone walk, COLMAP): the "
                                  "box the cameras look at and a finer learnt background")),
    ("default", "Default", ("At most 10 minutes: up to 12000 steps up to 256³, its schedule fitted to the "
                            "time (on 2 CPU cores 9500-12000 steps); a few minutes on a GPU")),
    ("quality", "Quality (GPU)", "9000 steps of 40000 rays up to 512³: minutes on a CUDA GPU"),
]
DEVICE_ITEMS = [
    ("auto", "Auto", "An NVIDIA GPU (CUDA) when the trainer's torch sees one, else the Apple GPU, else the CPU"),
    ("cpu", "CPU", "Always train on the CPU"),
    ("cuda", "CUDA", "Train on the NVIDIA GPU (fails when torch has no CUDA)"),
    ("mps", "Apple GPU", "Train on the Apple Silicon GPU through Metal (fails elsewhere)"),
]
COLOR_SPACE_ITEMS = [
    (
        "LINEAR",
        "Scene Linear",
        (
            "Show the trained colours as scene-linear, so the volume looks like the captured images "
            "under the Standard view transform (grids trained in linear light already are; older "
            "sRGB grids are converted)"
        ),
    ),
    (
        "TRAINER",
        "Trainer Values",
        (
            "Keep the trainer's colour values as they are (for an older sRGB grid, a render with "
            "the Raw view transform then matches the trainer's own render)"
        ),
    ),
]
IMPORT_AS_ITEMS = [
    ("VOLUME", "Volume", "The field itself: a Volume object whose material renders it as the trainer does"),
    (
        "MESH",
        "Mesh",
        (
            "A mesh of the field's surface at the Surface Opacity, with the field's colour at each vertex "
            "(a colour attribute, shown by an emission material), named after Object plus ' Mesh'"
        ),
    ),
]


def _update_material(self: Any, context: Any) -> None:
    from .volume.volume_object import find_volume_object, set_material_controls

    obj = find_volume_object(context.scene, self.object_name)
    if obj is not None and obj.active_material is not None:
        set_material_controls(obj.active_material, self.density_multiplier, self.threshold)


class PlenoxTrainSettings(bpy.types.PropertyGroup):
    data_dir: StringProperty(  # type: ignore[valid-type]
        name="Dataset",
        description="Dataset folder to train on; empty: the Capture panel's dataset folder",
        subtype="DIR_PATH",
        default="",
    )
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Run Folder",
        description="Folder for the training run; empty: <default output folder>/<scene>/run",
        subtype="DIR_PATH",
        default="",
    )
    preset: EnumProperty(  # type: ignore[valid-type]
        name="Preset", description="The trainer's schedule", items=PRESET_ITEMS, default="fast"
    )
    device: EnumProperty(  # type: ignore[valid-type]
        name="Device", description="Where the trainer runs", items=DEVICE_ITEMS, default="auto"
    )
    time_limit: FloatProperty(  # type: ignore[valid-type]
        name="Time Limit (min)",
        description="Stop training after this many minutes, with the schedule run to its end in that "
        "time (its learning rates decay with the time used); 0: the preset's own (Fast: 5 minutes, "
        "Default: 10; the others: every step)",
        default=0.0,
        min=0.0,
        soft_max=120.0,
        precision=1,
        step=100,
    )
    threads: IntProperty(  # type: ignore[valid-type]
        name="CPU Threads",
        description="Threads a CPU training uses; fewer keep Blender responsive while it runs. 0: one "
        "per core",
        default=0,
        min=0,
        soft_max=64,
    )
    view_dependent: BoolProperty(  # type: ignore[valid-type]
        name="View-Dependent Colour",
        description="Train view-dependent colour (the preset's spherical harmonics), which the imported "
        "volume shows from every view direction. Off: one colour per voxel (SH degree 0), a lighter and "
        "faster training whose volume looks the same from every side",
        default=True,
    )
    use_overrides: BoolProperty(  # type: ignore[valid-type]
        name="Override Preset",
        description="Pass the values below to the trainer instead of the preset's",
        default=False,
    )
    final_resolution: IntProperty(  # type: ignore[valid-type]
        name="Final Resolution",
        description="Grid side at the end of training; 0: the preset's",
        default=0,
        min=0,
        soft_max=512,
        max=1024,
    )
    steps: IntProperty(  # type: ignore[valid-type]
        name="Steps",
        description="Optimisation steps; 0: the preset's",
        default=0,
        min=0,
        soft_max=100000,
    )
    prune_weight: FloatProperty(  # type: ignore[valid-type]
        name="Pruning Threshold",
        description="Voxels whose largest rendering weight stays below this are dropped",
        default=0.005,
        min=0.0,
        max=1.0,
        precision=4,
        step=0.1,
    )
    tv_sigma: FloatProperty(  # type: ignore[valid-type]
        name="TV Density",
        description="Total-variation weight on density (scene units, summed over the sampled voxels); "
        "0 in every preset: the paper's 1e-5 wrecks the fit under this trainer's optimiser",
        default=0.0,
        min=0.0,
        precision=7,
    )
    tv_sh: FloatProperty(  # type: ignore[valid-type]
        name="TV Colour",
        description="Total-variation weight on the SH coefficients; 0 in every preset: the paper's 1e-3 "
        "wrecks the fit under this trainer's optimiser",
        default=0.0,
        min=0.0,
        precision=5,
    )
    sparsity: FloatProperty(  # type: ignore[valid-type]
        name="Sparsity",
        description="Cauchy sparsity weight on density",
        default=1e-11,
        min=0.0,
        precision=12,
    )
    extra_overrides: StringProperty(  # type: ignore[valid-type]
        name="Extra Settings",
        description="More trainer settings as space-separated key=value pairs "
        "(trainer/config.py names), e.g. `batch_rays=2048 sh_degree=1`",
        default="",
    )
    live_preview: BoolProperty(  # type: ignore[valid-type]
        name="Live Preview",
        description="Show the trainer's snapshots in the viewport while it runs: its view-independent "
        "colour, on coarser voxels while the grid has more than 2 million",
        default=True,
    )
    snapshot_every: IntProperty(  # type: ignore[valid-type]
        name="Preview Every",
        description="Steps between live-preview snapshots (fewer on large grids: the trainer spends at "
        "most about a tenth of its time writing them)",
        default=250,
        min=10,
    )
    resume: BoolProperty(  # type: ignore[valid-type]
        name="Resume",
        description="Continue the run in the run folder from its last checkpoint",
        default=False,
    )
    overwrite: BoolProperty(  # type: ignore[valid-type]
        name="Overwrite",
        description="Start afresh even if the run folder holds a run",
        default=False,
    )
    import_when_done: BoolProperty(  # type: ignore[valid-type]
        name="Import When Done",
        description="Import the trained grid as a Volume object",
        default=True,
    )
    # Runtime state shown by the panel.
    running: BoolProperty(name="Running", description="A training run is in progress", default=False)  # type: ignore[valid-type]
    progress: FloatProperty(  # type: ignore[valid-type]
        name="Progress",
        description="Share of the steps done",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    status: StringProperty(name="Status", description="What the trainer is doing", default="")  # type: ignore[valid-type]
    error: StringProperty(name="Error", description="Why the last run failed", default="")  # type: ignore[valid-type]
    log_path: StringProperty(  # type: ignore[valid-type]
        name="Log", description="The trainer's log of the last run", default="", subtype="FILE_PATH"
    )
    last_grid: StringProperty(  # type: ignore[valid-type]
        name="Trained Grid", description="Grid file of the last finished run", default="", subtype="FILE_PATH"
    )
    can_resume: BoolProperty(name="Can Resume", description="The last run left a checkpoint", default=False)  # type: ignore[valid-type]


class PlenoxImportSettings(bpy.types.PropertyGroup):
    import_as: EnumProperty(  # type: ignore[valid-type]
        name="Import As",
        description="What the grid becomes in the scene",
        items=IMPORT_AS_ITEMS,
        default="VOLUME",
    )
    surface_opacity: FloatProperty(  # type: ignore[valid-type]
        name="Surface Opacity",
        description="Mesh: the surface lies where one voxel's thickness of the field stops this share of "
        "the light, i.e. at density −ln(1 − opacity) / voxel size; higher lies deeper inside and leaves holes where the field is thin",
        default=0.3,
        min=0.001,
        max=0.999,
        subtype="FACTOR",
    )
    remove_hidden: BoolProperty(  # type: ignore[valid-type]
        name="Remove Hidden Surfaces",
        description="Mesh: fill the space no training camera could see (the inside of solids), so that "
        "inner walls and hollows leave no surface, up to the last surfaces the cameras saw (an unseen "
        "bottom closes flat there); needs the grid's dataset (its cameras) where it was trained",
        default=True,
    )
    grid_path: StringProperty(  # type: ignore[valid-type]
        name="Grid File",
        description="A trained grid (.npz); empty: the last trained grid",
        subtype="FILE_PATH",
        default="",
    )
    object_name: StringProperty(  # type: ignore[valid-type]
        name="Object",
        description="Volume object to create or replace",
        default="Plenoxels",
    )
    density_multiplier: FloatProperty(  # type: ignore[valid-type]
        name="Density Multiplier",
        description="Scales the density (1: the trained field exactly)",
        default=1.0,
        min=0.0,
        soft_max=10.0,
        update=_update_material,
    )
    threshold: FloatProperty(  # type: ignore[valid-type]
        name="Threshold",
        description="Density (per world unit) below which the volume is empty",
        default=0.0,
        min=0.0,
        soft_max=100.0,
        update=_update_material,
    )
    min_density: FloatProperty(  # type: ignore[valid-type]
        name="Drop Below",
        description="Voxels with at most this density are left out of the VDB at import",
        default=0.0,
        min=0.0,
        soft_max=100.0,
    )
    color_space: EnumProperty(  # type: ignore[valid-type]
        name="Colours",
        description="How trained colours map to Blender colours",
        items=COLOR_SPACE_ITEMS,
        default="LINEAR",
    )
    view_independent_only: BoolProperty(  # type: ignore[valid-type]
        name="View-Independent Colour Only",
        description="Write and show only each voxel's view-independent colour: a lighter file and "
        "material, but the volume looks the same from every side. Off: the grid's spherical harmonics "
        "are evaluated from the view direction, as the trainer renders them. For a mesh: the "
        "view-independent colour at each vertex instead of the colour seen looking straight at the surface",
        default=False,
    )
    background_world: BoolProperty(  # type: ignore[valid-type]
        name="Learnt Background as World",
        description="A grid trained on photos without alpha learns what lies beyond its box as an "
        "environment map: show it as the scene's World (a new World; the previous one stays in the file "
        "and the import can be undone)",
        default=True,
    )
    sharp_eevee: BoolProperty(  # type: ignore[valid-type]
        name="Sharp EEVEE Volumes",
        description="Set the scene's EEVEE volumetrics (tile size, samples, start and end seen from the "
        "active camera) so the viewport and EEVEE renders resolve the grid's voxels; never coarser than "
        "the scene's settings, undone with the import",
        default=True,
    )
    dataset_dir: StringProperty(  # type: ignore[valid-type]
        name="Dataset",
        description="Dataset folder (transforms files: ours, NeRF-synthetic, instant-ngp, BlenderNeRF, nerfstudio) "
        "whose cameras Import Cameras brings into the scene; empty: the Train panel's dataset",
        subtype="DIR_PATH",
        default="",
    )
    status: StringProperty(name="Status", description="What the last import did", default="")  # type: ignore[valid-type]


classes = (PlenoxTrainSettings, PlenoxImportSettings)
