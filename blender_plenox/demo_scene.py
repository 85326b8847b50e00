"""The built-in demo scene and the demo's comparison of the imported volume.

    python -m blender_plenox.demo_scene build OUT.blend
    python -m blender_plenox.demo_scene compare --blend demo.blend --data DATASET --run RUN --out DIR
        [--views N | --view I ...] [--turntable FRAMES] [--turntable-engine CYCLES|EEVEE]

`build` makes a small still life (three coloured objects on a base, lit, Standard view transform).
`compare` renders the imported volume with Cycles and EEVEE through test cameras of the dataset
(rebuilt with the dataset's intrinsics and a clip range from the run's scene box, utils/clip_range.py),
at the dataset's resolution, and writes comparison.png (one row per view: ground truth | trainer full |
trainer DC | Cycles | EEVEE, PSNR against ground truth under each image), comparison.json (per view and
mean PSNRs, the EEVEE volumetrics used) and, with --turntable, turntable.mp4 (H.264) of the volume.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .compat import (
    eevee_engine_id,
    node_tree_of,
    read_eevee_volumetrics,
    set_still_image_format,
    set_video_format,
    use_ray_marched_volumes,
    write_eevee_volumetrics,
)
from .io.grid_reader import read_grid
from .io.vdb_arrays import linear_to_srgb, srgb_to_linear
from .utils.clip_range import clip_range, frame_near_far, view_depth_range
from .utils.compare_sheet import psnr_caption
from .volume.eevee_settings import apply_sharp_volumetrics
from .volume.volume_object import TAG

COLUMNS = ("ground truth", "trainer full", "trainer DC", "Cycles", "EEVEE")


def build_scene() -> Any:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene: Any = bpy.context.scene
    scene.name = "PlenoxDemo"

    def material(name: str, rgb: tuple[float, float, float], rough: float = 0.5) -> Any:
        mat: Any = bpy.data.materials.new(name)
        bsdf = node_tree_of(mat).nodes.get("Principled BSDF")
        bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
        bsdf.inputs["Roughness"].default_value = rough
        return mat

    def add(obj_op: Any, mat: Any, **kw: Any) -> Any:
        obj_op(**kw)
        obj: Any = bpy.context.active_object
        obj.data.materials.append(mat)
        return obj

    add(
        bpy.ops.mesh.primitive_cylinder_add,
        material("Base", (0.8, 0.75, 0.6)),
        radius=1.0,
        depth=0.2,
        location=(0, 0, -0.1),
    )
    add(
        bpy.ops.mesh.primitive_cube_add,
        material("Red", (0.8, 0.1, 0.05)),
        size=0.7,
        location=(-0.4, -0.25, 0.35),
        rotation=(0, 0, 0.5),
    )
    sphere = add(
        bpy.ops.mesh.primitive_uv_sphere_add,
        material("Green", (0.1, 0.6, 0.15), 0.3),
        radius=0.35,
        location=(0.4, -0.2, 0.35),
        segments=48,
        ring_count=24,
    )
    bpy.ops.object.shade_smooth()
    add(
        bpy.ops.mesh.primitive_cone_add,
        material("Blue", (0.1, 0.2, 0.8)),
        radius1=0.3,
        depth=0.8,
        location=(0.05, 0.45, 0.4),
    )
    sphere.select_set(False)

    sun: Any = bpy.data.lights.new("Sun", "SUN")
    sun.energy = 3.0
    sun_obj = bpy.data.objects.new("Sun", sun)
    sun_obj.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun_obj)
    world: Any = bpy.data.worlds.new("World")
    scene.world = world
    background = node_tree_of(world).nodes["Background"]
    background.inputs["Color"].default_value = (0.6, 0.6, 0.6, 1.0)
    background.inputs["Strength"].default_value = 0.6
    # The trainer learns display values; Standard keeps them a plain sRGB encoding of the render.
    scene.view_settings.view_transform = "Standard"
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    return scene


def camera_from_frame(
    scene: Any, meta: dict[str, Any], frame: dict[str, Any], box: Any = None
) -> Any:
    """A Blender camera reproducing a dataset view (contract 1: fl_x, cx, cy, w, h; camera-to-world).

    Its clip range is the dataset camera's own `near` / `far` where the file gives them, else derived
    from `box` (the run's scene box; default: the dataset's `aabb`): Blender's default clip start of
    0.1 m would hide a small object seen from close by.
    """
    w = int(frame.get("w", meta["w"]))
    h = int(frame.get("h", meta["h"]))
    fl_x = frame.get("fl_x", meta.get("fl_x"))
    if fl_x is None:  # NeRF-synthetic files without the extras: the field of view only
        fl_x = 0.5 * w / math.tan(0.5 * float(frame.get("camera_angle_x", meta["camera_angle_x"])))
    fl_x = float(fl_x)
    cx = float(frame.get("cx", meta.get("cx", w / 2)))
    cy = float(frame.get("cy", meta.get("cy", h / 2)))
    cam = bpy.data.cameras.new("CompareCam")
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = 36.0
    cam.lens = fl_x * 36.0 / w
    cam.shift_x = (w / 2 - cx) / max(w, h)
    cam.shift_y = (cy - h / 2) / max(w, h)
    if box is None:
        box = meta.get("aabb")
    cam.clip_start, cam.clip_end = clip_range(frame["transform_matrix"], box, *frame_near_far(meta, frame))
    obj = bpy.data.objects.new("CompareCam", cam)
    scene.collection.objects.link(obj)
    from mathutils import Matrix

    obj.matrix_world = Matrix(frame["transform_matrix"])
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    return obj


@contextmanager
def volume_only(scene: Any, volume_name: str, background=(1.0, 1.0, 1.0), raw: bool = False) -> Iterator[None]:
    """Only the volume (other objects hidden) over a flat world colour, in the trainer's display
    encoding (Standard; Raw for linear values); the scene's world and visibility come back after."""
    hidden = []
    for obj in scene.objects:
        unwanted = obj.type not in {"VOLUME", "CAMERA"} or (obj.type == "VOLUME" and obj.name != volume_name)
        if unwanted and not obj.hide_render:
            hidden.append(obj)
            obj.hide_render = True
    world: Any = bpy.data.worlds.new("CompareWorld")
    world_background = node_tree_of(world).nodes["Background"]
    world_background.inputs["Color"].default_value = (*background, 1.0)
    world_background.inputs["Strength"].default_value = 1.0
    old_world, scene.world = scene.world, world
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Raw" if raw else "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    try:
        yield
    finally:
        for obj in hidden:
            obj.hide_render = False
        scene.world = old_world


