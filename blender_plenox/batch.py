"""Headless capture, with the same settings as the Reconstruct panel.

    blender -b scene.blend --python blender_plenox/batch.py -- --out DIR --views 100 [...]
    python blender_plenox/batch.py --blend scene.blend -- --out DIR --views 100 [...]   (bpy module)
    python blender_plenox/batch.py -- --import-cameras DATASET --save cams.blend   (cameras only)
    python blender_plenox/batch.py --blend scene.blend -- --import --grid RUN/grid.npz --save out.blend
                                                                                (a grid only, no capture)

`--help` lists every option; each one is a property of the panel's capture settings, with the panel's
tooltip and default. Exit code 0 on success, 2 for bad input (nothing rendered), 1 when rendering failed
part-way (the views written are kept), with a one-line `error: ...` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

# option name → capture-settings property (the panel's); types, choices, help and defaults come from RNA
CAPTURE_OPTIONS = {
    "source": "source",
    "target": "target",
    "views": "rig_views",
    "layout": "rig_layout",
    "seed": "rig_seed",
    "fit": "rig_fit",
    "lens": "rig_lens",
    "radius": "rig_radius",
    "fill": "rig_fill",
    "collection": "camera_collection",
    "scene-frames": "use_scene_frames",
    "frame-start": "frame_start",
    "frame-end": "frame_end",
    "frame-step": "frame_step",
    "test-every": "test_every",
    "width": "resolution_x",
    "height": "resolution_y",
    "percentage": "resolution_percentage",
    "engine": "engine",
    "samples": "samples",
    "denoise": "use_denoising",
    "standard-view": "standard_view",
    "margin": "aabb_margin",
    "out": "output_dir",
    "overwrite": "overwrite",
}


def script_argv(argv: list[str]) -> list[str]:
    """The script's own arguments: everything after `--` inside Blender (the rest is Blender's); under
    plain Python all arguments, with a separating `--` dropped."""
    import bpy

    # The Blender executable reports its own path; the bpy module (plain Python) reports none.
    in_blender = bool(bpy.app.binary_path)
    if "--" in argv:
        i = argv.index("--")
        return argv[i + 1 :] if in_blender else argv[1:i] + argv[i + 1 :]
    return [] if in_blender else argv[1:]


def import_addon() -> ModuleType:
    """The add-on package this script belongs to, importable when the script is run by path."""
    if __package__:
        return importlib.import_module(__package__)
    package_dir = Path(__file__).resolve().parent
    if str(package_dir.parent) not in sys.path:
        sys.path.insert(0, str(package_dir.parent))
    return importlib.import_module(package_dir.name)


def _add_rna_option(parser: argparse.ArgumentParser, option: str, prop: Any) -> None:
    flag = f"--{option}"
    help_text = prop.description.replace("%", "%%")
    dest = option.replace("-", "_")
    if prop.type == "BOOLEAN":
        parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                            help=f"{help_text} (default: {'on' if prop.default else 'off'})")
    elif prop.type == "ENUM":
        choices = [item.identifier.lower() for item in prop.enum_items]
        parser.add_argument(flag, dest=dest, choices=choices, default=None,
                            help=f"{help_text} (default: {prop.default.lower()})")
    elif prop.type in {"INT", "FLOAT"}:
        parser.add_argument(flag, dest=dest, type=int if prop.type == "INT" else float, default=None,
                            metavar="N", help=f"{help_text} (default: {prop.default:g})")
    elif prop.type == "POINTER":
        parser.add_argument(flag, dest=dest, metavar="NAME", default=None, help=f"{help_text} (by name)")
    else:
        parser.add_argument(flag, dest=dest, metavar="DIR", default=None, help=help_text)


# option name → train-settings property (the Train panel's), for the --train step
TRAIN_OPTIONS = {
    "time-limit": "time_limit",
    "threads": "threads",
}

# option name → import-settings property (the Import panel's), for the --import step
IMPORT_OPTIONS = {
    "import-as": "import_as",
    "surface-opacity": "surface_opacity",
}


def build_parser(settings_type: Any, import_type: Any = None, train_type: Any = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch.py",
        description="Capture posed renders of a Blender scene into a NeRF-synthetic dataset "
        "(blender_plenox). Run as `blender -b scene.blend --python batch.py -- OPTIONS` or "
        "`python batch.py --blend scene.blend -- OPTIONS`.",
    )
    parser.add_argument("--blend", metavar="FILE", help="Blend file to open (optional inside Blender)")
    group = parser.add_argument_group("capture (the Reconstruct panel's Capture settings)")
    rna = settings_type.bl_rna.properties
    for option, name in CAPTURE_OPTIONS.items():
        _add_rna_option(group, option, rna[name])  # type: ignore[arg-type]
    pipeline = parser.add_argument_group("train and import (the Train and Import panels)")
    pipeline.add_argument("--no-capture", action="store_true",
                          help="Do not capture: --out already holds a dataset (train and/or import only)")
    pipeline.add_argument("--train", action="store_true", help="Train on the dataset after capturing")
    pipeline.add_argument("--run", metavar="DIR", help="Training run folder (default: beside --out, named run)")
    pipeline.add_argument("--preset", default=None, help="Trainer preset: tiny, fast, capture, default or quality")
    pipeline.add_argument("--device", default=None, help="Trainer device: auto, cpu, cuda or mps")
    if train_type is not None:
        rna_train = train_type.bl_rna.properties
        for option, name in TRAIN_OPTIONS.items():
            _add_rna_option(pipeline, option, rna_train[name])  # type: ignore[arg-type]
    pipeline.add_argument("--trainer-set", action="append", default=[], metavar="KEY=VALUE",
                          help="A trainer setting (trainer/config.py), repeatable")
    pipeline.add_argument("--view-dependent", action="store_true",
                          help="Train view-dependent colour (the preset's SH degree), which the imported volume "
                               "shows; default here: one colour per voxel (SH degree 0), lighter and faster, and "
                               "what the demo's comparison with the trainer's view-independent render expects")
    pipeline.add_argument("--trainer-python", metavar="FILE", help="Python with torch and the trainer")
    pipeline.add_argument("--resume", action="store_true", help="Continue the run from its checkpoint")
    pipeline.add_argument("--import", dest="import_grid", action="store_true",
                          help="Import the trained grid (or --grid), as --import-as says")
    pipeline.add_argument("--grid", metavar="FILE", help="Grid file to import (default: the run's grid.npz)")
    pipeline.add_argument("--import-cameras", metavar="DIR", nargs="?", const="", default=None,
                          help="Import the cameras of dataset DIR (ours or another tool's transforms files; "
                               "without DIR: --out's) as Blender cameras with the same projection, in a "
                               "collection named after the dataset (replacing an earlier import of it), and set "
                               "the scene's render size to theirs; lens distortion is left out with a warning. "
                               "With a DIR and no --out, nothing is captured or trained")
    pipeline.add_argument("--color-space", choices=["linear", "trainer"], default=None,
                          help="Imported colours: scene-linear (default) or the trainer's values")
    pipeline.add_argument("--save", metavar="FILE", help="Save the .blend here at the end")
    if import_type is not None:
        rna_import = import_type.bl_rna.properties
        for option, name in IMPORT_OPTIONS.items():
            _add_rna_option(pipeline, option, rna_import[name])  # type: ignore[arg-type]
    return parser


def imports_only(args: argparse.Namespace) -> bool:
    """`--import-cameras DIR`, or `--import` with `--grid FILE` or `--run DIR`, without `--out` (and no
    --train): import into the scene, capture nothing."""
    grid_import = (args.import_grid or getattr(args, "import_as", None)) and (args.grid or args.run)
    return args.out is None and bool(args.import_cameras or grid_import) and not args.train


def import_cameras(args: argparse.Namespace, bpy: Any, addon_name: str) -> int:
    """The --import-cameras step: warnings on stderr, the summary on stdout; 2 when the dataset is bad."""
    camera_import = importlib.import_module(f"{addon_name}.camera_import")
    errors = importlib.import_module(f"{addon_name}.io.dataset_cameras")
    dataset = args.import_cameras or args.out
    try:
        result = camera_import.import_dataset_cameras(bpy.context.scene, str(Path(dataset).resolve()))
    except (errors.DatasetCameraError, OSError) as err:
        print(f"error: import cameras: {err}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(note, file=sys.stderr)
    print(result.summary(), flush=True)
    return 0


def train_and_import(args: argparse.Namespace, bpy: Any, addon_name: str) -> int:
    """The --train / --import-cameras / --import / --save steps after (or instead of) the capture;
    blocks on the trainer."""
    scene = bpy.context.scene
    out = str(Path(args.out).resolve()) if args.out else None
    run = str(Path(args.run).resolve()) if args.run else str(Path(out).parent / "run") if out else None
    if args.trainer_python:
        import os

        os.environ["BLENDER_PLENOX_PYTHON"] = str(Path(args.trainer_python).resolve())
    if args.train:
        t = scene.plenox.train
        t.data_dir, t.output_dir = out, run
        if args.preset:
            t.preset = args.preset
        if args.device:
            t.device = args.device
        t.view_dependent = args.view_dependent
        for option, name in TRAIN_OPTIONS.items():
            value = getattr(args, option.replace("-", "_"), None)
            if value is not None:
                setattr(t, name, value)
        t.extra_overrides = " ".join(args.trainer_set)
        t.resume = args.resume
        t.overwrite = not args.resume
        t.import_when_done = False
        try:  # an operator that reports an error raises RuntimeError under bpy
            finished = bpy.ops.plenox.train() == {"FINISHED"}
        except RuntimeError:
            finished = False
        if not finished:
            print(f"error: train: {t.error}", file=sys.stderr)
            return 1
        print(f"trained: {t.last_grid} ({t.status})", flush=True)
    # the cameras first: the grid's import fits EEVEE's volumetrics to the active camera
    if args.import_cameras is not None and (code := import_cameras(args, bpy, addon_name)):
        return code
    import_as = getattr(args, "import_as", None)
    if args.import_grid or import_as:  # --import-as alone imports too
        if args.grid:
            grid = args.grid
        elif run is not None:
            grid = str(Path(run) / "grid.npz")
        else:
            print("error: --import: name the grid with --grid (or the run with --run)", file=sys.stderr)
            return 2
        settings = scene.plenox.import_settings
        if args.color_space:
            settings.color_space = args.color_space.upper()
        if import_as:
            settings.import_as = import_as.upper()
        if getattr(args, "surface_opacity", None) is not None:
            settings.surface_opacity = args.surface_opacity
        operator = bpy.ops.plenox.import_mesh if settings.import_as == "MESH" else bpy.ops.plenox.import_volume
        try:
            finished = operator(filepath=str(Path(grid).resolve())) == {"FINISHED"}
        except RuntimeError:
            finished = False
        if not finished:
            print(f"error: import: {scene.plenox.import_settings.status}", file=sys.stderr)
            return 2
        print(scene.plenox.import_settings.status, flush=True)
    if args.save:
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save).resolve()))
        print(f"saved {args.save}", flush=True)
    return 0


def apply_settings(args: argparse.Namespace, settings: Any, bpy: Any) -> None:
    """Copy the options given on the command line onto the scene's capture settings."""
    rna = settings.bl_rna.properties
    for option, name in CAPTURE_OPTIONS.items():
        value = getattr(args, option.replace("-", "_"))
        if value is None:
            continue
        prop = rna[name]
        if prop.type == "ENUM":
            value = value.upper()
        elif prop.type == "POINTER":
            found = bpy.data.collections.get(value)
            if found is None:
                raise ValueError(f"--{option}: no collection named {value!r}")
            value = found
        elif prop.type == "STRING" and prop.subtype == "DIR_PATH":
            value = str(Path(value).resolve())
        setattr(settings, name, value)
    if args.out is None:
        raise ValueError("--out: the dataset folder is required")


