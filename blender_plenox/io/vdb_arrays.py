"""Turns a sparse grid (contract 4) into the dense blocks and transform that OpenVDB wants.

OpenVDB puts a voxel's value at the index point (i, j, k) itself, and contract 4 puts a voxel's
sample at its cell centre, so the index→world map is a scale by the voxel size plus a translation
to the centre of voxel (0, 0, 0): world = aabb_min + (ijk + 0.5) · voxel_size.
Only the box around the active voxels is made dense (plus a one-voxel rim, so the trilinear
fall-off to zero at the edge is inside the block), which keeps 256³ grids cheap.

Contract 4 v2: the field clamps after interpolation, σ = max(0, trilinear(density)) and
c(d) = max(0, Σ_k Y_k(d)·trilinear(sh_k) + 0.5). So the blocks hold raw signed values, Cycles
interpolates them, and the material sums and clamps (volume_object.py, sh_nodes.py). Colour-space
conversion happens there too, after the clamp.

The colour is split so that the view-independent path needs no SH grid: `color` holds the DC value
C0·sh_0 + 0.5 (background 0.5, an inactive voxel's), and `sh_rest` the coefficients of bands 1 and up
(background 0). Interpolation is linear, so trilinear(C0·sh_0 + 0.5) + Σ_{k≥1} Y_k·trilinear(sh_k)
is exactly the contract's sum. Every colour grid is active on the same voxels, `kept`, which include
every voxel with density: an inactive colour voxel next to an active density voxel would read the
background instead of the voxel's own colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .grid_reader import PlenoxGrid

ColorSpace = Literal["TRAINER", "LINEAR"]


def applied_color_space(option: ColorSpace, grid: PlenoxGrid) -> ColorSpace:
    """What the import does to the grid's colours: "LINEAR" decodes sRGB-encoded colours to scene-linear,
    "TRAINER" keeps them. A grid trained in linear light (contract 4 v3) is scene-linear already, so
    either option keeps its values."""
    return "TRAINER" if grid.color_space == "linear" else option

# The DC value of a voxel whose SH coefficients are all zero (an inactive voxel): C0·0 + 0.5. As the
# colour grid's background it keeps the interpolated colour near the edge of the active region equal
# to the trainer's (which interpolates SH, then applies the ReLU).
INACTIVE_COLOR = 0.5


@dataclass(frozen=True)
class VdbArrays:
    density: np.ndarray  # float32 (dx, dy, dz), raw signed extinction per world unit (0 where inactive)
    color: np.ndarray  # float32 (dx, dy, dz, 3), unclamped DC value; inactive voxels hold `color_background`
    offset: np.ndarray  # int64 (3,), index of density[0, 0, 0] in the full grid
    voxel_size: np.ndarray  # float64 (3,), world units
    origin: np.ndarray  # float64 (3,), world position of index (0, 0, 0)'s sample
    color_background: float
    active_voxels: int
    # bool (dx, dy, dz): the kept voxels, on which every colour grid is active; None (arrays built by
    # hand): voxels with density or a colour off the background.
    kept: np.ndarray | None = None
    # float32 (M, 3, K − 1): per kept voxel in the C order of `kept` (np.argwhere), the R, G, B
    # coefficients of SH basis functions 1..K−1 (grid.sh's layout, often a view of it); K − 1 = 0 when
    # only the view-independent colour is written.
    sh_rest: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0), np.float32))
    sh_degree: int = 0  # the degree `sh_rest` holds: K = (sh_degree + 1)²

    def index_to_world_rows(self) -> list[list[float]]:
        """4×4 affine matrix in OpenVDB's row-vector layout (translation in the last row)."""
        m = np.diag(np.append(self.voxel_size, 1.0))
        m[3, :3] = self.origin
        return m.tolist()

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        return self.origin + np.asarray(ijk, dtype=np.float64) * self.voxel_size

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box covering every active sample, padded by the voxel's trilinear support."""
        active = np.argwhere(self.density > 0)
        if active.size == 0:
            return self.origin.copy(), self.origin.copy()
        lo = self.index_to_world(active.min(0) + self.offset - 1)
        hi = self.index_to_world(active.max(0) + self.offset + 1)
        return lo, hi


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function's inverse (IEC 61966-2-1); the material's node chain computes the same."""
    c = np.clip(c, 0.0, None)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), for values clamped to [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 0.0031308) ** (1 / 2.4) - 0.055)


def _near(kept: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Which of `coords` (N, 3) lie within one voxel (26-neighbourhood) of a kept voxel, or are kept."""
    if not kept.any():
        return kept.copy()
    lo = coords[kept].min(0) - 1
    shape = tuple(int(v) for v in coords[kept].max(0) - lo + 2)
    mask = np.zeros(tuple(v + 2 for v in shape), bool)   # a further rim, so every shift stays in range
    k = coords[kept] - lo + 1
    mask[k[:, 0], k[:, 1], k[:, 2]] = True
    dilated = np.zeros(shape, bool)
    for dx, dy, dz in np.ndindex(3, 3, 3):
        dilated |= mask[dx : dx + shape[0], dy : dy + shape[1], dz : dz + shape[2]]
    local = coords - lo
    inside = ((local >= 0) & (local < np.array(shape))).all(1)
    near = np.zeros(len(coords), bool)
    near[inside] = dilated[local[inside, 0], local[inside, 1], local[inside, 2]]
    return near