def set_cycles_volume_render(scene: Any, samples: int) -> None:
    """Cycles on the CPU, fine ray marching, samples spread evenly over each pixel's area (a box filter),
    as the trainer's renders average 2x2 rays over the pixel (eval_supersample) and as the images do,
    so both sides measure the same pixel integral. Cycles' box filter covers the whole pixel whatever
    its width (checked on 5.0: an edge pixel shows its coverage at width 0.01 and 1.0 alike)."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    use_ray_marched_volumes(scene.cycles)
    scene.cycles.volume_step_rate = 0.25
    scene.cycles.volume_max_steps = 2048
    scene.cycles.max_bounces = 0
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 1.0


def _write_still(scene: Any, path: str) -> np.ndarray:
    set_still_image_format(scene.render.image_settings, "PNG")
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "16"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return read_rgb(path)


def render_volume_view(
    scene: Any,
    volume_name: str,
    path: str,
    raw: bool,
    background=(1.0, 1.0, 1.0),
    samples: int = 16,
) -> np.ndarray:
    """Cycles render of only the volume (other objects hidden), over a flat background; RGB in [0, 1]."""
    with volume_only(scene, volume_name, background, raw):
        set_cycles_volume_render(scene, samples)
        return _write_still(scene, path)


def render_eevee_view(
    scene: Any,
    volume_name: str,
    path: str,
    voxel_box: Any,
    voxel_size: float,
    raw: bool = False,
    background=(1.0, 1.0, 1.0),
    samples: int = 16,
) -> tuple[np.ndarray, str]:
    """EEVEE render of only the volume, with the volumetrics the import sets for this camera
    (apply_sharp_volumetrics, untouched otherwise); returns RGB in [0, 1] and those settings."""
    with volume_only(scene, volume_name, background, raw):
        scene.render.engine = eevee_engine_id()
        scene.eevee.taa_render_samples = samples  # EEVEE jitters its froxels over the samples
        settings = apply_sharp_volumetrics(scene, voxel_box, voxel_size).describe()
        return _write_still(scene, path), settings


def read_rgb(path: str, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    import imageio.v3 as iio

    img = iio.imread(path).astype(np.float64)
    img /= 65535.0 if img.max() > 255 else 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[-1] == 4:  # over the background in linear light, as Blender renders a film over a world
        a = img[..., 3:]
        mixed = srgb_to_linear(img[..., :3]) * a + srgb_to_linear(np.asarray(background, np.float64)) * (1 - a)
        img = linear_to_srgb(mixed).astype(np.float64)
    return img[..., :3]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def trainer_render(python: str, run: str, data: str, out_dir: str, dc_only: bool) -> list[str]:
    """`python -m trainer render` of the test views (full SH colour, or `--dc-only`); the image paths."""
    from .utils.trainer_process import child_env

    cmd = [python, "-m", "trainer", "render", "--run", run, "--data", data, "--views", "test", "--out", out_dir]
    if dc_only:
        cmd.append("--dc-only")
    subprocess.run(cmd, check=True, env=child_env())
    return sorted(str(p) for p in Path(out_dir).glob("test_*.png"))


def trainer_dc_render(python: str, run: str, data: str, out_dir: str) -> list[str]:
    """`python -m trainer render --dc-only` for the test views; returns the image paths."""
    return trainer_render(python, run, data, out_dir, dc_only=True)


def pick_views(count: int, wanted: int | Sequence[int]) -> list[int]:
    """`wanted` test views: a list of indices as given, or that many spread evenly over the split."""
    if isinstance(wanted, int):
        n = max(1, min(wanted, count))
        return sorted({round(i * (count - 1) / max(1, n - 1)) for i in range(n)}) if n > 1 else [0]
    views = [int(v) for v in wanted]
    bad = [v for v in views if not 0 <= v < count]
    if bad:
        raise ValueError(f"test views {bad} out of range: the dataset has {count}")
    return views


def _grid_for(scene: Any, volume_name: str, run: str) -> Any:
    """The grid the volume shows (its tag), else the run's: its box is the run's scene box."""
    obj = scene.objects.get(volume_name)
    path = str(obj.get(TAG, "")) if obj is not None else ""
    if not path or not os.path.isfile(path):
        path = os.path.join(run, "grid.npz")
    return read_grid(path)


def compare(
    blend: str | None,
    data: str,
    run: str,
    out: str,
    python: str,
    views: int | Sequence[int] = 4,
    volume_name: str = "Plenoxels",
    raw: bool = False,
    eevee: bool = True,
    samples: int = 16,
    turntable_frames: int = 0,
    turntable_engine: str = "CYCLES",
    turntable_samples: int = 4,
) -> dict[str, float]:
    """Renders test views of the imported volume with Cycles (and EEVEE) through the dataset's own
    cameras, beside the ground truth and the trainer's full and view-independent renders; writes
    comparison.png (one row per view, PSNR vs ground truth under each image), comparison.json (per
    view and mean PSNRs) and, with turntable_frames, turntable.mp4. Returns the mean PSNRs.
    raw: for an sRGB grid imported with its trainer values, render with the Raw view transform, so that
    the pixels are those values; a linear grid's values are scene-linear, so it is ignored there."""
    if blend:
        bpy.ops.wm.open_mainfile(filepath=blend)
    scene: Any = bpy.context.scene
    os.makedirs(out, exist_ok=True)
    meta = json.loads(Path(data, "transforms_test.json").read_text())
    grid = _grid_for(scene, volume_name, run)
    raw = raw and grid.color_space == "srgb"
    voxel_box, voxel_size = voxel_box_of(grid), float(min(grid.voxel_size))
    full_imgs = trainer_render(python, run, data, os.path.join(out, "trainer_full"), dc_only=False)
    dc_imgs = trainer_render(python, run, data, os.path.join(out, "trainer_dc"), dc_only=True)
    chosen = pick_views(min(len(meta["frames"]), len(full_imgs)), views)
    per_view: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for view in chosen:
        frame = meta["frames"][view]
        camera_from_frame(scene, meta, frame, grid.aabb.tolist())
        gt_path = Path(data, frame["file_path"])
        gt_path = gt_path if gt_path.suffix else gt_path.with_suffix(".png")
        gt = read_rgb(str(gt_path))
        full, dc = read_rgb(full_imgs[view]), read_rgb(dc_imgs[view])
        cycles_path = os.path.join(out, f"cycles_{view:03d}.png")
        cycles = render_volume_view(scene, volume_name, cycles_path, raw=raw, samples=samples)
        figures: dict[str, Any] = {
            "view": view,
            "trainer_full_vs_ground_truth_psnr": psnr(full, gt),
            "trainer_dc_vs_ground_truth_psnr": psnr(dc, gt),
            "cycles_vs_ground_truth_psnr": psnr(cycles, gt),
            "cycles_vs_trainer_full_psnr": psnr(cycles, full),
            "cycles_vs_trainer_dc_psnr": psnr(cycles, dc),
        }
        paths: list[str | None] = [str(gt_path), full_imgs[view], dc_imgs[view], cycles_path, None]
        if eevee:
            eevee_path = os.path.join(out, f"eevee_{view:03d}.png")
            img, settings = render_eevee_view(scene, volume_name, eevee_path, voxel_box, voxel_size, raw, samples=samples)
            figures.update(eevee_vs_ground_truth_psnr=psnr(img, gt), eevee_vs_cycles_psnr=psnr(img, cycles),
                           eevee_volumetrics=settings)
            paths[4] = eevee_path
        per_view.append(figures)
        vs_gt = [None, "trainer_full", "trainer_dc", "cycles", "eevee"]
        rows.append({
            "label": f"view {view}",
            "images": paths,
            "captions": [psnr_caption(figures.get(f"{k}_vs_ground_truth_psnr")) if k else "" for k in vs_gt],
        })
    means = {k: float(np.mean([f[k] for f in per_view])) for k in per_view[0] if k.endswith("_psnr")}
    spec_path = os.path.join(out, "comparison_sheet.json")
    Path(spec_path).write_text(json.dumps({"columns": list(COLUMNS), "rows": rows}, indent=2))
    # Blender's Python has no font renderer: the trainer's Python (with Pillow) draws the sheet
    subprocess.run([python, compare_sheet_script(), spec_path, os.path.join(out, "comparison.png")], check=True)
    report: dict[str, Any] = {"mean": means, "views": per_view, "samples": samples}
    if turntable_frames > 0:
        video = render_turntable(scene, volume_name, os.path.join(out, "turntable.mp4"), voxel_box, voxel_size,
                                 turntable_frames, (int(meta.get("w", 0)), int(meta.get("h", 0))),
                                 engine=turntable_engine, samples=turntable_samples, raw=raw)
        report["turntable"] = video
    Path(out, "comparison.json").write_text(json.dumps(report, indent=2))
    return means


