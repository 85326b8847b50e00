"""Import as Mesh on a trained scene: how far the surface mesh lies from the original objects, how
long the import takes, and how a Cycles render of the mesh compares with the ground truth.

    .venv-blender/bin/python benchmarks/bench_mesh.py --blend SCENE.blend --grid RUN/grid.npz \
        [--data DATASET] [--views 3] [--opacity 0.5 0.3 0.7] [--view-independent] [--keep-hidden] [--volume] [--smoke]

SCENE.blend holds the original objects (e.g. `python -m blender_plenox.demo_scene build`; scripts/demo.sh
trains on it). Every mesh object there counts as the original surface. Per opacity it prints the
import time, the mesh's size and, in voxels of the grid:
- mesh → scene: the distance from each mesh vertex to the nearest original surface (Blender's
  BVHTree over the objects' evaluated triangles in world space): mean, median, 90th percentile;
- scene → mesh: the distance from points sampled uniformly over the original surfaces (by area) to
  the mesh: mean; this counts surfaces no camera saw (a base's underside), so it is an upper bound;
  and the same over the samples not buried in the objects' union (not inside another object nor on
  a face two objects share, such as a box's bottom on its base), which a closed mesh cannot have.
With --data: the same mesh → scene figures over the vertices some camera of the dataset sees (in its image, not
behind the mesh itself), which leaves out a trained shell's inner walls that no camera sees; and the
PSNR of Cycles renders of the mesh (emission of its colours, Standard view transform, white world as
the trainer's background) against the dataset's first --views test images; --volume also renders the
imported Volume the same way, for comparison.
--smoke: a sphere object and a grid made from its distance field (no training), a second or two, so
that tests/blender/test_benchmarks_smoke.py can check this script still runs; its figures mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy
from mathutils.bvhtree import BVHTree

from blender_plenox.compat import node_tree_of, set_still_image_format
from blender_plenox.demo_scene import camera_from_frame, psnr, read_rgb
from blender_plenox.io.field_sampling import density_for_opacity
from blender_plenox.io.grid_reader import SH_C0, PlenoxGrid, read_grid, write_grid
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.mesh_importer import import_grid_as_mesh, vertex_arrays

SCENE_SAMPLES = 200_000  # points sampled over the original surfaces


def world_triangles(objects: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3), triangles (T, 3)) of the objects' evaluated meshes, in world space, joined."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts, tris, base = [], [], 0
    for obj in objects:
        ev = obj.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3) @ np.array(ev.matrix_world)[:3, :3].T + np.array(ev.matrix_world)[:3, 3]
        t = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", t)
        verts.append(co)
        tris.append(t.reshape(-1, 3) + base)
        base += len(co)
        ev.to_mesh_clear()
    return np.concatenate(verts), np.concatenate(tris)


def bvh(verts: np.ndarray, tris: np.ndarray) -> BVHTree:
    return BVHTree.FromPolygons(verts.tolist(), tris.tolist())


def nearest_distances(tree: BVHTree, points: np.ndarray) -> np.ndarray:
    # BVHTree answers one point per call (C inside); a benchmark can afford the Python loop.
    return np.array([tree.find_nearest(p)[3] for p in points.tolist()], np.float64)


def sample_surface(verts: np.ndarray, tris: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points uniformly distributed by area over the triangles."""
    rng = np.random.default_rng(seed)
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    pick = rng.choice(len(tris), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    return a[pick] + u[:, None] * (b[pick] - a[pick]) + v[:, None] * (c[pick] - a[pick])


def buried(points: np.ndarray, objects: list[Any], voxel: float) -> np.ndarray:
    """Which points (sampled over the objects' surfaces) lie inside another object or on a face two
    objects share (a box's bottom on the base it stands on): surfaces of the objects' union's inside,
    which no camera sees and a closed mesh of the union must not have. Inside: on the far side of the
    nearest face (right for convex objects, as the demo's are); on: within a hundredth of a voxel."""
    trees = [bvh(*world_triangles([o])) for o in objects]
    on = np.zeros(len(points), np.int64)
    inside = np.zeros(len(points), bool)
    for tree in trees:
        for i, p in enumerate(points.tolist()):
            loc, normal, _, dist = tree.find_nearest(p)
            if dist < 0.01 * voxel:
                on[i] += 1
            elif np.dot(np.subtract(p, loc), normal) < 0.0:
                inside[i] = True
    return inside | (on >= 2)


def seen_by_cameras(points: np.ndarray, tree: BVHTree, data: str, voxel: float) -> np.ndarray:
    """Which points some camera of the dataset (train or test) sees: inside its image and the first
    hit of the ray from it towards the point (on the mesh `tree`) within a voxel of the point."""
    seen = np.zeros(len(points), bool)
    for split in ("train", "test"):
        meta = json.loads(Path(data, f"transforms_{split}.json").read_text())
        for frame in meta["frames"]:
            _mark_seen(seen, points, tree, meta, frame, voxel)
    return seen


def _mark_seen(seen: np.ndarray, points: np.ndarray, tree: BVHTree, meta: dict[str, Any], frame: dict[str, Any],
           voxel: float) -> None:
    c2w = np.array(frame["transform_matrix"], np.float64)
    w, h = float(frame.get("w", meta["w"])), float(frame.get("h", meta["h"]))
    fx, fy = float(frame.get("fl_x", meta["fl_x"])), float(frame.get("fl_y", meta.get("fl_y", meta["fl_x"])))
    cx, cy = float(frame.get("cx", meta.get("cx", w / 2))), float(frame.get("cy", meta.get("cy", h / 2)))
    local = (points - c2w[:3, 3]) @ c2w[:3, :3]  # camera axes: looks down −z, +y up
    depth = -local[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = fx * local[:, 0] / depth + cx, -fy * local[:, 1] / depth + cy
    todo = np.flatnonzero(~seen & (depth > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h))
    origin = c2w[:3, 3].tolist()
    for i in todo.tolist():
        ray = points[i] - c2w[:3, 3]
        length = float(np.linalg.norm(ray))
        hit = tree.ray_cast(origin, (ray / length).tolist(), length + voxel)
        seen[i] = hit[0] is None or hit[3] >= length - voxel


def render_only(scene: Any, keep: Any, path: str, samples: int) -> np.ndarray:
    """Cycles render of the object `keep` alone over a white world, Standard view transform."""
    hidden = [o for o in scene.objects if o is not keep and o.type != "CAMERA" and not o.hide_render]
    for o in hidden:
        o.hide_render = True
    world = bpy.data.worlds.new("BenchWorld")
    bg = node_tree_of(world).nodes["Background"]
    bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    old_world, scene.world = scene.world, world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0
    scene.cycles.volume_step_rate = 0.25
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
    set_still_image_format(scene.render.image_settings, "PNG")
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "16"
    scene.render.filepath = path
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        for o in hidden:
            o.hide_render = False
        scene.world = old_world
    return read_rgb(path)


def render_psnrs(scene: Any, obj: Any, data: str, views: int, samples: int, tmp: str) -> list[float]:
    meta = json.loads(Path(data, "transforms_test.json").read_text())
    out = []
    for i, frame in enumerate(meta["frames"][:views]):
        cam = camera_from_frame(scene, meta, frame)
        img = render_only(scene, obj, os.path.join(tmp, f"{obj.name}_{i}.png"), samples)
        gt_path = Path(data, frame["file_path"])
        out.append(psnr(img, read_rgb(str(gt_path if gt_path.suffix else gt_path.with_suffix(".png")))))
        bpy.data.objects.remove(cam)
    return out


def smoke_scene(tmp: str) -> str:
    """A UV sphere (radius 0.5) and a 24³ grid whose density ramps across its surface; returns the grid."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, segments=64, ring_count=32)
    res, h = 24, 2.0 / 24
    r = np.arange(res)
    ijk = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(-1.0 + (ijk + 0.5) * h, axis=1)
    density = density_for_opacity(0.5, h) * (1.0 + (0.5 - dist) / (2.0 * h))
    keep = density > 0
    sh = np.zeros((int(keep.sum()), 3, 1), np.float32)
    sh[:, :, 0] = (np.array([0.7, 0.4, 0.2]) - 0.5) / SH_C0
    grid = PlenoxGrid(np.array([res] * 3), np.array([[-1.0] * 3, [1.0] * 3]), ijk[keep].astype(np.int32),
                      density[keep].astype(np.float32), sh, 0)
    path = os.path.join(tmp, "smoke.npz")
    write_grid(path, grid)
    return path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blend", help="scene with the original objects")
    p.add_argument("--grid", help="grid file trained on that scene")
    p.add_argument("--data", help="the dataset (for renders against its test images)")
    p.add_argument("--views", type=int, default=3, help="test views rendered")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    p.add_argument("--opacity", type=float, nargs="+", default=[0.5])
    p.add_argument("--view-independent", action="store_true", help="DC colours instead of SH at −normal")
    p.add_argument("--keep-hidden", action="store_true",
                   help="keep the surfaces no training camera reaches (the import's Remove Hidden Surfaces off)")
    p.add_argument("--volume", action="store_true", help="also render the imported Volume (with --data)")
    p.add_argument("--smoke", action="store_true", help="a sphere and a synthetic grid, to check that the script runs")
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            grid_path, args.data = smoke_scene(tmp), None
        else:
            if not (args.blend and args.grid):
                p.error("--blend and --grid are required (or --smoke)")
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
            grid_path = os.path.abspath(args.grid)
        scene = bpy.context.scene
        originals = [o for o in scene.objects if o.type == "MESH"]
        verts, tris = world_triangles(originals)
        scene_tree = bvh(verts, tris)
        scene_points = sample_surface(verts, tris, 2_000 if args.smoke else SCENE_SAMPLES)
        grid = read_grid(grid_path)
        voxel = float(min(grid.voxel_size))
        inner = buried(scene_points, originals, voxel)
        res = "x".join(str(int(v)) for v in grid.resolution)
        print(f"grid {res}, {grid.num_voxels:,} voxels, SH degree {grid.sh_degree}, voxel {voxel:.4g}; "
              f"{len(originals)} original objects, {len(tris):,} triangles", flush=True)
        for opacity in args.opacity:
            result = import_grid_as_mesh(scene, grid_path, opacity=opacity, view_dependent=not args.view_independent,
                                         remove_hidden=not args.keep_hidden)
            points, _ = vertex_arrays(result.obj.data)
            to_scene = nearest_distances(scene_tree, points) / voxel
            mverts, mtris = world_triangles([result.obj])
            to_mesh = nearest_distances(bvh(mverts, mtris), scene_points) / voxel
            print(f"opacity {opacity:g} (density {result.level:.4g}): {result.vertices:,} vertices, "
                  f"{result.faces:,} faces, import {result.seconds:.2f} s; mesh->scene mean "
                  f"{to_scene.mean():.3f} median {np.median(to_scene):.3f} p90 {np.percentile(to_scene, 90):.3f} "
                  f"voxels; scene->mesh mean {to_mesh.mean():.3f} voxels", flush=True)
            print(f"  scene->mesh over the {1 - inner.mean():.0%} of the original surfaces not inside another "
                  f"object nor shared with one: mean {to_mesh[~inner].mean():.3f} voxels", flush=True)
            if args.data:
                seen = seen_by_cameras(points, bvh(mverts, mtris), args.data, voxel)
                print(f"  seen by the dataset's cameras: {seen.mean():.0%} of the vertices, mesh->scene mean "
                      f"{to_scene[seen].mean():.3f} median {np.median(to_scene[seen]):.3f} voxels; unseen "
                      f"{to_scene[~seen].mean() if (~seen).any() else 0.0:.3f}", flush=True)
                t = time.perf_counter()
                vals = render_psnrs(scene, result.obj, args.data, args.views, args.samples, tmp)
                print(f"  Cycles render of the mesh vs ground truth: {np.mean(vals):.2f} dB mean over "
                      f"{len(vals)} test views ({', '.join(f'{v:.2f}' for v in vals)}; "
                      f"{time.perf_counter() - t:.1f} s)", flush=True)
        if args.data and args.volume:
            vol = import_grid(scene, grid_path, view_dependent=not args.view_independent).obj
            vals = render_psnrs(scene, vol, args.data, args.views, args.samples, tmp)
            print(f"  Cycles render of the volume vs ground truth: {np.mean(vals):.2f} dB mean over "
                  f"{len(vals)} test views ({', '.join(f'{v:.2f}' for v in vals)})", flush=True)


if __name__ == "__main__":
    main()
