"""Builds contract-4 grid files with numpy for the add-on's tests."""

from __future__ import annotations

import numpy as np

from blender_plenox.io.grid_reader import SH_C0, PlenoxGrid


def sh_for_color(rgb: np.ndarray, sh_degree: int = 0) -> np.ndarray:
    """SH coefficients whose view-independent colour is `rgb` (N, 3), higher bands zero."""
    rgb = np.atleast_2d(np.asarray(rgb, np.float32))
    sh = np.zeros((rgb.shape[0], 3, (sh_degree + 1) ** 2), np.float32)
    sh[:, :, 0] = (rgb - 0.5) / SH_C0
    return sh


def random_grid(n: int = 200, res=(16, 12, 10), seed: int = 0, sh_degree: int = 1) -> PlenoxGrid:
    rng = np.random.default_rng(seed)
    res_arr = np.array(res, np.int64)
    flat = rng.choice(int(np.prod(res_arr)), size=n, replace=False)
    coords = np.stack(np.unravel_index(flat, res), axis=1).astype(np.int32)
    k = (sh_degree + 1) ** 2
    return PlenoxGrid(
        resolution=res_arr,
        aabb=np.array([[-1.0, -0.5, 0.0], [1.0, 0.7, 1.5]]),
        coords=coords,
        density=rng.uniform(0.1, 30.0, n).astype(np.float32),
        sh=rng.normal(0, 0.5, (n, 3, k)).astype(np.float32),
        sh_degree=sh_degree,
        metadata={"step": 123, "psnr": 27.5},
    )


def cube_grid(res: int, lo: int, hi: int, density: float, rgb, aabb=((-1, -1, -1), (1, 1, 1))) -> PlenoxGrid:
    """Voxels lo..hi-1 on every axis active with one density and colour."""
    r = np.arange(lo, hi)
    coords = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).astype(np.int32)
    n = coords.shape[0]
    return PlenoxGrid(
        resolution=np.array([res, res, res], np.int64),
        aabb=np.array(aabb, np.float64),
        coords=coords,
        density=np.full(n, density, np.float32),
        sh=np.repeat(sh_for_color(np.array([rgb], np.float32)), n, axis=0),
        sh_degree=0,
    )
