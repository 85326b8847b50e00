"""The grid file (contract 4): a pickle-free .npz holding the sparse voxels of a trained field.

numpy only, so that anything with numpy can read it. Samples lie at cell centres:
p(i, j, k) = aabb_min + (ijk + 0.5) * (aabb_max - aabb_min) / resolution.
Version 2 stores raw signed densities; the field is max(0, trilinear(density)). Version 1 files (densities
>= 0) read unchanged, since the same rule gives their field too. Version 3 adds `color_space`: "linear"
when the colours (and a background map) are linear light that mixes along rays as Blender mixes it,
"srgb" when they are encoded values that mix as they are; versions 1 and 2 are "srgb".
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer import GRID_VERSION
from trainer.io.atomic import atomic_path

FORMAT_NAME = "blender_plenox.grid"
KEYS = ("format", "version", "resolution", "aabb", "coords", "density", "sh", "sh_degree", "metadata")
BACKGROUND_KEY = "background_map"  # optional; readers that do not know it ignore it
COLOR_SPACE_KEY = "color_space"  # version 3 on; older files are "srgb"
COLOR_SPACES = ("linear", "srgb")


class GridFileError(ValueError):
    """str(e) is one line: 'PATH: problem'."""


@dataclass
class GridData:
    resolution: np.ndarray          # int64 [3]: nx, ny, nz along world x, y, z
    aabb: np.ndarray                # float64 [2, 3]: world box the grid spans
    coords: np.ndarray              # int32 [N, 3]: (i, j, k) of each active voxel
    density: np.ndarray             # float32 [N]: raw extinction per world unit; may be negative
    sh: np.ndarray                  # float32 [N, 3, K]: SH coefficients per colour channel
    sh_degree: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # optional: a learnt background, float32 [H, W, 3] colours in [0, 1], equirectangular with the top row
    # first (trainer/engine/background.py has the mapping, which is Blender's Environment Texture's)
    background_map: np.ndarray | None = None
    # "linear" or "srgb": where the colours above (and background_map's) mix; trainer/engine/colour.py
    color_space: str = "srgb"

    @property
    def voxel_size(self) -> np.ndarray:
        return (self.aabb[1] - self.aabb[0]) / self.resolution

    def centres(self) -> np.ndarray:
        """World positions [N, 3] of the active voxels' sample points (cell centres)."""
        return self.aabb[0] + (self.coords.astype(np.float64) + 0.5) * self.voxel_size

    def dc_colour(self) -> np.ndarray:
        """View-independent colour [N, 3] = ReLU(Y_0 * sh[:, :, 0] + 0.5) at each voxel's own centre.

        Between centres the field clamps after interpolating, so interpolate dc_value() instead."""
        return np.maximum(self.dc_value(), 0.0)

    def dc_value(self) -> np.ndarray:
        """Unclamped view-independent colour [N, 3] = Y_0 * sh[:, :, 0] + 0.5 (what gets interpolated)."""
        return 0.28209479177387814 * self.sh[:, :, 0] + 0.5


def _problem(grid: GridData) -> str | None:
    """The first thing that makes `grid` break contract 4, or None."""
    res, aabb, coords, density, sh = grid.resolution, grid.aabb, grid.coords, grid.density, grid.sh
    if res.shape != (3,) or not np.issubdtype(res.dtype, np.integer) or (res < 1).any():
        return f"resolution must be 3 positive integers, got {res.tolist()!r}"
    if aabb.shape != (2, 3) or not np.isfinite(aabb).all() or (aabb[1] <= aabb[0]).any():
        return f"aabb must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with max > min, got {aabb.tolist()!r}"
    if not isinstance(grid.sh_degree, (int, np.integer)) or not 0 <= grid.sh_degree <= 3:
        return f"sh_degree must be 0-3, got {grid.sh_degree!r}"
    n = coords.shape[0] if coords.ndim == 2 else -1
    if coords.shape != (n, 3) or not np.issubdtype(coords.dtype, np.integer):
        return f"coords must be integer [N, 3], got {coords.dtype} {list(coords.shape)}"
    if n and ((coords < 0).any() or (coords >= res).any()):
        return f"coords outside the {res.tolist()} grid"
    if n > 1:
        linear = (coords[:, 0].astype(np.int64) * res[1] + coords[:, 1]) * res[2] + coords[:, 2]
        if np.unique(linear).size != n:
            return "coords lists a voxel more than once"
    if density.shape != (n,) or density.dtype.kind != "f":
        return f"density must be float [N={n}], got {density.dtype} {list(density.shape)}"
    if not np.isfinite(density).all():
        return "density has non-finite values"
    k = (int(grid.sh_degree) + 1) ** 2
    if sh.shape != (n, 3, k) or sh.dtype.kind != "f":
        return f"sh must be float [N={n}, 3, {k}] for degree {grid.sh_degree}, got {sh.dtype} {list(sh.shape)}"
    if not np.isfinite(sh).all():
        return "sh has non-finite values"
    if not isinstance(grid.metadata, dict):
        return "metadata must be a JSON object"
    if grid.color_space not in COLOR_SPACES:
        return f"color_space must be one of {', '.join(COLOR_SPACES)}, got {grid.color_space!r}"
    bg = grid.background_map
    if bg is not None:
        if bg.ndim != 3 or bg.shape[2] != 3 or bg.shape[0] < 1 or bg.shape[1] < 1 or bg.dtype.kind != "f":
            return f"background_map must be float [H, W, 3], got {bg.dtype} {list(bg.shape)}"
        if not np.isfinite(bg).all():
            return "background_map has non-finite values"
    return None


