"""Time and size of writing the add-on's two VDB grids: the numpy writer (io/vdb_file.py, what the
add-on uses) against Blender's openvdb module (copyFromArray + write, the previous writer):

    .venv-blender/bin/python benchmarks/bench_vdb_write.py [--sizes 128 256] [--share 0.0894] [--repeat 3]

Two layouts per size, both with `share` of the voxels active (0.0894 of 256³ is 1.5 M): `random`
(scattered voxels, the worst case: nearly every 8³ leaf is touched) and `shell` (a thick spherical
shell, coherent like a trained scene). Timings are the best of `repeat` runs of writing both grids
from the dense VdbArrays blocks. Under plain Python without bpy only the numpy writer runs.
--smoke writes 16³ grids once, in a second or two, so that the tests can check that this script still
runs against the current API (tests/blender/test_benchmarks_smoke.py); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_plenox.io.grid_reader import PlenoxGrid
from blender_plenox.io.vdb_arrays import VdbArrays, build_vdb_arrays
from blender_plenox.volume.vdb_writer import COLOR_GRID, DENSITY_GRID, load_openvdb, write_vdb


def grid(res: int, share: float, layout: str, seed: int = 0) -> PlenoxGrid:
    rng = np.random.default_rng(seed)
    n = int(res**3 * share)
    if layout == "random":
        flat = np.sort(rng.choice(res**3, n, replace=False))
    else:  # the n voxels nearest to radius 0.35·res from the centre: a shell of the right volume
        idx = np.indices((res,) * 3).reshape(3, -1).T
        dist = np.abs(np.linalg.norm(idx - (res - 1) / 2, axis=1) - 0.35 * res)
        flat = np.sort(np.argpartition(dist, n)[:n])
    coords = np.stack(np.unravel_index(flat, (res,) * 3), 1).astype(np.int32)
    return PlenoxGrid(
        np.array([res] * 3, np.int64), np.array([[-1.0] * 3, [1.0] * 3]), coords,
        rng.uniform(0.1, 50, n).astype(np.float32), rng.normal(0, 1, (n, 3, 1)).astype(np.float32), 0,
    )


def openvdb_write(arrays: VdbArrays, path: str) -> None:
    """The add-on's previous writer: Blender's openvdb, default (Blosc + active mask) compression."""
    vdb = load_openvdb()
    transform = vdb.createLinearTransform(arrays.index_to_world_rows())
    offset = tuple(int(v) for v in arrays.offset)
    density = vdb.FloatGrid(0.0)
    density.copyFromArray(arrays.density, ijk=offset, tolerance=0.0)
    density.name, density.transform, density.gridClass = DENSITY_GRID, transform, vdb.GridClass.FOG_VOLUME
    bg = float(arrays.color_background)
    colour = vdb.Vec3SGrid((bg, bg, bg))
    colour.copyFromArray(arrays.color, ijk=offset, tolerance=(0.0, 0.0, 0.0))
    colour.name, colour.transform = COLOR_GRID, transform.deepCopy()
    vdb.write(path, [density, colour])


def best_time(write: Callable[[VdbArrays, str], object], arrays: VdbArrays, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        write(arrays, path)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--share", type=float, default=1.5e6 / 256**3)
    p.add_argument("--layouts", nargs="+", default=["random", "shell"], choices=["random", "shell"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="16^3 grids written once, to check that the script runs")
    args = p.parse_args()
    if args.smoke:
        args.sizes, args.repeat = [16], 1
    try:
        load_openvdb()
        writers: dict[str, Callable[[VdbArrays, str], object]] = {"numpy": write_vdb, "openvdb": openvdb_write}
    except ImportError:
        writers = {"numpy": write_vdb}
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.sizes:
            for layout in args.layouts:
                arrays = build_vdb_arrays(grid(res, args.share, layout))
                cells = []
                for name, write in writers.items():
                    path = str(Path(tmp) / f"{name}.vdb")
                    seconds = best_time(write, arrays, path, args.repeat)
                    cells.append(f"{name} {seconds:.2f} s, {os.path.getsize(path) / 1e6:.1f} MB")
                print(f"{res}^3 {layout}, {arrays.active_voxels:,} active voxels: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
