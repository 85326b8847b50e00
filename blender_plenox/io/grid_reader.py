"""Reads the trainer's grid file (contract 4, docs/CONTRACTS.md) with numpy only.

Every check raises GridFileError with one line naming the file and the problem, so the
importer can refuse a corrupt or foreign file before it touches the scene.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GRID_FORMAT = "blender_plenox.grid"
# written; 1-3 are read (v1 files hold densities >= 0, same field rule; v3 adds color_space, which
# is "srgb" before it)
GRID_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
COLOR_SPACES = ("linear", "srgb")
SH_C0 = 0.28209479177387814  # Y_0^0, the constant real SH basis function

_REQUIRED = ("format", "version", "resolution", "aabb", "coords", "density", "sh", "sh_degree")


class GridFileError(ValueError):
    """A grid file that cannot be read: the message is one line, `<path>: <problem>`."""


@dataclass(frozen=True)
class PlenoxGrid:
    resolution: np.ndarray  # int64 (3,)
    aabb: np.ndarray  # float64 (2, 3)
    coords: np.ndarray  # int32 (N, 3)
    density: np.ndarray  # float32 (N,), raw signed extinction per world unit (σ = max(0, trilinear))
    sh: np.ndarray  # float32 (N, 3, K)
    sh_degree: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # optional learnt background: float32 (H, W, 3) colours, equirectangular as Blender's Environment
    # Texture, top row first (contract 4)
    background_map: np.ndarray | None = None
    # "linear": the colours (and the background map's) are scene-linear light, mixed as Blender mixes
    # it; "srgb": sRGB-encoded values, mixed as they are (every grid before version 3)
    color_space: str = "srgb"

    @property
    def voxel_size(self) -> np.ndarray:
        return (self.aabb[1] - self.aabb[0]) / self.resolution

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    def sample_points(self) -> np.ndarray:
        """World position of every active voxel's sample (the cell centre, contract 4)."""
        return self.aabb[0] + (self.coords.astype(np.float64) + 0.5) * self.voxel_size

    def dc_value(self) -> np.ndarray:
        """Unclamped view-independent colour (N, 3): C0 · sh_dc + 0.5, the value that is interpolated."""
        return (SH_C0 * self.sh[:, :, 0] + np.float32(0.5)).astype(np.float32)

    def dc_color(self) -> np.ndarray:
        """Each voxel's own view-independent colour (N, 3): ReLU(C0 · sh_dc + 0.5)."""
        return np.maximum(self.dc_value(), np.float32(0.0))


def _fail(path: str, problem: str) -> GridFileError:
    return GridFileError(f"{path}: {problem}")


def _scalar_str(path: str, value: np.ndarray, key: str) -> str:
    if value.shape != () or value.dtype.kind not in "US":
        raise _fail(path, f"'{key}' must be a string scalar, got dtype {value.dtype} shape {value.shape}")
    return str(value)


def _scalar_int(path: str, value: np.ndarray, key: str) -> int:
    if value.shape != () or value.dtype.kind not in "iu":
        raise _fail(path, f"'{key}' must be an integer scalar, got dtype {value.dtype} shape {value.shape}")
    return int(value)


