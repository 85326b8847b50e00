"""Import time of 128³ and 256³ grids (read the .npz, build the VDB arrays, write the VDB with the
add-on's numpy writer, create the Volume object and its material), in real Blender:

    .venv-blender/bin/python benchmarks/bench_import.py [--occupancy 0.1] [--sizes 128 256] [--smoke]

The grids are random with the given share of active voxels and SH degree 2 (what the trainer's
presets write; 0.1 of 256³ is the ~1.7 M voxel case), imported with their view-dependent colour
(--view-independent: the DC colour only). Prints one line per size with the time of each stage and
the .vdb file's size. --smoke runs a 16³ grid in a
second or two, so that the tests can check that this script still runs against the current API
(tests/blender/test_benchmarks_smoke.py); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy

from blender_plenox.io.grid_reader import PlenoxGrid, read_grid, write_grid
from blender_plenox.io.vdb_arrays import build_vdb_arrays
from blender_plenox.volume.importer import import_grid
from blender_plenox.volume.vdb_writer import write_vdb


def random_grid(res: int, occupancy: float, seed: int = 0) -> PlenoxGrid:
    rng = np.random.default_rng(seed)
    n = int(res**3 * occupancy)
    flat = rng.choice(res**3, n, replace=False)
    coords = np.stack(np.unravel_index(np.sort(flat), (res,) * 3), 1).astype(np.int32)
    return PlenoxGrid(
        np.array([res] * 3, np.int64),
        np.array([[-1.0] * 3, [1.0] * 3]),
        coords,
        rng.uniform(0, 50, n).astype(np.float32),
        rng.normal(0, 1, (n, 3, 9)).astype(np.float32),
        2,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--occupancy", type=float, default=0.1)
    p.add_argument("--smoke", action="store_true", help="a tiny grid, to check that the script runs")
    p.add_argument("--view-independent", action="store_true", help="write and show the DC colour only")
    args = p.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
    if args.smoke:
        args.sizes = [16]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.sizes:
            path = str(Path(tmp) / f"grid{res}.npz")
            write_grid(path, random_grid(res, args.occupancy))
            t0 = time.perf_counter()
            grid = read_grid(path)
            t1 = time.perf_counter()
            view_dependent = not args.view_independent
            arrays = build_vdb_arrays(grid, view_dependent=view_dependent)  # colour space: the material's business
            t2 = time.perf_counter()
            write_vdb(arrays, str(Path(tmp) / f"probe{res}.vdb"))
            t3 = time.perf_counter()
            # the whole operator path, end to end
            result = import_grid(bpy.context.scene, path, view_dependent=view_dependent)
            print(
                f"import {res}^3, {grid.num_voxels:,} active voxels, SH degree {result.shown_degree} shown: "
                f"read {t1 - t0:.2f} s, arrays {t2 - t1:.2f} s, write VDB {t3 - t2:.2f} s; "
                f"full import {result.seconds:.2f} s, .vdb {result.vdb_bytes / 1e6:.1f} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