def check_ranges(args: argparse.Namespace, options: dict[str, str], settings_type: Any) -> None:
    """Refuses, before anything is rendered, numbers outside the range of the panel field they set
    (Blender would clamp them silently)."""
    rna = settings_type.bl_rna.properties
    for option, name in options.items():
        value = getattr(args, option.replace("-", "_"), None)
        prop = rna[name]
        if value is None or prop.type not in {"INT", "FLOAT"}:
            continue
        if value < prop.hard_min:
            raise ValueError(f"--{option}: must be {prop.hard_min:g} or more, got {value:g}")
        if value > prop.hard_max:
            raise ValueError(f"--{option}: must be {prop.hard_max:g} or less, got {value:g}")


def main(argv: list[str] | None = None) -> int:
    argv = script_argv(sys.argv if argv is None else argv)
    import bpy

    addon = import_addon()
    addon.register()  # the options are read from the registered settings' RNA
    from_props = importlib.import_module(f"{addon.__name__}.properties")
    parser = build_parser(from_props.PlenoxCaptureSettings, from_props.PlenoxImportSettings,
                          from_props.PlenoxTrainSettings)
    args = parser.parse_args(argv)  # exits 0 for --help, 2 for bad options

    session_mod = importlib.import_module(f"{addon.__name__}.capture.session")
    targets = importlib.import_module(f"{addon.__name__}.capture.targets")
    try:
        for options, settings_type in ((CAPTURE_OPTIONS, from_props.PlenoxCaptureSettings),
                                       (TRAIN_OPTIONS, from_props.PlenoxTrainSettings),
                                       (IMPORT_OPTIONS, from_props.PlenoxImportSettings)):
            check_ranges(args, options, settings_type)
        if args.blend:
            if not Path(args.blend).is_file():
                raise ValueError(f"{args.blend}: no such blend file")
            bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
        settings = from_props.capture_settings(bpy.context)
        if not imports_only(args):
            apply_settings(args, settings, bpy)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    if args.no_capture or imports_only(args):
        return train_and_import(args, bpy, addon.__name__)
    start = time.monotonic()

    def report(session: Any, path: str) -> None:
        print(f"[{session.index}/{session.total}] {path} ({time.monotonic() - start:.1f} s)", flush=True)

    try:
        session = session_mod.run_blocking(bpy.context, settings, report)
    except targets.CaptureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001  # any render failure becomes the documented exit code
        print(f"error: capture: {err}", file=sys.stderr)
        return 1
    print(session.summary(), flush=True)
    return train_and_import(args, bpy, addon.__name__)


if __name__ == "__main__":
    sys.exit(main())