def build_vdb_arrays(grid: PlenoxGrid, min_density: float = 0.0, view_dependent: bool = True) -> VdbArrays:
    """Dense raw density and DC-value blocks over the kept voxels' box, with the cell-centre transform,
    and (view_dependent and degree > 0) the kept voxels' higher SH coefficients.

    Voxels with 0 < density ≤ min_density are dropped (density 0, colour background), so they become
    inactive in the VDB. Voxels with density ≤ 0 are kept next to a kept positive voxel: they pull the
    interpolated density down there (and carry colour); anywhere else every corner is ≤ 0, the clamped
    field is zero whatever they hold, and leaving them out is exact. No colour-space conversion here: it
    is non-linear, so the material applies it to the interpolated, clamped colour (volume_object.py).
    """
    coords_all = grid.coords.astype(np.int64)
    positive = grid.density > max(min_density, 0.0)
    keep = positive | ((grid.density <= 0.0) & _near(positive, coords_all))
    coords = coords_all[keep]
    density = grid.density[keep]
    color = grid.dc_value()[keep]
    background = INACTIVE_COLOR
    sh_degree = int(grid.sh_degree) if view_dependent else 0
    k_rest = (sh_degree + 1) ** 2 - 1

    voxel_size = grid.voxel_size
    origin = grid.aabb[0] + 0.5 * voxel_size
    if coords.shape[0] == 0:
        return VdbArrays(
            density=np.zeros((1, 1, 1), np.float32),
            color=np.full((1, 1, 1, 3), background, np.float32),
            offset=np.zeros(3, np.int64),
            voxel_size=voxel_size,
            origin=origin,
            color_background=background,
            active_voxels=0,
            kept=np.zeros((1, 1, 1), bool),
            sh_rest=np.zeros((0, 3, k_rest), np.float32),
            sh_degree=sh_degree,
        )
    lo = coords.min(0) - 1
    hi = coords.max(0) + 2
    shape = tuple(int(s) for s in hi - lo)
    local = coords - lo
    dense_density = np.zeros(shape, np.float32)
    dense_density[local[:, 0], local[:, 1], local[:, 2]] = density
    dense_color = np.full(shape + (3,), background, np.float32)
    dense_color[local[:, 0], local[:, 1], local[:, 2]] = color
    kept = np.zeros(shape, bool)
    kept[local[:, 0], local[:, 1], local[:, 2]] = True
    sh_rest = np.zeros((len(coords), 3, 0), np.float32)
    if k_rest:
        # C order of the block = ascending flat index; (N, 3, K) → (N, K − 1, 3): one vec3 per coefficient.
        # The trainer writes its voxels in C order already: then no sort, and with every voxel kept no
        # copy at all (a view of grid.sh; the writer gathers each coefficient's column once).
        flat = np.ravel_multi_index(local.T, shape)
        in_order = bool(np.all(flat[1:] > flat[:-1]))
        if in_order and len(coords) == len(coords_all):
            sh_rest = grid.sh[:, :, 1:]
        else:
            rows = np.flatnonzero(keep)
            if not in_order:
                rows = rows[np.argsort(flat, kind="stable")]
            sh_rest = grid.sh[rows, :, 1:]
    return VdbArrays(
        density=dense_density,
        color=dense_color,
        offset=lo,
        voxel_size=voxel_size,
        origin=origin,
        color_background=background,
        active_voxels=int(coords.shape[0]),
        kept=kept,
        sh_rest=sh_rest,
        sh_degree=sh_degree,
    )