def read_grid(path: str | os.PathLike[str]) -> PlenoxGrid:
    """Loads and validates a grid file; raises GridFileError (one line) on anything unexpected."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise _fail(p, "no such file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in _REQUIRED if k not in npz.files]
            if "format" in npz.files and not missing:
                arrays = {k: npz[k] for k in npz.files}
            elif "format" not in npz.files:
                raise _fail(p, f"not a {GRID_FORMAT} file (no 'format' entry)")
            else:
                raise _fail(p, f"missing entries: {', '.join(missing)}")
    except GridFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # np.load raises ValueError for object arrays (pickle) and OSError/BadZipFile for non-npz bytes.
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(p, f"not a readable .npz grid file ({first_line})") from None
    return _validate(p, arrays)


def _validate(p: str, a: dict[str, np.ndarray]) -> PlenoxGrid:
    fmt = _scalar_str(p, a["format"], "format")
    if fmt != GRID_FORMAT:
        raise _fail(p, f"format is '{fmt}', expected '{GRID_FORMAT}'")
    version = _scalar_int(p, a["version"], "version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise _fail(p, f"grid format version {version} is not supported (this add-on reads {readable})")

    resolution = a["resolution"]
    if resolution.shape != (3,) or resolution.dtype.kind not in "iu" or np.any(resolution < 1):
        raise _fail(p, f"'resolution' must be 3 positive integers, got {resolution!r}")
    resolution = resolution.astype(np.int64)

    aabb = a["aabb"]
    if aabb.shape != (2, 3) or aabb.dtype.kind != "f" or not np.all(np.isfinite(aabb)):
        raise _fail(p, f"'aabb' must be a finite float (2, 3) array, got shape {aabb.shape}")
    aabb = aabb.astype(np.float64)
    if np.any(aabb[1] <= aabb[0]):
        raise _fail(p, f"'aabb' max must exceed min on every axis, got {aabb.tolist()}")

    sh_degree = _scalar_int(p, a["sh_degree"], "sh_degree")
    if not 0 <= sh_degree <= 3:
        raise _fail(p, f"'sh_degree' must be 0-3, got {sh_degree}")
    k = (sh_degree + 1) ** 2

    coords, density, sh = a["coords"], a["density"], a["sh"]
    if coords.ndim != 2 or coords.shape[1] != 3 or coords.dtype.kind not in "iu":
        raise _fail(p, f"'coords' must be an integer (N, 3) array, got {coords.dtype} {coords.shape}")
    n = coords.shape[0]
    if density.shape != (n,) or density.dtype.kind != "f":
        raise _fail(p, f"'density' must be a float ({n},) array, got {density.dtype} {density.shape}")
    if sh.shape != (n, 3, k) or sh.dtype.kind != "f":
        raise _fail(p, f"'sh' must be a float ({n}, 3, {k}) array for degree {sh_degree}, got {sh.shape}")
    if n and (np.any(coords < 0) or np.any(coords >= resolution)):
        raise _fail(p, f"'coords' outside the grid resolution {resolution.tolist()}")
    if n and not (np.all(np.isfinite(density)) and np.all(np.isfinite(sh))):
        raise _fail(p, "'density' or 'sh' holds NaN or infinite values")

    metadata: dict[str, Any] = {}
    if "metadata" in a:
        text = _scalar_str(p, a["metadata"], "metadata")
        try:
            parsed = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise _fail(p, f"'metadata' is not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise _fail(p, "'metadata' must be a JSON object")
        metadata = parsed

    background = a.get("background_map")
    if background is not None:
        if background.ndim != 3 or background.shape[2] != 3 or min(background.shape[:2]) < 1 \
                or background.dtype.kind != "f":
            raise _fail(p, f"'background_map' must be a float (H, W, 3) array, got {background.dtype} {background.shape}")
        if not np.all(np.isfinite(background)):
            raise _fail(p, "'background_map' holds NaN or infinite values")
        background = background.astype(np.float32, copy=False)

    color_space = "srgb"
    if version >= 3:
        if "color_space" not in a:
            raise _fail(p, f"grid format version {version} needs 'color_space'")
        color_space = _scalar_str(p, a["color_space"], "color_space")
        if color_space not in COLOR_SPACES:
            raise _fail(p, f"'color_space' must be one of {', '.join(COLOR_SPACES)}, got '{color_space}'")

    return PlenoxGrid(
        resolution=resolution,
        aabb=aabb,
        coords=coords.astype(np.int32, copy=False),
        density=density.astype(np.float32, copy=False),
        sh=sh.astype(np.float32, copy=False),
        sh_degree=sh_degree,
        metadata=metadata,
        background_map=background,
        color_space=color_space,
    )


def write_grid(path: str | os.PathLike[str], grid: PlenoxGrid) -> None:
    """Writes a grid file per contract 4 (atomically). Used by tests, fixtures and benchmarks."""
    p = os.fspath(path)
    tmp = p + ".tmp.npz"
    np.savez(
        tmp,
        format=np.array(GRID_FORMAT),
        version=np.array(GRID_VERSION, dtype=np.int64),
        resolution=np.asarray(grid.resolution, dtype=np.int64),
        aabb=np.asarray(grid.aabb, dtype=np.float64),
        coords=np.asarray(grid.coords, dtype=np.int32),
        density=np.asarray(grid.density, dtype=np.float32),
        sh=np.asarray(grid.sh, dtype=np.float32),
        sh_degree=np.array(grid.sh_degree, dtype=np.int64),
        metadata=np.array(json.dumps(grid.metadata)),
        color_space=np.array(grid.color_space),
        **({} if grid.background_map is None else {"background_map": np.asarray(grid.background_map, np.float32)}),
    )
    os.replace(tmp, p)
