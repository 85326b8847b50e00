"""The real-Blender benchmarks still run against the add-on's current API: each script's --smoke mode,
as a real subprocess of this environment's Python (Blender as the bpy module).

Only that they run and print their figures is checked: timings belong to the benchmarks, not to tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NUMBER = r"[0-9][0-9.,]*"
FIGURES = {
    "bench_capture.py": [
        r"^capture: 3 views at 16x16, Cycles CPU, 2 samples, denoise=\w+, threads=\d+$",
        (rf"^total {NUMBER} s \(setup included\), {NUMBER} s/view; per view median {NUMBER} s, "
         rf"first {NUMBER} s, max {NUMBER} s$"),
    ],
    "bench_import.py": [
        (rf"^import 16\^3, {NUMBER} active voxels, SH degree 2 shown: read {NUMBER} s, arrays {NUMBER} s, "
         rf"write VDB {NUMBER} s; full import {NUMBER} s, \.vdb {NUMBER} MB$"),
    ],
    "bench_mesh.py": [
        rf"^grid 24x24x24, {NUMBER} voxels, SH degree 0, voxel {NUMBER}; 1 original objects, {NUMBER} triangles$",
        (rf"^opacity 0\.5 \(density {NUMBER}\): {NUMBER} vertices, {NUMBER} faces, import {NUMBER} s; mesh->scene "
         rf"mean {NUMBER} median {NUMBER} p90 {NUMBER} voxels; scene->mesh mean {NUMBER} voxels$"),
    ],
    "bench_vdb_write.py": [
        rf"^16\^3 {layout}, {NUMBER} active voxels: numpy {NUMBER} s, {NUMBER} MB; openvdb {NUMBER} s, {NUMBER} MB$"
        for layout in ("random", "shell")
    ],
}


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_benchmark_smoke_runs_and_prints_its_figures(script: str, repo_root: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(repo_root / "benchmarks" / script), "--smoke"],
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pattern in FIGURES[script]:
        assert re.search(pattern, proc.stdout, re.MULTILINE), f"{pattern!r} not in:\n{proc.stdout}"


def test_make_real_capture_writes_a_colmap2nerf_capture_of_opaque_distorted_views(repo_root: Path,
                                                                                   tmp_path: Path) -> None:
    import json

    import imageio.v3 as iio

    out, pinhole = tmp_path / "cap", tmp_path / "cap_pinhole"
    proc = subprocess.run([sys.executable, str(repo_root / "benchmarks" / "make_real_capture.py"), "--out", str(out),
                           "--undistorted-out", str(pinhole), "--size", "24x40", "--views", "4", "--samples", "1"],
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"^generation took {NUMBER} s$", proc.stdout, re.MULTILINE), proc.stdout
    for folder, k1 in ((out, -0.12), (pinhole, 0.0)):
        meta = json.loads((folder / "transforms.json").read_text())
        # 4 training views and the trainer's holdout (every 8th frame) takes frame 0: 5 frames
        assert len(meta["frames"]) == 5
        assert (meta["w"], meta["h"], meta["k1"], meta["aabb_scale"]) == (24, 40, k1, 2)
        for key in ("fl_x", "fl_y", "cx", "cy", "k2", "p1", "p2", "camera_angle_x"):
            assert isinstance(meta[key], float), key
        for frame in meta["frames"]:
            assert len(frame["transform_matrix"]) == 4
            img = iio.imread(folder / frame["file_path"])
            assert img.shape == (40, 24, 3) and img.dtype.name == "uint8"   # opaque film: no alpha
            assert img.std() > 5   # the environment is there: not a flat film
