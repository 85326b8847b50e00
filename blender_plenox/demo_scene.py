"""The built-in demo scene and the demo's comparison image.

    python -m blender_plenox.demo_scene build OUT.blend
    python -m blender_plenox.demo_scene compare --blend demo.blend --data DATASET --run RUN --out DIR

`build` makes a small still life (three coloured objects on a base, lit, Standard view transform).
`compare` renders the imported volume with Cycles from a test camera of the dataset and writes
side_by_side.png (ground truth | trainer's view-independent render | Cycles render of the volume)
and comparison.json with the PSNRs between them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .compat import node_tree_of, set_still_image_format, use_ray_marched_volumes


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


def camera_from_frame(scene: Any, meta: dict[str, Any], frame: dict[str, Any]) -> Any:
    """A Blender camera reproducing a dataset view (contract 1: fl_x, cx, cy, w, h; camera-to-world)."""
    w = int(frame.get("w", meta["w"]))
    h = int(frame.get("h", meta["h"]))
    fl_x = float(frame.get("fl_x", meta.get("fl_x", 0.5 * w / math.tan(0.5 * meta["camera_angle_x"]))))
    cx = float(frame.get("cx", meta.get("cx", w / 2)))
    cy = float(frame.get("cy", meta.get("cy", h / 2)))
    cam = bpy.data.cameras.new("CompareCam")
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = 36.0
    cam.lens = fl_x * 36.0 / w
    cam.shift_x = (w / 2 - cx) / max(w, h)
    cam.shift_y = (cy - h / 2) / max(w, h)
    obj = bpy.data.objects.new("CompareCam", cam)
    scene.collection.objects.link(obj)
    from mathutils import Matrix

    obj.matrix_world = Matrix(frame["transform_matrix"])
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    return obj


def render_volume_view(
    scene: Any,
    volume_name: str,
    path: str,
    raw: bool,
    background=(1.0, 1.0, 1.0),
    samples: int = 16,
) -> np.ndarray:
    """Cycles render of only the volume (other objects hidden), over a flat background; RGB in [0, 1]."""
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
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    use_ray_marched_volumes(scene.cycles)
    scene.cycles.volume_step_rate = 0.25
    scene.cycles.volume_max_steps = 2048
    scene.cycles.max_bounces = 0
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Raw" if raw else "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    set_still_image_format(scene.render.image_settings, "PNG")
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "16"
    scene.render.filepath = path
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        for obj in hidden:
            obj.hide_render = False
        scene.world = old_world
    return read_rgb(path)


def read_rgb(path: str, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    import imageio.v3 as iio

    img = iio.imread(path).astype(np.float64)
    img /= 65535.0 if img.max() > 255 else 255.0
    if img.shape[-1] == 4:
        img = img[..., :3] * img[..., 3:] + np.asarray(background) * (1 - img[..., 3:])
    return img[..., :3]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def trainer_dc_render(python: str, run: str, data: str, out_dir: str) -> list[str]:
    """`python -m trainer render --dc-only` for the test views; returns the image paths."""
    from .utils.trainer_process import child_env

    cmd = [
        python,
        "-m",
        "trainer",
        "render",
        "--run",
        run,
        "--data",
        data,
        "--views",
        "test",
        "--dc-only",
        "--out",
        out_dir,
    ]
    subprocess.run(cmd, check=True, env=child_env())
    return sorted(str(p) for p in Path(out_dir).glob("test_*.png"))


def compare(
    blend: str | None,
    data: str,
    run: str,
    out: str,
    python: str,
    view: int = 0,
    volume_name: str = "Plenoxels",
    raw: bool = False,
) -> dict[str, float]:
    """Writes side_by_side.png and comparison.json; returns the PSNRs."""
    if blend:
        bpy.ops.wm.open_mainfile(filepath=blend)
    scene: Any = bpy.context.scene
    os.makedirs(out, exist_ok=True)
    meta = json.loads(Path(data, "transforms_test.json").read_text())
    frame = meta["frames"][view]
    camera_from_frame(scene, meta, frame)
    cycles = render_volume_view(scene, volume_name, os.path.join(out, "cycles_volume.png"), raw=raw)
    gt_path = Path(data, frame["file_path"])
    gt = read_rgb(str(gt_path if gt_path.suffix else gt_path.with_suffix(".png")))
    trainer_imgs = trainer_dc_render(python, run, data, os.path.join(out, "trainer_dc"))
    trainer = read_rgb(trainer_imgs[view])
    figures = {
        "cycles_vs_trainer_dc_psnr": psnr(cycles, trainer),
        "cycles_vs_ground_truth_psnr": psnr(cycles, gt),
        "trainer_dc_vs_ground_truth_psnr": psnr(trainer, gt),
    }
    import imageio.v3 as iio

    strip = np.concatenate([gt, trainer, cycles], axis=1)
    iio.imwrite(os.path.join(out, "side_by_side.png"), (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8))
    Path(out, "comparison.json").write_text(json.dumps(figures, indent=2))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_plenox.demo_scene")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the demo scene and save it")
    b.add_argument("blend")
    c = sub.add_parser("compare", help="ground truth | trainer DC render | Cycles render of the volume")
    c.add_argument("--blend", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--run", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--python", default=os.environ.get("BLENDER_PLENOX_PYTHON", sys.executable))
    c.add_argument("--view", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build_scene()
        os.makedirs(os.path.dirname(os.path.abspath(args.blend)), exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.blend))
        print(f"saved {args.blend}")
        return 0
    figures = compare(
        os.path.abspath(args.blend),
        os.path.abspath(args.data),
        os.path.abspath(args.run),
        os.path.abspath(args.out),
        args.python,
        args.view,
    )
    for key, value in figures.items():
        print(f"{key}: {value:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
