"""Evaluates a grid's field (contract 4) at arbitrary world points with numpy alone: the colour of an
imported surface mesh's vertices, and the density level that a user's surface opacity stands for.

The field rule (docs/CONTRACTS.md, contract 4): trilinear interpolation of the raw per-voxel values
between the 8 surrounding sample points (cell centres, aabb_min + (ijk + 0.5)·voxel_size), inactive
voxels counting as density 0 and SH 0, then c(x, d) = max(0, Σ_k Y_k(d)·sh_k(x) + 0.5). Because
interpolation is linear, interpolating the SH coefficients and then summing with the basis is exactly
the rule. Voxels are looked up by sorted flat index (np.searchsorted), so memory follows the active
voxels and the points, never the grid's box.
"""

from __future__ import annotations

import numpy as np

from .grid_reader import SH_C0, PlenoxGrid

# The real SH basis of svox2/PlenOctrees: trainer/engine/sh.py's constants (the add-on cannot import the
# torch-based trainer; volume/sh_nodes.py holds the same for the shader group).
CHUNK = 1 << 16  # points per pass when colouring

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


def density_for_opacity(opacity: float, voxel_size: float) -> float:
    """The density (extinction per world unit) at which one voxel's thickness of the field stops
    `opacity` of the light: 1 − exp(−σ·voxel_size) = opacity, so σ = −ln(1 − opacity)/voxel_size."""
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"surface opacity must lie strictly between 0 and 1, got {opacity}")
    return float(-np.log1p(-opacity) / voxel_size)


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """(M, (degree + 1)²) basis values at unit directions `dirs` (M, 3), in the trainer's order."""
    x, y, z = (np.asarray(dirs, np.float64)[:, i] for i in range(3))
    cols = [np.full_like(x, SH_C0)]
    if degree >= 1:
        cols += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [
            SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        cols += [
            SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy),
        ]
    return np.stack(cols, axis=1)


class SparseField:
    """Trilinear interpolation of per-active-voxel values of one grid at world points."""

    def __init__(self, grid: PlenoxGrid) -> None:
        self.grid = grid
        self._shape = tuple(int(v) for v in grid.resolution)
        flat = np.ravel_multi_index(tuple(grid.coords.astype(np.int64).T), self._shape)
        self._order = np.argsort(flat, kind="stable")
        self._keys = flat[self._order]

    def _rows(self, ijk: np.ndarray) -> np.ndarray:
        """Row in the grid's arrays of each voxel index (M, 3); −1 where inactive or outside the grid."""
        if len(self._keys) == 0:
            return np.full(len(ijk), -1, np.int64)
        res = self.grid.resolution
        inside = np.all((ijk >= 0) & (ijk < res), axis=1)
        flat = np.ravel_multi_index(tuple(np.where(inside[:, None], ijk, 0).T), self._shape)
        pos = np.minimum(np.searchsorted(self._keys, flat), len(self._keys) - 1)
        found = inside & (self._keys[pos] == flat)
        return np.where(found, self._order[pos], -1)

    def interpolate(self, values: np.ndarray, points: np.ndarray) -> np.ndarray:
        """trilinear(values)(points): `values` (N, C) per active voxel, inactive ones 0; (M, C) float64."""
        g = self.grid
        u = (np.asarray(points, np.float64) - g.aabb[0]) / g.voxel_size - 0.5  # index space of the samples
        base = np.floor(u).astype(np.int64)
        frac = u - base
        out = np.zeros((len(u), values.shape[1]), np.float64)
        for corner in np.ndindex(2, 2, 2):  # 8 passes, each vectorised over every point
            c = np.array(corner)
            weight = np.prod(np.where(c == 1, frac, 1.0 - frac), axis=1)
            rows = self._rows(base + c)
            hit = rows >= 0
            out[hit] += weight[hit, None] * values[rows[hit]]
        return out

    def density(self, points: np.ndarray) -> np.ndarray:
        """σ(x) = max(0, trilinear(density)(x)), per world unit."""
        return np.maximum(self.interpolate(self.grid.density[:, None], points)[:, 0], 0.0)

    def colour(self, points: np.ndarray, view_dirs: np.ndarray | None = None) -> np.ndarray:
        """(M, 3) float32 colour at `points`: c(x, d) with d = `view_dirs` (unit, the direction light
        travels from the point to the viewer's eye reversed, i.e. the camera ray's), or the
        view-independent c₀(x) when `view_dirs` is None or the grid has degree 0."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        out = np.empty((len(points), 3), np.float32)
        for start in range(0, len(points), CHUNK):  # bounds the (points, 3·K) intermediates
            part = slice(start, start + CHUNK)
            out[part] = self._colour(points[part], None if view_dirs is None else view_dirs[part])
        return out

    def _colour(self, points: np.ndarray, view_dirs: np.ndarray | None) -> np.ndarray:
        sh = self.grid.sh
        if view_dirs is None or self.grid.sh_degree == 0:
            dc = self.interpolate(sh[:, :, 0], points)
            return np.maximum(SH_C0 * dc + 0.5, 0.0).astype(np.float32)
        n, _, k = sh.shape
        coeffs = self.interpolate(sh.reshape(n, 3 * k), points).reshape(-1, 3, k)
        basis = sh_basis(view_dirs, self.grid.sh_degree)
        return np.maximum(np.einsum("mck,mk->mc", coeffs, basis) + 0.5, 0.0).astype(np.float32)