def compare_sheet_script() -> str:
    from .utils import compare_sheet

    return str(Path(compare_sheet.__file__).resolve())


def voxel_box_of(grid: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The world box of the grid's active voxels (the import's, for EEVEE's depth range)."""
    from .volume.importer import _voxel_box

    return _voxel_box(grid)


def orbit_poses(box: Any, frames: int, fov_x: float, aspect: float, elevation_deg: float = 30.0) -> list[np.ndarray]:
    """Camera-to-world matrices circling the box's centre at `elevation_deg`, far enough that its
    bounding sphere fills the narrower field of view."""
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
    fov = min(fov_x, 2 * math.atan(math.tan(fov_x / 2) / max(aspect, 1e-6)))
    distance = 1.05 * radius / math.sin(fov / 2)
    el = math.radians(elevation_deg)
    poses = []
    for i in range(frames):
        az = 2 * math.pi * i / frames
        eye = centre + distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        back = (eye - centre) / np.linalg.norm(eye - centre)
        right = np.cross([0.0, 0.0, 1.0], back)
        right /= np.linalg.norm(right)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
        poses.append(m)
    return poses


def render_turntable(
    scene: Any,
    volume_name: str,
    path: str,
    voxel_box: Any,
    voxel_size: float,
    frames: int = 48,
    size: tuple[int, int] = (0, 0),
    engine: str = "CYCLES",
    samples: int = 16,
    fps: int = 24,
    raw: bool = False,
) -> str:
    """An H.264 MP4 of a camera circling the volume (Cycles, or EEVEE with the import's volumetrics
    for the whole orbit's depth range); returns the file's path. `size` (0: the scene's) is rounded
    up to even numbers, as H.264's 4:2:0 chroma needs."""
    from mathutils import Matrix

    from .utils.eevee_volumetrics import Volumetrics, choose, merge

    w = size[0] or scene.render.resolution_x
    h = size[1] or scene.render.resolution_y
    w, h = w + w % 2, h + h % 2
    cam = bpy.data.cameras.new("TurntableCam")
    cam.sensor_fit = "HORIZONTAL"
    poses = orbit_poses(voxel_box, frames, cam.angle_x, w / h)
    ranges = [clip_range(p, voxel_box) for p in poses]
    cam.clip_start, cam.clip_end = min(r[0] for r in ranges), max(r[1] for r in ranges)
    obj = bpy.data.objects.new("TurntableCam", cam)
    scene.collection.objects.link(obj)
    scene.camera = obj
    for i, pose in enumerate(poses):
        obj.matrix_world = Matrix(pose.tolist())
        obj.keyframe_insert("location", frame=i + 1)
        obj.keyframe_insert("rotation_euler", frame=i + 1)
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    scene.frame_start, scene.frame_end = 1, frames
    r.fps, r.fps_base = fps, 1.0
    set_video_format(r.image_settings)
    r.ffmpeg.format = "MPEG4"
    r.ffmpeg.codec = "H264"
    r.ffmpeg.constant_rate_factor = "HIGH"
    r.use_file_extension = True
    r.filepath = path
    with volume_only(scene, volume_name, raw=raw):
        if engine == "EEVEE":
            r.engine = eevee_engine_id()
            scene.eevee.taa_render_samples = samples
            # one froxel range for the whole orbit: the nearest and farthest the box gets
            depths = [view_depth_range(p, voxel_box) for p in poses]
            near, far = max(0.0, min(d[0] for d in depths)), max(d[1] for d in depths)
            chosen = merge(choose(voxel_size, (near, far), (w, h)), Volumetrics(*read_eevee_volumetrics(scene.eevee)))
            write_eevee_volumetrics(scene.eevee, chosen.tile, chosen.samples, chosen.start, chosen.end)
        else:
            set_cycles_volume_render(scene, samples)
        bpy.ops.render.render(animation=True)
    written = path if os.path.isfile(path) else bpy.path.abspath(r.frame_path(frame=1))
    if written != path and os.path.isfile(written):
        os.replace(written, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_plenox.demo_scene")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the demo scene and save it")
    b.add_argument("blend")
    c = sub.add_parser(
        "compare", help="test views: ground truth | trainer full | trainer DC | Cycles | EEVEE, with PSNRs"
    )
    c.add_argument("--blend", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--run", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--python", default=os.environ.get("BLENDER_PLENOX_PYTHON", sys.executable),
                   help="the trainer's Python (torch, Pillow)")
    c.add_argument("--views", type=int, default=4, help="test views, spread over the split (default 4)")
    c.add_argument("--view", type=int, action="append", help="this test view (repeatable; instead of --views)")
    c.add_argument("--samples", type=int, default=16, help="Cycles and EEVEE samples per pixel")
    c.add_argument("--no-eevee", action="store_true", help="leave out the EEVEE column")
    c.add_argument("--turntable", type=int, default=0, metavar="FRAMES",
                   help="also render turntable.mp4 with this many frames (default: none)")
    c.add_argument("--turntable-engine", choices=["CYCLES", "EEVEE"], default="CYCLES")
    c.add_argument("--turntable-samples", type=int, default=4,
                   help="samples per pixel of the turntable (default 4: a preview, not a measurement)")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build_scene()
        os.makedirs(os.path.dirname(os.path.abspath(args.blend)), exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.blend))
        print(f"saved {args.blend}")
        return 0
    out = os.path.abspath(args.out)
    figures = compare(
        os.path.abspath(args.blend),
        os.path.abspath(args.data),
        os.path.abspath(args.run),
        out,
        args.python,
        args.view or args.views,
        eevee=not args.no_eevee,
        samples=args.samples,
        turntable_frames=args.turntable,
        turntable_engine=args.turntable_engine,
        turntable_samples=args.turntable_samples,
    )
    for key, value in figures.items():
        print(f"{key}: {value:.2f} dB")
    print(f"wrote {os.path.join(out, 'comparison.png')} and comparison.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
