"""Seconds per view for a capture with the panel's default preset (Cycles CPU, 32 samples, denoising),
on a small lit scene of a few shaded objects.

    .venv-blender/bin/python benchmarks/bench_capture.py [--views 100] [--size 200] [--samples 32] [--smoke]

Prints one line per setting and the figures; timings include writing the PNGs and the transforms files.
--smoke captures 3 views of 16x16 px with 2 samples in a few seconds, so that the tests can check that
this script still runs against the current API (tests/blender/test_benchmarks_smoke.py); its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bpy

import blender_plenox
from blender_plenox.capture.session import run_blocking


def build_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, location=(0.3, 0.0, 0.5))
    bpy.ops.object.shade_smooth()
    bpy.ops.mesh.primitive_cube_add(size=0.7, location=(-0.45, 0.2, 0.35))
    bpy.ops.mesh.primitive_torus_add(location=(0.0, -0.5, 0.15), major_radius=0.35, minor_radius=0.12)
    bpy.ops.mesh.primitive_plane_add(size=2.5)
    for i, obj in enumerate(o for o in bpy.data.objects if o.type == "MESH"):
        mat = bpy.data.materials.new(f"m{i}")
        mat.diffuse_color = (0.2 + 0.2 * i, 0.8 - 0.15 * i, 0.3 + 0.1 * i, 1.0)
        obj.data.materials.append(mat)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (0.6, 0.2, 0.8)
    bpy.context.scene.collection.objects.link(sun)
    bpy.context.scene.world = bpy.data.worlds.new("World")
    bpy.context.scene.world.color = (0.3, 0.3, 0.35)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--samples", type=int, default=None, help="default: the panel's default")
    parser.add_argument("--no-denoise", action="store_true", help="turn the panel's denoising off")
    parser.add_argument("--smoke", action="store_true", help="3 tiny views, to check that the script runs")
    args = parser.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
    if args.smoke:
        args.views, args.size, args.samples = 3, 16, 2

    build_scene()
    blender_plenox.register()
    s = bpy.context.scene.plenox.capture
    s.rig_views, s.resolution_x, s.resolution_y = args.views, args.size, args.size
    if args.samples is not None:
        s.samples = args.samples
    s.use_denoising = not args.no_denoise
    times: list[float] = []
    last = time.perf_counter()

    def tick(_session: object, _path: str) -> None:
        nonlocal last
        now = time.perf_counter()
        times.append(now - last)
        last = now

    with tempfile.TemporaryDirectory() as tmp:
        s.output_dir = str(Path(tmp) / "ds")
        start = time.perf_counter()
        last = start
        run_blocking(bpy.context, s, tick)
        total = time.perf_counter() - start
    per_view = sorted(times)
    print(f"capture: {args.views} views at {args.size}x{args.size}, Cycles CPU, {s.samples} samples, "
          f"denoise={s.use_denoising}, threads={bpy.context.scene.render.threads}")
    print(f"total {total:.1f} s (setup included), {total / args.views:.3f} s/view; per view median "
          f"{per_view[len(per_view) // 2]:.3f} s, first {times[0]:.3f} s, max {per_view[-1]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