def save_grid(path: Path, grid: GridData) -> None:
    """Validates, then writes atomically (temp file in the same directory + os.replace).

    The arrays are stored, not deflated: deflate saves about 15 % on float data and is slow (1.33 M
    voxels: 8.3 s against 0.7 s on 2 cores; a snapshot of 8.5 M voxels took most of a 53 s pause in a GPU
    run, and the final grid of such a run as long again after training)."""
    path = Path(path)
    problem = _problem(grid)
    if problem:
        raise GridFileError(f"{path}: refusing to write an invalid grid: {problem}")
    arrays = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(GRID_VERSION, dtype=np.int64),
        "resolution": np.asarray(grid.resolution, dtype=np.int64),
        "aabb": np.asarray(grid.aabb, dtype=np.float64),
        "coords": np.ascontiguousarray(grid.coords, dtype=np.int32),
        "density": np.ascontiguousarray(grid.density, dtype=np.float32),
        "sh": np.ascontiguousarray(grid.sh, dtype=np.float32),
        "sh_degree": np.array(int(grid.sh_degree), dtype=np.int64),
        "metadata": np.array(json.dumps(grid.metadata, default=str, allow_nan=False)),
        COLOR_SPACE_KEY: np.array(grid.color_space),
    }
    if grid.background_map is not None:
        arrays[BACKGROUND_KEY] = np.ascontiguousarray(grid.background_map, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no ".npz"
        np.savez(f, **arrays)


def load_grid(path: Path) -> GridData:
    """Reads and validates a grid file; GridFileError (one line naming the file) when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise GridFileError(f"{path}: no such grid file")
    if not zipfile.is_zipfile(path):
        raise GridFileError(f"{path}: not a grid file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise GridFileError(f"{path}: not a blender_plenox grid file (missing {', '.join(missing)})")
            arrays = {k: npz[k] for k in KEYS}
            background = npz[BACKGROUND_KEY] if BACKGROUND_KEY in npz.files else None
            color_space = npz[COLOR_SPACE_KEY] if COLOR_SPACE_KEY in npz.files else None
    except GridFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, io.UnsupportedOperation) as e:
        raise GridFileError(f"{path}: unreadable grid file ({type(e).__name__}: {e})".splitlines()[0]) from e
    fmt = arrays["format"]
    if fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != FORMAT_NAME:
        raise GridFileError(f"{path}: format is {fmt.tolist()!r}, expected {FORMAT_NAME!r}")
    version = arrays["version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise GridFileError(f"{path}: version must be an integer scalar")
    if int(version) > GRID_VERSION:
        raise GridFileError(f"{path}: grid format version {int(version)} is newer than this reader ({GRID_VERSION})")
    if int(version) < 1:
        raise GridFileError(f"{path}: grid format version {int(version)} is not a valid version")
    if int(version) >= 3:
        if color_space is None or color_space.shape != () or color_space.dtype.kind != "U":
            raise GridFileError(f"{path}: version {int(version)} needs a color_space string")
        space = str(color_space)
    else:
        space = "srgb"  # what every grid before version 3 was trained in
    degree = arrays["sh_degree"]
    if degree.shape != () or degree.dtype.kind not in "iu":
        raise GridFileError(f"{path}: sh_degree must be an integer scalar")
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as e:
        raise GridFileError(f"{path}: metadata is not JSON ({e})") from e
    grid = GridData(resolution=arrays["resolution"], aabb=arrays["aabb"], coords=arrays["coords"],
                    density=arrays["density"], sh=arrays["sh"], sh_degree=int(degree), metadata=metadata,
                    background_map=background, color_space=space)
    problem = _problem(grid)
    if problem:
        raise GridFileError(f"{path}: {problem}")
    grid.resolution = grid.resolution.astype(np.int64)
    grid.aabb = grid.aabb.astype(np.float64)
    grid.coords = grid.coords.astype(np.int32)
    grid.density = grid.density.astype(np.float32)
    grid.sh = grid.sh.astype(np.float32)
    if grid.background_map is not None:
        grid.background_map = grid.background_map.astype(np.float32)
    return grid


def grid_summary(grid: GridData) -> dict[str, Any]:
    """Figures for `python -m trainer info`."""
    total = int(np.prod(grid.resolution))
    n = int(grid.coords.shape[0])
    summary: dict[str, Any] = {
        "resolution": grid.resolution.tolist(),
        "aabb": grid.aabb.tolist(),
        "voxel_size": grid.voxel_size.tolist(),
        "voxels": n,
        "occupancy": n / total,
        "sh_degree": int(grid.sh_degree),
        "density_max": float(grid.density.max()) if n else 0.0,
        "density_mean": float(grid.density.mean()) if n else 0.0,
        "background": ("learnt environment map {}x{}".format(*grid.background_map.shape[1::-1])
                       if grid.background_map is not None else "a fixed colour"),
        "color_space": grid.color_space,
    }
    for key in ("step", "psnr", "created", "trainer_version"):
        if key in grid.metadata:
            summary[key] = grid.metadata[key]
    return summary
